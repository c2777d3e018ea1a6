/**
 * Optional prerequisites (a native library, a GPU, torch): a test that lacks
 * one skips loudly, unless BAGUA_REQUIRE (comma list, e.g. 'gloo,torch')
 * names it, in which case the test fails, so CI cannot silently lose coverage.
 */
import type { ExecutionContext } from 'ava';

export function required(what: string): boolean {
  return (process.env['BAGUA_REQUIRE'] ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .includes(what);
}

/** Ends the test for a missing `what`: fails when BAGUA_REQUIRE demands it, else passes with a loud SKIPPED line. */
export function skipOrFail(t: ExecutionContext, what: string, why: string): void {
  if (required(what)) {
    t.fail(`${what} is required (BAGUA_REQUIRE=${process.env['BAGUA_REQUIRE']}) but missing: ${why}`);
    return;
  }
  const line = `SKIPPED (${what} missing): ${why}`;
  t.log(line);
  console.warn(`${t.title}: ${line}`);
  t.pass();
}
