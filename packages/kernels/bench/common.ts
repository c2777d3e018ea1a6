/** Helpers shared by the kernel benchmarks (bench-cpu, bench-gpu, bench-step). */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { getNumThreads, setNumThreads } from '@bagua/core';
import { createInterface } from 'node:readline';
import { median } from '@bagua/testing';

export { median };

/** [n, c, ...spatial] as batch norm sees it: n, c, hw (the spatial product) and the element count. */
export function bnDims(shape: readonly number[]): { n: number; c: number; hw: number; total: number } {
  const [n, c] = shape as [number, number];
  const hw = shape.slice(2).reduce((a, b) => a * b, 1);
  return { n, c, hw, total: n * c * hw };
}

/** n values in [-0.5, 0.5) from a linear congruential generator: the same data every run. */
export function randomArray(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

/** One line of a table: each cell right-aligned to its column's width. */
export function tableRow(cells: readonly string[], widths: readonly number[]): string {
  return cells.map((cell, i) => cell.padStart(widths[i]!)).join(' ');
}

/** A table's header line and the rule under it. */
export function tableHeader(titles: readonly string[], widths: readonly number[]): string {
  return `${tableRow(titles, widths)}\n${widths.map((w) => '-'.repeat(w)).join(' ')}`;
}


/** Lets the event loop turn once (finalizers and other queued work run there, outside a timed region). */
export const turnEventLoop = (): Promise<void> => new Promise((done) => setImmediate(done));

/**
 * Sets the calling thread's kernel threads and reads them back. Returns whether the
 * kernels will use `n` and a description; never throws (a benchmark reports, it does not stop).
 */
export function useKernelThreads(n: number): { applied: boolean; note: string } {
  try {
    setNumThreads(n);
  } catch (e) {
    return { applied: false, note: `setNumThreads(${n}) failed: ${(e as Error)?.message ?? e}` };
  }
  const got = getNumThreads();
  return { applied: got === n, note: got === n ? `${n} kernel thread(s)` : `asked ${n} kernel threads, getNumThreads() = ${got}` };
}

/** A warning when the machine is busier than its cores (other work makes every ratio noisy), else ''. */
export function busyWarning(when: string): string {
  const cores = availableParallelism();
  const load = loadavg()[0]!;
  return load > cores * 0.75
    ? `  WARNING (${when}): load average ${load.toFixed(1)} on ${cores} core(s): other work shares the CPU, so ` +
      'times are noisy and ratios unreliable (multi-threaded PyTorch suffers most from shared cores)'
    : '';
}

/** A banner that cannot be missed, for anything the reader must not overlook (a reference not measured). */
export function loud(lines: readonly string[]): string {
  const bar = '!'.repeat(90);
  return ['', bar, ...lines.map((l) => `!!! ${l}`), bar].join('\n');
}

export const TORCH_PYTHON = '/usr/bin/python3';

/**
 * A PyTorch reference kept running in one child process: one JSON request per line
 * on its stdin, one JSON answer per line on its stdout; its first line describes it
 * ({"version", "threads"}).
 */
export class JsonLineChild {
  private readonly lines: AsyncIterator<string>;
  private stderr = '';
  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    this.lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    child.stderr.on('data', (d: Buffer) => { this.stderr += d.toString(); });
  }

  /** Why PyTorch cannot be measured here (a string), or the running child and its first line. */
  static async start(args: readonly string[], env: Record<string, string> = {}):
    Promise<{ child: JsonLineChild; hello: Record<string, unknown> } | string> {
    if (!existsSync(TORCH_PYTHON)) return `${TORCH_PYTHON} not found`;
    const probe = spawnSync(TORCH_PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
    if (probe.status !== 0) return `${TORCH_PYTHON} cannot import torch (${(probe.stderr || '').trim().split('\n').pop()})`;
    const proc = spawn(TORCH_PYTHON, [...args], { env: { ...process.env, ...env } });
    const child = new JsonLineChild(proc);
    const first = await child.lines.next();
    if (first.done) return `the PyTorch reference did not start: ${child.stderr.trim().split('\n').slice(-3).join(' | ')}`;
    return { child, hello: JSON.parse(first.value) as Record<string, unknown> };
  }

  async request<T>(message: unknown): Promise<T> {
    this.child.stdin.write(`${JSON.stringify(message)}\n`);
    const r = await this.lines.next();
    if (r.done) throw new Error(`the PyTorch reference exited: ${this.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    return JSON.parse(r.value) as T;
  }

  stop(): void {
    this.child.stdin.end();
  }
}
