/**
 * SIMD reduction kernels of the threads backend: a tiny WebAssembly module,
 * assembled here byte by byte, that imports the group's shared memory.
 *
 * V8 does not vectorise typed-array loops: a JS `d[i] = a[i] + b[i]` over
 * Float32Array runs at ~1 element/ns (~4 GB/s), seven times slower than a
 * memory copy, so reductions, not copies, bounded large all-reduces. The
 * wasm kernels do 16 bytes per instruction. They only work when the group's
 * memory is a shared WebAssembly.Memory (layout.ts allocates it so); other
 * groups keep the JS loops of ./reduce.ts.
 *
 * Every kernel is elementwise over two inputs: `d[i] = a[i] op b[i]` for
 * i in [0, bytes/16 vectors). The caller folds ranks in order 0..n-1 (one
 * pass per rank), so results are bitwise those of the scalar loops:
 * f32x4/f64x2 add, min, max and div are IEEE-754 operations per lane with
 * the same results as Math.fround(a + b), Math.min, Math.max and /, and
 * integer adds wrap as typed-array stores do.
 */
import type { DType } from '../buffers.js';

// The REDOP_CODES of ./layout.js (which imports this file).
const SUM = 1;
const AVG = 2;
const MAX = 3;
const MIN = 4;

/** The parts of the WebAssembly API used here (this package's TS lib has no WebAssembly types). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}
interface WasmInstance {
  readonly exports: Record<string, unknown>;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => WasmInstance;
  Memory: new (d: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
}
const wasm = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

/** A shared wasm Memory of at least `bytes` bytes, or null where the runtime has none. */
export function sharedWasmMemory(bytes: number): WasmMemory | null {
  const pages = Math.ceil(bytes / 65536);
  if (!wasm || !module() || pages > 65536) return null;
  try {
    return new wasm.Memory({ initial: pages, maximum: pages, shared: true });
  } catch {
    return null;
  }
}

/** SIMD opcodes (after the 0xfd prefix) of the elementwise ops, per dtype and REDOP code. */
const OPS: Partial<Record<DType, Partial<Record<number, number>>>> = {
  float32: { [SUM]: 0xe4, [AVG]: 0xe4, [MIN]: 0xe8, [MAX]: 0xe9 },
  float64: { [SUM]: 0xf0, [AVG]: 0xf0, [MIN]: 0xf4, [MAX]: 0xf5 },
  int32: { [SUM]: 0xae, [MIN]: 0xb6, [MAX]: 0xb8 },
  int64: { [SUM]: 0xce },
  uint8: { [SUM]: 0x6e, [MIN]: 0x77, [MAX]: 0x79 },
};

function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

