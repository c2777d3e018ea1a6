/**
 * The training loop of the memory benchmark (bench-memory.ts), and its thread-rank entry.
 *
 * The memory-probe's model and the plain loop of the README: Conv2d(3,16,3,padding 1),
 * BatchNorm2d(16), ReLU, AdaptiveAvgPool2d(1), Flatten, Linear(16,10); a fresh
 * randn([16,3,32,32]) batch every step, CrossEntropyLoss, SGD(lr 0.01, momentum 0.9);
 * forward, loss, zeroGrad, backward, step, with no awaits and no dispose calls. Under
 * several ranks the model is converted by SyncBatchNorm.convertSyncBatchnorm and wrapped
 * by withBagua([optimizer], new GradientAllReduce()).
 *
 * Every `every` steps: process RSS and memoryStats(device), of
 * every rank (gathered to rank 0 through the group, host arrays only, no tensors); every
 * `checkEvery` steps the loop stops, on all ranks at once, when RSS passes the cap.
 *
 * Run by bench-memory.ts: imported for one rank (runLoop), or as the script of each
 * thread rank under runThreads; then rank 0 prints the progress lines and one line
 * `MEMORY_RESULT <json>`, and a failing rank `BENCH_ERROR <message>`.
 */
import { manualSeed, memoryStats, nn, optim, randn, tensor, type MemoryStats } from '@bagua/core';
import { threadsWorkerInfo, type ProcessGroup } from '@bagua/comm';
import { algorithms, destroyProcessGroup, initProcessGroup, SyncBatchNorm } from '../src/index.js';

export interface LoopOptions {
  steps: number;
  device: string;
  every: number;
  checkEvery: number;
  maxRssMiB: number;
}

export type { MemoryStats };

/** One report: the step, process RSS, and each rank's memoryStats. */
export interface Sample {
  step: number;
  rssMiB: number;
  /** V8 heap in use and memory outside it held by JS objects (ArrayBuffers...), summed over ranks (each thread has its own heap). */
  heapMiB: number;
  externalMiB: number;
  stats: MemoryStats[];
}

export interface LoopResult {
  device: string;
  ranks: number;
  stepsAsked: number;
  stepsRun: number;
  /** Why the loop ended before `stepsAsked`, or null. */
  stopped: string | null;
  samples: Sample[];
  /** [step, RSS MiB (largest any rank read)] at every RSS-cap check (every checkEvery steps). */
  rssChecks: [number, number][];
  msPerStep: number;
}

const FIELDS = ['allocated', 'reserved', 'peakAllocated', 'numAllocs', 'numFrees', 'numSystemAllocs'] as const;

const rssMiB = () => process.memoryUsage.rss() / 2 ** 20;

