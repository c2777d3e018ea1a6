/**
 * One rank of `pnpm bench:comm` (bench-comm.ts runs it under each backend):
 * per-call latency of all-reduce(sum) and all-gather of 2C+1 float32 and the
 * bus bandwidth of float32 all-reduces of several sizes, measured exactly
 * like tools/bench_torch_gloo.py (warm-up, barrier, then each call timed;
 * medians reported by rank 0; bwIters(bytes) and bwWarmup() are the same there).
 * argv: <iters> <bwIters> <counts, comma-separated> [<bandwidth sizes in bytes, comma-separated>]
 *
 * With BAGUA_BENCH_FIFO set (bench-comm.ts --pair), the rank serves blocks
 * instead: rank 0 reads lines `bw <bytes>` / `quit` from that FIFO, broadcasts
 * each to the group, every rank runs one block (warm-up, barrier, timed calls)
 * and rank 0 prints `BLOCK <json>`; between blocks the ranks sleep in a
 * blocking read (rank 0) or the broadcast (the others), so the group that
 * waits leaves the cores to the one measured.
 */
import { closeSync, openSync, readSync } from 'node:fs';
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

/** Timed calls at a size: bwIters for 16 MiB and up, more for smaller ones (up to 256 MiB moved or 200 calls). */
const itersFor = (bytes: number) => Math.max(bwIters, Math.min(200, Math.floor((256 << 20) / bytes)));
const warmupFor = (iters: number) => Math.max(1, Math.min(20, iters >> 3));

type Bw = { bytes: number; time_us: number; algbw_gbs: number; busbw_gbs: number };
const fifo = process.env.BAGUA_BENCH_FIFO;
if (fifo) {
  serve(fifo);
  g.destroy();
  process.exit(0);
}

const latency: Record<string, { allreduce_us: number; allgather_us: number }> = {};
for (const count of counts) {
  const x = new Float32Array(count).fill(1);
  const out = new Float32Array(count * g.size);
  const ar = timed(() => g.allReduce(x, 'sum'), iters, warmup);
  const ag = timed(() => g.allGather(out, x), iters, warmup);
  latency[String(count)] = { allreduce_us: ar, allgather_us: ag };
}

const bandwidths: Bw[] = bwSizes.map((bytes) => block(bytes, new Map()));
/** One timed block of all-reduces of `bytes` (the same calls and counts as a bandwidth figure). */
function block(bytes: number, buffers: Map<number, Float32Array>): Bw {
  let big = buffers.get(bytes);
  if (!big) buffers.set(bytes, (big = new Float32Array(bytes / 4).fill(1)));
  const buf = big;
  const n = itersFor(bytes);
  const t = timed(() => g.allReduce(buf, 'sum'), n, warmupFor(n)) / 1e6; // s
  const algbw = bytes / t / 1e9;
  return { bytes, time_us: t * 1e6, algbw_gbs: algbw, busbw_gbs: (algbw * 2 * (g.size - 1)) / g.size };
}

function serve(path: string): void {
  const fd = g.rank === 0 ? openSync(path, 'r') : -1;
  let pending = '';
  const nextLine = (): string => {
    const chunk = Buffer.alloc(256);
    for (;;) {
      const nl = pending.indexOf('\n');
      if (nl >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        return line.trim();
      }
      const got = readSync(fd, chunk, 0, chunk.length, null);
      if (got === 0) return 'quit'; // the driver closed the FIFO
      pending += chunk.toString('utf8', 0, got);
    }
  };
  const buffers = new Map<number, Float32Array>();
  const cmd = new Float64Array(2); // [1 = bandwidth block | 0 = quit, bytes]
  for (;;) {
    if (g.rank === 0) {
      const line = nextLine();
      const m = /^bw (\d+)$/.exec(line);
      if (!m && line !== 'quit') throw new Error(`bench-comm-rank: unknown command '${line}'`);
      cmd[0] = m ? 1 : 0;
      cmd[1] = m ? Number(m[1]) : 0;
    }
    g.broadcast(cmd, 0);
    if (cmd[0] === 0) break;
    const r = block(cmd[1]!, buffers);
    if (g.rank === 0) process.stdout.write(`BLOCK ${JSON.stringify(r)}\n`);
  }
  if (fd >= 0) closeSync(fd);
}

const bandwidth = bandwidths.find((b) => b.bytes === 16 << 20) ?? null;

g.barrier();
if (g.rank === 0) process.stdout.write(`BENCH_RESULT ${JSON.stringify({ backend: g.backend, world_size: g.size, latency, bandwidth, bandwidths })}\n`);
g.destroy();
