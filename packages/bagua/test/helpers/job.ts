/** Runs a rank script under the real launcher (threads or gloo) and collects its RESULT lines. */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { skipOrFail } from '@bagua/testing';
import type { Check } from '../ranks/report.js';

const LAUNCHER = join(dirname(fileURLToPath(import.meta.resolve('@bagua/comm'))), '..', '..', 'bin', 'bagua-launch.js');

export type Backend = 'threads' | 'gloo';

export interface Job {
  code: number | null;
  output: string;
  /** RESULT lines by rank */
  results: Check[][];
  /** values of `<KEY> <value>` lines by rank (e.g. COUNT) */
  lines: (key: string) => string[][];
}

export function rankScript(name: string): string {
  return fileURLToPath(new URL(`../ranks/${name}.js`, import.meta.url));
}

export function runJob(backend: Backend, n: number, script: string, args: string[] = [],
  opts: { timeoutMs?: number; env?: Record<string, string> } = {}): Promise<Job> {
  const killAfter = opts.timeoutMs ?? 90_000;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath,
      [LAUNCHER, '--nproc-per-node', String(n), '--backend', backend, rankScript(script), ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, BAGUA_TIMEOUT_MS: '20000', ...opts.env },
      });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), killAfter);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      const lines = (key: string) => {
        const byRank: string[][] = Array.from({ length: n }, () => []);
        for (const m of output.matchAll(new RegExp(`^\\[rank (\\d+)\\] ${key}(?: (.*))?$`, 'gm'))) byRank[Number(m[1])].push(m[2] ?? '');
        return byRank;
      };
      resolve({ code, output, lines, results: lines('RESULT').map((rs) => rs.map((r) => JSON.parse(r) as Check)) });
    });
  });
}

/** The gloo backend is optional here: without its library, a loud skip (a failure under BAGUA_REQUIRE=gloo). */
export async function backendReady(t: ExecutionContext, backend: Backend): Promise<boolean> {
  if (backend === 'threads') return true;
  const comm = await import('@bagua/comm') as { glooAvailability?: () => { available: boolean; reason?: string } };
  const status = comm.glooAvailability?.() ?? { available: false, reason: '@bagua/comm has no gloo backend' };
  if (!status.available) skipOrFail(t, 'gloo', status.reason ?? 'libbagua_gloo.so not loadable');
  return status.available;
}

/** Asserts the job succeeded and every rank reported every check as passing. */
export function assertJob(t: ExecutionContext, job: Job, n: number, minChecks = 1): void {
  if (job.code !== 0) t.log(job.output.slice(-4000));
  t.is(job.code, 0, 'the launcher exits 0');
  for (let r = 0; r < n; r++) {
    t.true(job.results[r].length >= minChecks, `rank ${r} reported ${job.results[r].length} checks`);
    for (const c of job.results[r]) {
      t.true(c.ok, `rank ${r} ${c.name}: ${c.details.join('; ')}`);
    }
  }
}
