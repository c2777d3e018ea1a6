/**
 * One rank of `pnpm bench:comm` (bench-comm.ts runs it under each backend):
 * per-call latency of all-reduce(sum) and all-gather of 2C+1 float32 and the
 * bus bandwidth of float32 all-reduces of several sizes, measured exactly
 * like tools/bench_torch_gloo.py (warm-up, barrier, then each call timed;
 * medians reported by rank 0; bwIters(bytes) and bwWarmup() are the same there).
 * argv: <iters> <bwIters> <counts, comma-separated> [<bandwidth sizes in bytes, comma-separated>]
 */
import { performance } from 'node:perf_hooks';
import { initProcessGroup } from '../src/index.js';
import { median } from '@bagua/testing';

const iters = Number(process.argv[2] ?? 1000);
const bwIters = Number(process.argv[3] ?? 10);
const counts = (process.argv[4] ?? '129,513,2049').split(',').map(Number);
const bwSizes = (process.argv[5] ?? String(16 << 20)).split(',').map(Number);
const warmup = Math.max(20, Math.min(500, iters >> 2));

const g = await initProcessGroup();


function timed(call: () => void, n: number, warm: number): number {
  for (let i = 0; i < warm; i++) call();
  g.barrier();
  const t = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    call();
    t[i] = performance.now() - t0;
  }
  return median(t) * 1000; // us
}

const latency: Record<string, { allreduce_us: number; allgather_us: number }> = {};
for (const count of counts) {
  const x = new Float32Array(count).fill(1);
  const out = new Float32Array(count * g.size);
  const ar = timed(() => g.allReduce(x, 'sum'), iters, warmup);
  const ag = timed(() => g.allGather(out, x), iters, warmup);
  latency[String(count)] = { allreduce_us: ar, allgather_us: ag };
}

/** Timed calls at a size: bwIters for 16 MiB and up, more for smaller ones (up to 256 MiB moved or 200 calls). */
const itersFor = (bytes: number) => Math.max(bwIters, Math.min(200, Math.floor((256 << 20) / bytes)));
const warmupFor = (iters: number) => Math.max(1, Math.min(20, iters >> 3));

type Bw = { bytes: number; time_us: number; algbw_gbs: number; busbw_gbs: number };
const bandwidths: Bw[] = [];
for (const bytes of bwSizes) {
  const big = new Float32Array(bytes / 4).fill(1);
  const iters = itersFor(bytes);
  const t = timed(() => g.allReduce(big, 'sum'), iters, warmupFor(iters)) / 1e6; // s
  const algbw = bytes / t / 1e9;
  // nccl-tests' bus bandwidth: what each link carries in a ring all-reduce.
  bandwidths.push({ bytes, time_us: t * 1e6, algbw_gbs: algbw, busbw_gbs: (algbw * 2 * (g.size - 1)) / g.size });
}
const bandwidth = bandwidths.find((b) => b.bytes === 16 << 20) ?? null;

g.barrier();
if (g.rank === 0) process.stdout.write(`BENCH_RESULT ${JSON.stringify({ backend: g.backend, world_size: g.size, latency, bandwidth, bandwidths })}\n`);
g.destroy();
