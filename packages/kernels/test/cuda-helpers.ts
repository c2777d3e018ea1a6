/**
 * Shared by the cuda-*.test.ts files: the loud skip when no GPU is usable,
 * deterministic random data, and running one Backend call on the CPU backend
 * and on the CUDA backend with the same inputs.
 *
 * BAGUA_REQUIRE=cuda (a comma list) turns every skip into a failure, so a GPU
 * machine cannot pass by skipping. BAGUA_CUDA_TEST_BACKEND=cpu runs the CUDA
 * tests with the CPU backend standing in for the GPU: a rehearsal of the test
 * code itself on machines without a GPU (every comparison must then hold).
 */
import test, { type ExecutionContext } from 'ava';
import { skipOrFail } from '@bagua/testing';
import type { Backend, DType, Handle } from '@bagua/core';
import { CpuBackend, cudaBackend, probeCuda, type CudaProbe } from '../src/index.js';

export { required } from '@bagua/testing';

/** Stand-in mode: the CPU library plays the GPU (tests the tests, not the CUDA kernels). */
export const STAND_IN = process.env.BAGUA_CUDA_TEST_BACKEND === 'cpu';

let probe: CudaProbe | null = null;
export function cudaProbe(): CudaProbe {
  return (probe ??= probeCuda());
}

/**
 * true when the test may use the GPU. Otherwise logs `SKIPPED (cuda missing): <reason>`
 * (t.log and console.warn) and passes, or fails when BAGUA_REQUIRE contains 'cuda'.
 */
export function cudaOrSkip(t: ExecutionContext): boolean {
  if (STAND_IN) return true;
  const p = cudaProbe();
  if (p.available) return true;
  skipOrFail(t, 'cuda', p.reason);
  return false;
}

/** The backend under test: the CUDA backend (device 0), or a second CPU backend in stand-in mode. */
export function gpu(): Backend {
  return STAND_IN ? standIn : cudaBackend;
}
const standIn = new CpuBackend();
export const cpu: Backend = new CpuBackend();

// ---- data ----------------------------------------------------------------------

export { randn, uniform, randint } from '@bagua/testing';

export function abs(a: Float32Array): Float32Array {
  return a.map(Math.abs);
}

// ---- running one call on both backends ----------------------------------------------

/** An operand: host data to upload (inputs, and outputs updated in place), or a size to allocate. */
export type Operand =
  | Float32Array
  | Int32Array
  | { n: number; dtype?: DType }
  | null;

export type Arrays = Record<string, Float32Array | Int32Array | null>;

/**
 * Uploads `operands` to `b`, calls `call` with their handles, downloads every
 * operand back. Outputs given only a size start as NaN (float) or -7 (int32),
 * so an element the kernel forgot to write shows up.
 */
export function runOn(b: Backend, operands: Record<string, Operand>, call: (h: Record<string, Handle | null>) => void): Arrays {
  const handles: Record<string, Handle | null> = {};
  const kinds: Record<string, { dtype: DType; n: number }> = {};
  for (const [name, op] of Object.entries(operands)) {
    if (op === null) {
      handles[name] = null;
      continue;
    }
    let data: Float32Array | Int32Array;
    if (op instanceof Float32Array || op instanceof Int32Array) {
      data = op;
    } else {
      data = (op.dtype ?? 'float32') === 'int32' ? new Int32Array(op.n).fill(-7) : new Float32Array(op.n).fill(NaN);
    }
    const dtype: DType = data instanceof Int32Array ? 'int32' : 'float32';
    const h = b.alloc(dtype, data.length, 0);
    if (data.length > 0) b.upload(h, data);
    handles[name] = h;
    kinds[name] = { dtype, n: data.length };
  }
  try {
    call(handles);
    const out: Arrays = {};
    for (const [name, h] of Object.entries(handles)) {
      out[name] = h === null ? null : (b.download(h, kinds[name]!.dtype, kinds[name]!.n) as Float32Array | Int32Array);
    }
    return out;
  } finally {
    for (const h of Object.values(handles)) if (h !== null) b.free(h);
  }
}

/** The same call on the CPU backend and on the backend under test. */
export function both(operands: Record<string, Operand>, call: (b: Backend, h: Record<string, Handle | null>) => void):
  { cpu: Arrays; gpu: Arrays } {
  const c = runOn(cpu, operands, (h) => call(cpu, h));
  const g = runOn(gpu(), operands, (h) => call(gpu(), h));
  return { cpu: c, gpu: g };
}

// ---- comparisons ------------------------------------------------------------------------

/** Bit-for-bit equality (NaN equals NaN): for kernels with no rounding choices. */
export function exact(t: ExecutionContext, got: ArrayLike<number> | null, want: ArrayLike<number> | null, what: string): void {
  if (!got || !want || got.length !== want.length) {
    t.fail(`${what}: got ${got?.length ?? 'null'} values, expected ${want?.length ?? 'null'}`);
    return;
  }
  for (let i = 0; i < want.length; i++) {
    if (!Object.is(got[i], want[i]) && !(got[i] === 0 && want[i] === 0)) {
      t.fail(`${what}: element ${i}: got ${got[i]}, expected ${want[i]} (exact)`);
      return;
    }
  }
  t.pass(what);
}

/**
 * |got - want| <= atol + rtol * |want| + rtolScale * scale[i] for every element
 * (NaN only where want is NaN). `scale`, when given, is the sum of |terms| behind
 * each element (the same kernel on |inputs|): the natural bound for sums computed
 * in a different order, which is what GPU reductions do.
 */
export function close(t: ExecutionContext, got: ArrayLike<number> | null, want: ArrayLike<number> | null, what: string,
  tol: { rtol?: number; atol?: number; scale?: ArrayLike<number> | null; rtolScale?: number } = {}): void {
  const rtol = tol.rtol ?? 1e-5, atol = tol.atol ?? 1e-6, rs = tol.rtolScale ?? 1e-5;
  if (!got || !want || got.length !== want.length) {
    t.fail(`${what}: got ${got?.length ?? 'null'} values, expected ${want?.length ?? 'null'}`);
    return;
  }
  let worst = -1, worstI = -1;
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!, w = want[i]!;
    if (Number.isNaN(w) && Number.isNaN(g)) continue;
    const bound = atol + rtol * Math.abs(w) + (tol.scale ? rs * Math.abs(tol.scale[i]!) : 0);
    const err = Math.abs(g - w);
    const ratio = Number.isNaN(err) ? Infinity : err / bound;
    if (ratio > worst) {
      worst = ratio;
      worstI = i;
    }
  }
  if (worst > 1) {
    t.fail(`${what}: element ${worstI}: got ${got[worstI]}, expected ${want[worstI]} ` +
      `(error ${(worst).toFixed(2)}x the tolerance rtol=${rtol} atol=${atol}${tol.scale ? ` scale*${rs}` : ''})`);
    return;
  }
  t.pass(what);
}

// ---- the kernel tests' shorthands (cuda-kernels, cuda-bn)

export type H = Record<string, Handle | null>;

/** A test of the CUDA backend: skipped (loudly) without a usable GPU. */
export function gpuTest(title: string, body: (t: ExecutionContext) => void): void {
  test(`cuda: ${title}`, (t) => {
    if (!cudaOrSkip(t)) return;
    body(t);
  });
}

/** A handle of a both()/runOn() result that must be there. */
export const h = (x: H, k: string): Handle => x[k]!;
