/**
 * Loading and comparison helpers for the PyTorch golden fixtures in <repo>/fixtures
 * (written by tools/gen-fixtures.py; the JSON format is documented there).
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { Device, tensor, type DeviceName, type Tensor } from '@bagua/core';

export interface FixtureTensor {
  shape: number[];
  data: number[];
  dtype?: 'int32';
}

export interface Tolerance {
  /** relative part: |actual - expected| <= atol + rtol * |expected| */
  rtol: number;
  /** absolute floor, for expected values near 0 */
  atol: number;
  /**
   * For sums that cancel: each element may also be off by scaleRtol * scale[i], where
   * scale[i] is the sum of |terms| behind it (a GPU adds floats in its own order).
   */
  scale?: ArrayLike<number>;
  scaleRtol?: number;
}

/** float32 parity: the generator checked that PyTorch's own float32 run meets this on every case. */
export const DEFAULT_TOL: Tolerance = { rtol: 1e-5, atol: 1e-6 };

/** The device the parity tests run on: 'cpu' unless BAGUA_TEST_DEVICE names another ('cuda:0'). */
export function testDevice(): DeviceName {
  const d = process.env.BAGUA_TEST_DEVICE;
  // parsed: a typo fails here, and the name has the literal type to() takes
  return d === undefined || d === '' ? 'cpu' : Device.parse(d).toString();
}

/** The repository root: the nearest directory above this file that holds pnpm-workspace.yaml. */
export function repoRoot(): string {
  // Start from the compiled file (dist/test/helpers) so the answer does not depend on the cwd.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'pnpm-workspace.yaml'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`fixtures: no pnpm-workspace.yaml above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
}

const cache = new Map<string, unknown>();

/** Parses fixtures/<name>; a missing or unreadable file throws, so every test that uses it fails. */
export function loadFixture<T>(name: string): T {
  if (!cache.has(name)) {
    const path = join(repoRoot(), 'fixtures', name);
    cache.set(name, JSON.parse(readFileSync(path, 'utf8')));
  }
  return cache.get(name) as T;
}

/** Builds a tensor from a fixture tensor on the test device (int32 stays int32). */
export function toTensor(ft: FixtureTensor, opts: { requiresGrad?: boolean; device?: string } = {}): Tensor {
  const device = opts.device ?? testDevice();
  if (ft.dtype === 'int32') return tensor(Int32Array.from(ft.data), { shape: ft.shape, dtype: 'int32', device });
  return tensor(Float32Array.from(ft.data), { shape: ft.shape, device, requiresGrad: opts.requiresGrad ?? false });
}

/** A fixture tensor or null (optional weight, running stats...). */
export function toTensorOrNull(ft: FixtureTensor | null | undefined, opts: { requiresGrad?: boolean } = {}): Tensor | null {
  return ft === null || ft === undefined ? null : toTensor(ft, opts);
}

export interface Comparison {
  ok: boolean;
  maxAbs: number;
  maxRel: number;
  /** the worst element: largest |a - e| / (atol + rtol |e|) */
  worstIndex: number;
  worstActual: number;
  worstExpected: number;
  /** largest |a - e| / (atol + rtol |e|): <= 1 passes */
  worstRatio: number;
  badCount: number;
}

