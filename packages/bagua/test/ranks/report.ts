/** What a rank script tells the test: one `RESULT <json>` line per check (the launcher prefixes `[rank N] `). */
import { compare, describe, DEFAULT_TOL, type Tolerance } from '@bagua/testing';
import type { Tensor } from '@bagua/core';
import type { StatsExchange } from '../../src/index.js';

export interface Check {
  name: string;
  ok: boolean;
  /** largest error relative to the tolerance (<= 1 passes) */
  worst: number;
  details: string[];
}

export function report(check: Check): void {
  console.log(`RESULT ${JSON.stringify(check)}`);
}

/** Compares and records into `check`; an absent expected value must be absent. */
export function expectClose(check: Check, what: string, actual: Tensor | ArrayLike<number> | null | undefined,
  expected: ArrayLike<number> | null | undefined, tol: Tolerance = DEFAULT_TOL): void {
  if (expected === null || expected === undefined) {
    if (actual !== null && actual !== undefined) fail(check, `${what}: expected none, got a value`);
    return;
  }
  if (actual === null || actual === undefined) return fail(check, `${what}: missing`);
  const values = 'toArray' in actual ? (actual.toArray() as Float32Array) : actual;
  const c = compare(values, expected, tol);
  check.worst = Math.max(check.worst, c.worstRatio);
  if (!c.ok) fail(check, `${what}: ${describe(c, expected.length)}`);
}

export function fail(check: Check, detail: string): void {
  check.ok = false;
  check.details.push(detail);
}

export const newCheck = (name: string): Check => ({ name, ok: true, worst: 0, details: [] });

/** The SyncBatchNorm statistics exchange a job tests (BAGUA_TEST_STATS_EXCHANGE; default allGather). */
export function exchangeUnderTest(): StatsExchange {
  const v = process.env.BAGUA_TEST_STATS_EXCHANGE ?? 'allGather';
  if (v !== 'allGather' && v !== 'allReduce') throw new Error(`BAGUA_TEST_STATS_EXCHANGE: unknown exchange ${v}`);
  return v;
}
