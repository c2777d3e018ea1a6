/** Shared by test/gloo-*.test.ts: availability, launching gloo jobs, parsing their results. */
import type { ExecutionContext } from 'ava';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { glooAvailability } from '../../src/gloo/library.js';
import { startLauncher } from './launch.js';
import { skipOrFail } from '@bagua/testing';

export const GLOO_WORKER = fileURLToPath(new URL('../fixtures/gloo-worker.js', import.meta.url));

/** True when libbagua_gloo.so loads; otherwise ends the test via skipOrFail(t, 'gloo', why). */
export function needGloo(t: ExecutionContext): boolean {
  const a = glooAvailability();
  if (a.available) return true;
  skipOrFail(t, 'gloo', a.reason);
  return false;
}

export interface GlooResult {
  rank: number;
  ok?: boolean;
  checks?: number;
  size?: number;
  error?: string;
  op?: string;
  group?: string;
  errRank?: number;
  missing?: number[];
  message?: string;
  ms?: number;
  /** ms from entering the collective that failed to its error (fixtures/gloo-desync). */
  failMs?: number;
  timeoutMs?: number;
}

export function parseResults(out: string): GlooResult[] {
  const rows: GlooResult[] = [];
  for (const line of out.split('\n')) {
    const i = line.indexOf('GLOO_RESULT ');
    if (i >= 0) rows.push(JSON.parse(line.slice(i + 'GLOO_RESULT '.length)) as GlooResult);
  }
  return rows.sort((a, b) => a.rank - b.rank);
}

export interface JobResult {
  code: number | null;
  results: GlooResult[];
  ms: number;
  output: string;
}

/** Runs gloo-worker.js (or opts.script) <scenario...> under bagua-launch with the gloo backend. */
export async function runGlooJob(
  nproc: number,
  scenario: string[],
  opts: { timeoutMs?: number; extra?: string[]; env?: Record<string, string | undefined>; killAfterMs?: number; script?: string; graceMs?: number } = {},
): Promise<JobResult> {
  const args = [
    '--nproc-per-node',
    String(nproc),
    '--backend',
    'gloo',
    '--timeout-ms',
    String(opts.timeoutMs ?? 30_000),
    '--grace-ms',
    String(opts.graceMs ?? 1000),
    ...(opts.extra ?? []),
    opts.script ?? GLOO_WORKER,
    ...scenario,
  ];
  const r = await startLauncher(args, opts.env ?? {}, opts.killAfterMs ?? 60_000).done;
  const output = r.stdout + r.stderr;
  return { code: r.code, results: parseResults(output), ms: r.ms, output };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}