/** Elementwise comparison; NaN or Infinity in actual always fails. */
export function compare(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: Tolerance = DEFAULT_TOL): Comparison {
  const r: Comparison = { ok: actual.length === expected.length, maxAbs: 0, maxRel: 0, worstIndex: -1,
    worstActual: NaN, worstExpected: NaN, worstRatio: 0, badCount: 0 };
  let worst = -1;
  const n = Math.min(actual.length, expected.length);
  for (let i = 0; i < n; i++) {
    const a = actual[i];
    const e = expected[i];
    const diff = Math.abs(a - e);
    // diff 0 passes even at zero tolerance (0 / 0 would be NaN)
    const bound = tol.atol + tol.rtol * Math.abs(e) + (tol.scale ? (tol.scaleRtol ?? 0) * Math.abs(tol.scale[i]!) : 0);
    const ratio = !Number.isFinite(a) ? Infinity : diff === 0 ? 0 : diff / bound;
    if (!(ratio <= 1)) {
      r.ok = false;
      r.badCount++;
    }
    if (Number.isFinite(diff)) {
      r.maxAbs = Math.max(r.maxAbs, diff);
      if (e !== 0) r.maxRel = Math.max(r.maxRel, diff / Math.abs(e));
    } else {
      r.maxAbs = Infinity;
      r.maxRel = Infinity;
    }
    if (ratio > worst || Number.isNaN(ratio)) {
      worst = Number.isNaN(ratio) ? Infinity : ratio;
      r.worstIndex = i;
      r.worstActual = a;
      r.worstExpected = e;
      r.worstRatio = worst;
    }
  }
  return r;
}

/**
 * With BAGUA_PARITY_REPORT=<file>, every comparison appends one JSON line (label, max errors,
 * worst ratio to the tolerance), to see how much headroom each case has.
 */
function report(label: string, c: Comparison): void {
  const file = process.env.BAGUA_PARITY_REPORT;
  if (!file) return;
  appendFileSync(file, JSON.stringify({ label, device: testDevice(), maxAbs: c.maxAbs, maxRel: c.maxRel,
    worstRatio: c.worstRatio, ok: c.ok }) + '\n');
}

export function describe(c: Comparison, n: number): string {
  return `maxAbs=${c.maxAbs.toExponential(3)} maxRel=${c.maxRel.toExponential(3)} ` +
    `bad=${c.badCount}/${n} worst[${c.worstIndex}]: got ${c.worstActual} want ${c.worstExpected}`;
}

/**
 * Asserts that a tensor (or host array) matches a fixture tensor in shape and values.
 * The failure message carries the max abs/rel error, so a report can be read off the test output.
 */
export function assertClose(t: ExecutionContext, actual: Tensor | ArrayLike<number> | null | undefined,
  expected: FixtureTensor, label: string, tol: Tolerance = DEFAULT_TOL): boolean {
  if (actual === null || actual === undefined) {
    t.fail(`${label}: got ${String(actual)}, expected a tensor of shape [${expected.shape}]`);
    return false;
  }
  let values: ArrayLike<number>;
  if (isTensor(actual)) {
    if (!sameShape(actual.shape, expected.shape)) {
      t.fail(`${label}: shape [${actual.shape}] != expected [${expected.shape}]`);
      return false;
    }
    values = actual.toArray() as ArrayLike<number>;
  } else {
    values = actual;
  }
  if (values.length !== expected.data.length) {
    t.fail(`${label}: ${values.length} values != expected ${expected.data.length}`);
    return false;
  }
  const c = compare(values, expected.data, tol);
  report(label, c);
  if (!c.ok) {
    t.fail(`${label}: ${describe(c, expected.data.length)} (rtol=${tol.rtol}, atol=${tol.atol})`);
    return false;
  }
  t.pass();
  return true;
}

/** Asserts a scalar result (a number or a one-element tensor) against an expected number. */
export function assertCloseScalar(t: ExecutionContext, actual: number | Tensor | null | undefined, expected: number,
  label: string, tol: Tolerance = DEFAULT_TOL): boolean {
  const v = scalarOf(actual);
  return assertClose(t, v === undefined ? undefined : [v], { shape: [1], data: [expected] }, label, tol);
}

/** A count returned as a JS number or a one-element tensor (the API leaves it open). */
export function scalarOf(v: number | Tensor | null | undefined): number | undefined {
  if (v === null || v === undefined) return undefined;
  return typeof v === 'number' ? v : v.item();
}

export function isTensor(v: unknown): v is Tensor {
  return typeof v === 'object' && v !== null && 'shape' in v && typeof (v as Tensor).toArray === 'function';
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