const mib = (bytes: number) => (bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(2)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`);

/** One progress line: rank 0's memoryStats (and, for several ranks, the sum of reserved). */
export function formatSample(s: Sample, prev: Sample | null): string {
  const st = s.stats[0]!;
  const p = prev?.stats[0];
  const perStep = p ? ((st.numAllocs - p.numAllocs) / (s.step - prev!.step)).toFixed(1) : '-';
  const cells = [`step ${String(s.step).padStart(6)}`, `RSS ${s.rssMiB.toFixed(1).padStart(8)} MiB`,
    `JS heap ${s.heapMiB.toFixed(1)} MiB`, `external ${s.externalMiB.toFixed(1)} MiB`,
    `allocated ${mib(st.allocated)}`, `reserved ${mib(st.reserved)}`, `allocs/step ${perStep}`,
    `live allocs ${st.numAllocs - st.numFrees}`, `system allocs ${st.numSystemAllocs}`];
  if (s.stats.length > 1) cells.push(`reserved all ranks ${mib(s.stats.reduce((a, x) => a + x.reserved, 0))}`);
  return cells.join('  ');
}

function makeModel(device: string): nn.Sequential {
  const net = new nn.Sequential(new nn.Conv2d(3, 16, 3, { padding: 1 }), new nn.BatchNorm2d(16), new nn.ReLU(),
    new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(16, 10));
  return net.to(device);
}

/**
 * The plain loop on this thread, `group` null for one rank. Rank 0 (or the only rank)
 * calls `print` with each progress line.
 */
export function runLoop(opts: LoopOptions, group: ProcessGroup | null, print: (line: string) => void): LoopResult {
  const rank = group?.rank ?? 0;
  const ranks = group?.size ?? 1;
  manualSeed(1234 + rank);
  const net = makeModel(opts.device);
  const optimizer = new optim.SGD(net.parameters(), { lr: 0.01, momentum: 0.9 });
  const model: nn.Module = group
    ? SyncBatchNorm.convertSyncBatchnorm(net).withBagua([optimizer], new algorithms.GradientAllReduce())
    : net;
  const lossFn = new nn.CrossEntropyLoss();
  const target = tensor(Int32Array.from({ length: 16 }, (_, i) => i % 10), { shape: [16], dtype: 'int32', device: opts.device });

  const samples: Sample[] = [];
  const rssChecks: [number, number][] = [];
  let stopped: string | null = null;
  let step = 0;
  const t0 = performance.now();
  const record = () => {
    const mine = memoryStats(opts.device);
    const mem = process.memoryUsage(); // rss: the process; heapUsed, external: this thread's isolate
    const local = new Float64Array(3 + FIELDS.length);
    local[0] = mem.rss / 2 ** 20;
    local[1] = mem.heapUsed / 2 ** 20;
    local[2] = mem.external / 2 ** 20;
    FIELDS.forEach((f, i) => { local[3 + i] = mine[f]; });
    let all = local;
    if (group) {
      all = new Float64Array(local.length * ranks);
      group.allGather(all, local);
    }
    const stats: MemoryStats[] = [];
    let rss = 0, heap = 0, external = 0;
    for (let r = 0; r < ranks; r++) {
      const row = all.subarray(r * local.length, (r + 1) * local.length);
      rss = Math.max(rss, row[0]!); // one process: every rank reads the same RSS, moments apart
      heap += row[1]!;
      external += row[2]!;
      stats.push(Object.fromEntries(FIELDS.map((f, i) => [f, row[3 + i]!])) as unknown as MemoryStats);
    }
    const sample: Sample = { step, rssMiB: rss, heapMiB: heap, externalMiB: external, stats };
    if (rank === 0) print(formatSample(sample, samples.at(-1) ?? null));
    samples.push(sample);
  };
  /** Whether RSS passed the cap on any rank: every rank gets the same answer. */
  const overCap = (): number | null => {
    const r = new Float64Array([rssMiB()]);
    if (group) group.allReduce(r, 'max');
    rssChecks.push([step, r[0]!]);
    return r[0]! > opts.maxRssMiB ? r[0]! : null;
  };

  for (step = 1; step <= opts.steps; step++) {
    // The plain loop, as a user writes it.
    const loss = lossFn.forward(model.forward(randn([16, 3, 32, 32], { device: opts.device })), target);
    optimizer.zeroGrad();
    loss.backward();
    optimizer.step();

    if (step % opts.every === 0 || step === opts.steps) record();
    if (step % opts.checkEvery === 0 && step < opts.steps) {
      const rss = overCap();
      if (rss !== null) {
        stopped = `stopped at step ${step}: RSS ${rss.toFixed(0)} MiB passed the cap of ${opts.maxRssMiB} MiB (--max-rss-mib)`;
        if (samples.at(-1)?.step !== step) record();
        break;
      }
    }
  }
  const stepsRun = Math.min(step, opts.steps);
  return {
    device: opts.device, ranks, stepsAsked: opts.steps, stepsRun, stopped, samples, rssChecks,
    msPerStep: (performance.now() - t0) / stepsRun,
  };
}

export function parseLoopArgs(argv: readonly string[]): LoopOptions {
  const o: LoopOptions = { steps: 5000, device: 'cpu', every: 500, checkEvery: 50, maxRssMiB: 4096 };
  for (let i = 0; i < argv.length; i += 2) {
    const a = argv[i]!, v = argv[i + 1];
    if (v === undefined) throw new Error(`bench-memory-rank: ${a} needs a value`);
    if (a === '--steps') o.steps = Number(v);
    else if (a === '--device') o.device = v;
    else if (a === '--every') o.every = Number(v);
    else if (a === '--check-every') o.checkEvery = Number(v);
    else if (a === '--max-rss-mib') o.maxRssMiB = Number(v);
    else throw new Error(`bench-memory-rank: unknown option ${a}`);
  }
  return o;
}

/** Under runThreads: one thread rank. */
async function rankMain(): Promise<void> {
  const opts = parseLoopArgs(process.argv.slice(2));
  const world = await initProcessGroup({ timeoutMs: 300_000 });
  try {
    const result = runLoop(opts, world, (line) => process.stdout.write(`${line}\n`));
    if (world.rank === 0) process.stdout.write(`MEMORY_RESULT ${JSON.stringify(result)}\n`);
    world.barrier();
  } finally {
    await destroyProcessGroup();
  }
}

if (threadsWorkerInfo()) {
  try {
    await rankMain();
  } catch (e) {
    process.stderr.write(`${String((e as Error)?.stack ?? e)}\n`);
    process.stdout.write(`BENCH_ERROR ${String((e as Error)?.message ?? e).split('\n').join(' | ')}\n`);
    process.exitCode = 1;
  }
}