const vec = (items: number[][]): number[] => [...leb(items.length), ...items.flat()];
const str = (s: string): number[] => [...leb(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];
const section = (id: number, body: number[]): number[] => [id, ...leb(body.length), ...body];

const I32 = 0x7f;
const V128 = 0x7b;
const simd = (op: number): number[] => [0xfd, ...leb(op)];
const LOAD = [...simd(0x00), 4, 0]; // v128.load align=16 offset=0
const STORE = [...simd(0x0b), 4, 0];
const get = (i: number) => [0x20, i];
const bump = (i: number) => [0x20, i, 0x41, 16, 0x6a, 0x21, i]; // local[i] += 16

/** Loop over local 0 (d) until it reaches local `end`, running `body` then bumping `bumped` locals. */
function loop(end: number, body: number[], bumped: number[]): number[] {
  return [
    0x02, 0x40, 0x03, 0x40, // block, loop
    ...get(0), ...get(end), 0x4f, 0x0d, 1, // if d >= end: break
    ...body,
    ...bumped.flatMap(bump),
    0x0c, 0, 0x0b, 0x0b, // continue; end loop, block
  ];
}

/** (d, a, b, dEnd): d[i] = a[i] op b[i] over whole vectors. */
function binaryBody(op: number): number[] {
  return [0, ...loop(3, [...get(0), ...get(1), ...LOAD, ...get(2), ...LOAD, ...simd(op), ...STORE], [0, 1, 2]), 0x0b];
}

/** (d, dEnd, n): d[i] /= n, for float32 (f32) or float64 (!f32). */
function divideBody(f32: boolean): number[] {
  const splat = [...get(2), f32 ? 0xb3 : 0xb8, ...simd(f32 ? 0x13 : 0x14), 0x21, 3]; // local 3 = splat(float(n))
  const body = [...get(0), ...get(0), ...LOAD, ...get(3), ...simd(f32 ? 0xe7 : 0xf3), ...STORE];
  return [...vec([[1, V128]]), ...splat, ...loop(1, body, [0]), 0x0b];
}

interface Kernel {
  dt: DType;
  redop: number;
  name: string;
}

const KERNELS: Kernel[] = Object.entries(OPS).flatMap(([dt, ops]) =>
  Object.entries(ops!).map(([redop, code]) => ({ dt: dt as DType, redop: Number(redop), name: `${dt}_${code}` })),
);
// avg shares sum's kernel: export each distinct opcode once.
const BINARY = [...new Map(KERNELS.map((k) => [k.name, k])).values()];

function assemble(): Uint8Array {
  const types = vec([
    [0x60, ...vec([[I32], [I32], [I32], [I32]]), 0], // binary
    [0x60, ...vec([[I32], [I32], [I32]]), 0], // divide
  ]);
  const imp = vec([[...str('e'), ...str('m'), 0x02, 0x03, ...leb(1), ...leb(65536)]]); // shared memory, max 4 GiB
  const funcs = [...BINARY.map(() => [0]), [1], [1]];
  const bodies = [
    ...BINARY.map((k) => binaryBody(OPS[k.dt]![k.redop]!)),
    divideBody(true),
    divideBody(false),
  ].map((b) => [...leb(b.length), ...b]);
  const names = [...BINARY.map((k) => k.name), 'div_float32', 'div_float64'];
  const exps = vec(names.map((nm, i) => [...str(nm), 0x00, ...leb(i)]));
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, types),
    ...section(2, imp),
    ...section(3, vec(funcs)),
    ...section(7, exps),
    ...section(10, vec(bodies)),
  ]);
}

type BinaryFn = (d: number, a: number, b: number, dEnd: number) => void;
type DivideFn = (d: number, dEnd: number, n: number) => void;

let compiled: object | null | undefined; // null: this runtime has no wasm SIMD

function module(): object | null {
  if (compiled === undefined) {
    try {
      compiled = wasm ? new wasm.Module(assemble()) : null;
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

/** The kernels bound to one group's memory. Offsets and lengths are in bytes. */
export class SimdKernels {
  private readonly fns: Record<string, BinaryFn>;
  private readonly div32: DivideFn;
  private readonly div64: DivideFn;

  private constructor(inst: WasmInstance) {
    const e = inst.exports as Record<string, BinaryFn & DivideFn>;
    this.fns = e;
    this.div32 = e['div_float32']!;
    this.div64 = e['div_float64']!;
  }

  /** Kernels over `memory`, or null when wasm SIMD is unavailable or the memory is not shared. */
  static over(memory: WasmMemory | null | undefined): SimdKernels | null {
    const m = memory ? module() : null;
    if (!m || !wasm || !(memory!.buffer instanceof SharedArrayBuffer)) return null;
    try {
      return new SimdKernels(new wasm.Instance(m, { e: { m: memory } }));
    } catch {
      return null;
    }
  }

  /** The binary kernel of (dtype, REDOP code), or null when it has none (the JS loops do it). */
  binary(dt: DType, redop: number): BinaryFn | null {
    const code = OPS[dt]?.[redop];
    return code === undefined ? null : this.fns[`${dt}_${code}`]!;
  }

  /** d[i] /= n over whole vectors of float32 or float64. */
  divide(dt: DType): DivideFn | null {
    return dt === 'float32' ? this.div32 : dt === 'float64' ? this.div64 : null;
  }
}
