/** The error a threads-backend fault fixture prints as `ERR <json>` (test/fixtures/faults.ts, threads-async.ts). */
import type { RunResult } from '../../src/index.js';

export interface Err {
  name: string;
  op: string;
  group: string;
  rank: number;
  missing: number[];
  message: string;
  ms: number;
}

/** Rank `rank`'s reported error, or null when it reported none. */
export function errOf(res: RunResult, rank: number): Err | null {
  const m = /^ERR (.*)$/m.exec(res.stdout[rank]!);
  return m ? (JSON.parse(m[1]!) as Err) : null;
}
