/**
 * Every kernel of native/include/bagua_kernels.h, declared once: its C name, and its
 * parameters in the header's order, each with what the backends need to call it
 * safely: for a storage operand its role, dtype and a size rule (how many elements
 * the call's sizes make it need), for the others how a JavaScript argument becomes
 * a C one. From this table come
 *  - the koffi declarations (kernelSignature, KERNEL_PARAMS), checked against the
 *    header itself by test/kernel-table.test.ts;
 *  - every kernel method of core's Backend, written once in native-backend.ts for
 *    the CPU and the CUDA backends alike.
 * The JavaScript arguments of a kernel method are the parameters below, in order,
 * except `ndim` (the shape's length) and the trailing `void *stream` (the backend's).
 * Adding a kernel: the header, its implementations, and one entry here.
 */
import type { BinaryOp, UnaryOp } from '@bagua/core';
import koffi from 'koffi';
import { conv2dSizes, declareGeometryTypes, GEOM_CTYPES } from './geometry.js';

/** The dtypes a kernel operand can have, with the C type of its elements. */
export const OPERAND_CTYPES = { float32: 'float', int32: 'int32_t', float16: 'bk_float16', bfloat16: 'bk_bfloat16' } as const;
export type OperandDType = keyof typeof OPERAND_CTYPES;

/** The call's JavaScript arguments by parameter name, as size rules see them. */
export type CallArgs = { readonly [name: string]: any };
/** Elements an operand must have, from the call's arguments. */
export type SizeRule = (a: CallArgs) => number;

/** A storage the kernel writes (`out`), reads (`in`) or updates in place (`inout`). */
export interface OperandParam {
  readonly kind: 'operand';
  readonly name: string;
  readonly cname: string;
  readonly role: 'out' | 'in' | 'inout';
  readonly dtype: OperandDType;
  /** The C parameter is nullable: the JavaScript argument may be null. */
  readonly optional: boolean;
  readonly size: SizeRule;
}

/**
 * A non-storage argument: `int64` sizes and `float` scalars pass through, `flag` is a
 * boolean as int32 0/1, `code` a name looked up in `codes`, `shape` / `strides` number
 * arrays as host int64 arrays (ndim <= 8), `ndim` the shape's length (no JavaScript
 * argument), `conv` / `pool` a geometry object as the header's struct (bk_conv2d_geom,
 * bk_pool2d_geom; geometry.ts).
 */
export interface ValueParam {
  readonly kind: 'int64' | 'float' | 'flag' | 'code' | 'shape' | 'strides' | 'ndim' | 'conv' | 'pool';
  readonly name: string;
  readonly cname: string;
  readonly codes?: Readonly<Record<string, number>>;
}

export type KernelParam = OperandParam | ValueParam;

export interface KernelSpec {
  /** The C function. */
  readonly cname: string;
  readonly params: readonly KernelParam[];
}

// ---- parameter constructors (C name defaults to the JavaScript name) ----------------

type Opts = { dtype?: OperandDType; optional?: boolean; cname?: string };
const operand = (role: OperandParam['role']) =>
  (name: string, size: SizeRule, o: Opts = {}): OperandParam => ({
    kind: 'operand', name, cname: o.cname ?? name, role, dtype: o.dtype ?? 'float32', optional: o.optional ?? false, size,
  });
const out = operand('out');
const inp = operand('in');
const inout = operand('inout');
const value = (kind: ValueParam['kind']) => (name: string, cname = name): ValueParam => ({ kind, name, cname });
const i64 = value('int64');
const f32 = value('float');
const flag = value('flag');
const shape = (): ValueParam => ({ kind: 'shape', name: 'shape', cname: 'shape' });
const ndim = (): ValueParam => ({ kind: 'ndim', name: 'ndim', cname: 'ndim' });
const strides = value('strides');
const code = (codes: Readonly<Record<string, number>>): ValueParam => ({ kind: 'code', name: 'op', cname: 'op', codes });
const geom = (kind: 'conv' | 'pool'): ValueParam => ({ kind, name: 'g', cname: 'geom' });
const opt = { optional: true } as const;
const int32 = { dtype: 'int32' } as const;
const bf16 = { dtype: 'bfloat16' } as const;
const f16 = { dtype: 'float16' } as const;

/** One entry: the JavaScript method name keys it; `kernel` keeps the C name's literal type. */
const kernel = <const C extends string>(cname: C, params: KernelParam[]) => ({ cname, params }) as const;

// ---- size rules --------------------------------------------------------------------

/** Elements of a contiguous tensor of `shape` (validated before size rules run). */
export function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (let d = 0; d < shape.length; d++) n *= shape[d]!;
  return n;
}

/** Elements a strided view must reach: 1 + the largest offset, or 0 when empty (strides >= 0). */
export function extentOf(shape: readonly number[], st: readonly number[]): number {
  let last = 0;
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 0) return 0;
    last += (shape[d]! - 1) * st[d]!;
  }
  return last + 1;
}

/** Elements a (possibly batched, strided) row-major matrix occupies: rows x cols with leading dimension ld. */
export function matrixExtent(rows: number, cols: number, ld: number, batch: number, stride: number): number {
  if (rows <= 0 || cols <= 0 || batch <= 0) return 0;
  return (batch - 1) * stride + (rows - 1) * ld + cols;
}

const N: SizeRule = (a) => a.n;
const C: SizeRule = (a) => a.c;
const ONE: SizeRule = () => 1;
const ROWS: SizeRule = (a) => a.rows;
const ROWS_COLS: SizeRule = (a) => a.rows * a.cols;
const ROWS_LEN: SizeRule = (a) => a.rows * a.len;
// the row norms' affine entries: groups * len / inner (0 for a bad inner: the C check names it)
const AFFINE: SizeRule = (a) => (a.inner > 0 ? a.groups * Math.floor(a.len / a.inner) : 0);
const NCHW: SizeRule = (a) => a.n * a.c * a.hw; // batch norm's x viewed as [n, c, hw]
const SUMS: SizeRule = (a) => 2 * a.c; // sum_dy, sum_dy_xmu
const SHAPE: SizeRule = (a) => numelOf(a.shape);
const CONV_X: SizeRule = (a) => conv2dSizes(a.g).x; // a.g: core's Conv2dGeometry
const CONV_W: SizeRule = (a) => conv2dSizes(a.g).w;
const CONV_Y: SizeRule = (a) => conv2dSizes(a.g).y;
const POOL_IN: SizeRule = (a) => a.g.planes * a.g.h * a.g.w; // a.g: core's Pool2dGeometry
const POOL_OUT: SizeRule = (a) => a.g.planes * a.g.oh * a.g.ow;

export const BINARY_CODES: Readonly<Record<BinaryOp, number>> = { add: 0, sub: 1, mul: 2, div: 3 };
export const UNARY_CODES: Readonly<Record<UnaryOp, number>> = { neg: 0, relu: 1, exp: 2, log: 3, sqrt: 4 };

// ---- the table ----------------------------------------------------------------------

/** Keyed by core's Backend method; each entry in the header's parameter order. */
export const KERNELS = {
  fill: kernel('bk_fill_f32', [out('out', N), i64('n'), f32('value')]),
  copy: kernel('bk_copy_f32', [out('out', N), inp('x', N), i64('n')]),
  // float32 <-> float16 / bfloat16 (round to nearest even; the half types as raw bits)
  castF32ToBf16: kernel('bk_cast_f32_bf16', [out('out', N, bf16), inp('x', N), i64('n')]),
  castF32ToF16: kernel('bk_cast_f32_f16', [out('out', N, f16), inp('x', N), i64('n')]),
  castBf16ToF32: kernel('bk_cast_bf16_f32', [out('out', N), inp('x', N, bf16), i64('n')]),
  castF16ToF32: kernel('bk_cast_f16_f32', [out('out', N), inp('x', N, f16), i64('n')]),
  stridedCopy: kernel('bk_strided_copy_f32', [
    out('out', SHAPE), inp('x', (a) => extentOf(a.shape, a.xStrides)), shape(), strides('xStrides', 'x_strides'), ndim()]),

  binary: kernel('bk_binary_f32', [
    code(BINARY_CODES), out('out', SHAPE), inp('a', (a) => extentOf(a.shape, a.aStrides)), strides('aStrides', 'a_strides'),
    inp('b', (a) => extentOf(a.shape, a.bStrides)), strides('bStrides', 'b_strides'), shape(), ndim()]),
  unary: kernel('bk_unary_f32', [code(UNARY_CODES), out('out', N), inp('x', N), i64('n')]),
  affine: kernel('bk_affine_f32', [out('out', N), inp('x', N), i64('n'), f32('alpha'), f32('beta')]),
  reluBackward: kernel('bk_relu_backward_f32', [out('dx', N), inp('dy', N), inp('x', N), i64('n')]),

  sum: kernel('bk_sum_f32', [
    out('out', (a) => a.outer * a.inner), inp('x', (a) => a.outer * a.reduce * a.inner),
    i64('outer'), i64('reduce'), i64('inner')]),
  gemm: kernel('bk_gemm_f32', [
    out('c', (a) => matrixExtent(a.m, a.n, a.ldc, a.batch, a.strideC)),
    inp('a', (a) => a.transA ? matrixExtent(a.k, a.m, a.lda, a.batch, a.strideA) : matrixExtent(a.m, a.k, a.lda, a.batch, a.strideA)),
    inp('b', (a) => a.transB ? matrixExtent(a.n, a.k, a.ldb, a.batch, a.strideB) : matrixExtent(a.k, a.n, a.ldb, a.batch, a.strideB)),
    flag('transA', 'trans_a'), flag('transB', 'trans_b'), i64('m'), i64('n'), i64('k'), f32('alpha'), f32('beta'),
    i64('lda'), i64('ldb'), i64('ldc'), i64('batch'), i64('strideA', 'stride_a'), i64('strideB', 'stride_b'),
    i64('strideC', 'stride_c')]),

  softmax: kernel('bk_softmax_f32', [out('out', ROWS_COLS), inp('x', ROWS_COLS), i64('rows'), i64('cols'), flag('log')]),
  softmaxBackward: kernel('bk_softmax_backward_f32', [
    out('dx', ROWS_COLS), inp('dy', ROWS_COLS), inp('y', ROWS_COLS), i64('rows'), i64('cols'), flag('log')]),
  // a target outside [0, cols): on CUDA reported when the result is next read (download / synchronize)
  nllLoss: kernel('bk_nll_loss_f32', [
    out('out', ROWS), inp('logp', ROWS_COLS), inp('target', ROWS, int32), i64('rows'), i64('cols')]),
  nllLossBackward: kernel('bk_nll_loss_backward_f32', [
    out('dlogp', ROWS_COLS), inp('dout', ROWS), inp('target', ROWS, int32), i64('rows'), i64('cols')]),

  conv2d: kernel('bk_conv2d_f32', [
    out('y', CONV_Y), inp('x', CONV_X), inp('w', CONV_W), inp('bias', (a) => a.g.k, opt), geom('conv')]),
  conv2dBackwardInput: kernel('bk_conv2d_backward_input_f32', [
    out('dx', CONV_X), inp('dy', CONV_Y), inp('w', CONV_W), geom('conv')]),
  conv2dBackwardWeight: kernel('bk_conv2d_backward_weight_f32', [
    out('dw', CONV_W), inp('dy', CONV_Y), inp('x', CONV_X), geom('conv')]),
  maxPool2d: kernel('bk_max_pool2d_f32', [
    out('y', POOL_OUT), out('indices', POOL_OUT, int32), inp('x', POOL_IN), geom('pool')]),
  maxPool2dBackward: kernel('bk_max_pool2d_backward_f32', [
    out('dx', POOL_IN), inp('dy', POOL_OUT), inp('indices', POOL_OUT, int32), geom('pool')]),
  avgPool2d: kernel('bk_avg_pool2d_f32', [out('y', POOL_OUT), inp('x', POOL_IN), geom('pool')]),
  avgPool2dBackward: kernel('bk_avg_pool2d_backward_f32', [out('dx', POOL_IN), inp('dy', POOL_OUT), geom('pool')]),
  adaptiveAvgPool2d: kernel('bk_adaptive_avg_pool2d_f32', [out('y', POOL_OUT), inp('x', POOL_IN), geom('pool')]),
  adaptiveAvgPool2dBackward: kernel('bk_adaptive_avg_pool2d_backward_f32', [
    out('dx', POOL_IN), inp('dy', POOL_OUT), geom('pool')]),

  bnStats: kernel('bk_bn_stats_f32', [
    out('stats', (a) => 2 * a.c + 2), inp('x', NCHW), i64('n'), i64('c'), i64('hw'), f32('tag')]),
  // a negative or NaN count in stats: on CUDA reported when a result is next read
  bnMergeStats: kernel('bk_bn_merge_stats_f32', [
    out('mean', C), out('invstd', C), out('count', ONE), 
    inp('stats', (a) => (a.ranks > 0 ? (a.ranks - 1) * a.stride + 2 * a.c + 1 : 0)), i64('ranks'), i64('c'),
    i64('stride'), f32('eps'), inout('runningMean', C, { ...opt, cname: 'running_mean' }),
    inout('runningVar', C, { ...opt, cname: 'running_var' }), f32('factor')]),
  // SyncBatchNorm's 'allReduce' exchange: [S1, S2, count, tag slots]; the merge reads S1, S2, count
  bnStatsSums: kernel('bk_bn_stats_sums_f32', [
    out('sums', (a) => 2 * a.c + 1 + a.ranks), inp('x', NCHW), inp('shift', C, opt), i64('n'), i64('c'), i64('hw'),
    i64('ranks'), i64('rank'), f32('tag')]),
  bnMergeSums: kernel('bk_bn_merge_sums_f32', [
    out('mean', C), out('invstd', C), out('count', ONE), inout('shift', C), inp('sums', (a) => 2 * a.c + 1), i64('c'),
    f32('eps'), inout('runningMean', C, { ...opt, cname: 'running_mean' }),
    inout('runningVar', C, { ...opt, cname: 'running_var' }), f32('factor')]),
  bnInvstd: kernel('bk_bn_invstd_f32', [out('invstd', C), inp('variance', C, { cname: 'var' }), i64('c'), f32('eps')]),
  bnElemt: kernel('bk_bn_elemt_f32', [
    out('y', NCHW), inp('x', NCHW), inp('mean', C), inp('invstd', C), inp('weight', C, opt), inp('bias', C, opt),
    i64('n'), i64('c'), i64('hw')]),
  bnBackwardReduce: kernel('bk_bn_backward_reduce_f32', [
    out('sums', SUMS), out('gradWeight', C, { ...opt, cname: 'grad_weight' }),
    out('gradBias', C, { ...opt, cname: 'grad_bias' }), inp('dy', NCHW), inp('x', NCHW), inp('mean', C),
    inp('invstd', C), i64('n'), i64('c'), i64('hw')]),
  bnBackwardElemt: kernel('bk_bn_backward_elemt_f32', [
    out('dx', NCHW), inp('dy', NCHW), inp('x', NCHW), inp('mean', C), inp('invstd', C), inp('weight', C, opt),
    inp('sums', SUMS), inp('count', ONE), i64('n'), i64('c'), i64('hw')]),

  // the batch-norm kernels on bfloat16 / float16 x, y, dy, dx (everything else float32)
  bnStatsBf16: kernel('bk_bn_stats_bf16', [
    out('stats', (a) => 2 * a.c + 2), inp('x', NCHW, bf16), i64('n'), i64('c'), i64('hw'), f32('tag')]),
  bnStatsSumsBf16: kernel('bk_bn_stats_sums_bf16', [
    out('sums', (a) => 2 * a.c + 1 + a.ranks), inp('x', NCHW, bf16), inp('shift', C, opt), i64('n'), i64('c'), i64('hw'),
    i64('ranks'), i64('rank'), f32('tag')]),
  bnElemtBf16: kernel('bk_bn_elemt_bf16', [
    out('y', NCHW, bf16), inp('x', NCHW, bf16), inp('mean', C), inp('invstd', C), inp('weight', C, opt), inp('bias', C, opt),
    i64('n'), i64('c'), i64('hw')]),
  bnBackwardReduceBf16: kernel('bk_bn_backward_reduce_bf16', [
    out('sums', SUMS), out('gradWeight', C, { ...opt, cname: 'grad_weight' }),
    out('gradBias', C, { ...opt, cname: 'grad_bias' }), inp('dy', NCHW, bf16), inp('x', NCHW, bf16), inp('mean', C),
    inp('invstd', C), i64('n'), i64('c'), i64('hw')]),
  bnBackwardElemtBf16: kernel('bk_bn_backward_elemt_bf16', [
    out('dx', NCHW, bf16), inp('dy', NCHW, bf16), inp('x', NCHW, bf16), inp('mean', C), inp('invstd', C), inp('weight', C, opt),
    inp('sums', SUMS), inp('count', ONE), i64('n'), i64('c'), i64('hw')]),
  bnStatsF16: kernel('bk_bn_stats_f16', [
    out('stats', (a) => 2 * a.c + 2), inp('x', NCHW, f16), i64('n'), i64('c'), i64('hw'), f32('tag')]),
  bnStatsSumsF16: kernel('bk_bn_stats_sums_f16', [
    out('sums', (a) => 2 * a.c + 1 + a.ranks), inp('x', NCHW, f16), inp('shift', C, opt), i64('n'), i64('c'), i64('hw'),
    i64('ranks'), i64('rank'), f32('tag')]),
  bnElemtF16: kernel('bk_bn_elemt_f16', [
    out('y', NCHW, f16), inp('x', NCHW, f16), inp('mean', C), inp('invstd', C), inp('weight', C, opt), inp('bias', C, opt),
    i64('n'), i64('c'), i64('hw')]),
  bnBackwardReduceF16: kernel('bk_bn_backward_reduce_f16', [
    out('sums', SUMS), out('gradWeight', C, { ...opt, cname: 'grad_weight' }),
    out('gradBias', C, { ...opt, cname: 'grad_bias' }), inp('dy', NCHW, f16), inp('x', NCHW, f16), inp('mean', C),
    inp('invstd', C), i64('n'), i64('c'), i64('hw')]),
  bnBackwardElemtF16: kernel('bk_bn_backward_elemt_f16', [
    out('dx', NCHW, f16), inp('dy', NCHW, f16), inp('x', NCHW, f16), inp('mean', C), inp('invstd', C), inp('weight', C, opt),
    inp('sums', SUMS), inp('count', ONE), i64('n'), i64('c'), i64('hw')]),
  sgd: kernel('bk_sgd_f32', [
    inout('param', N), inout('momentumBuf', N, { ...opt, cname: 'momentum_buf' }), inp('grad', N), i64('n'), f32('lr'),
    f32('momentum'), f32('dampening'), f32('weightDecay', 'weight_decay'), flag('nesterov'),
    flag('firstStep', 'first_step')]),
  adam: kernel('bk_adam_f32', [
    inout('param', N), inout('expAvg', N, { cname: 'exp_avg' }), inout('expAvgSq', N, { cname: 'exp_avg_sq' }),
    inout('maxExpAvgSq', N, { ...opt, cname: 'max_exp_avg_sq' }), inp('grad', N), i64('n'), f32('beta1'), f32('beta2'),
    f32('oneMinusBeta1', 'one_minus_beta1'), f32('oneMinusBeta2', 'one_minus_beta2'), f32('eps'),
    f32('weightDecay', 'weight_decay'), f32('paramScale', 'param_scale'), f32('stepSize', 'step_size'),
    f32('biasCorrection2Sqrt', 'bias_correction2_sqrt'), flag('amsgrad'), flag('maximize')]),
  // LayerNorm / GroupNorm over rows (affine index (r % groups) * (len / inner) + p / inner)
  rowNorm: kernel('bk_row_norm_f32', [
    out('y', ROWS_LEN), out('mean', ROWS), out('rstd', ROWS), inp('x', ROWS_LEN), inp('weight', AFFINE, opt),
    inp('bias', AFFINE, opt), i64('rows'), i64('len'), i64('groups'), i64('inner'), f32('eps')]),
  rowNormBackward: kernel('bk_row_norm_backward_f32', [
    out('dx', ROWS_LEN, opt), out('dweight', AFFINE, opt), out('dbias', AFFINE, opt), inp('dy', ROWS_LEN),
    inp('x', ROWS_LEN), inp('mean', ROWS), inp('rstd', ROWS), inp('weight', AFFINE, opt), i64('rows'), i64('len'),
    i64('groups'), i64('inner')]),
} as const;

export type KernelMethod = keyof typeof KERNELS;
export type KernelName = (typeof KERNELS)[KernelMethod]['cname'];
export const KERNEL_METHODS = Object.keys(KERNELS) as KernelMethod[];

/** A parameter's C declaration as the header writes it, e.g. `const float *x`, `int64_t n`. */
export function paramDecl(p: KernelParam): string {
  switch (p.kind) {
    case 'operand': return `${p.role === 'in' ? 'const ' : ''}${OPERAND_CTYPES[p.dtype]} *${p.cname}`;
    case 'int64': return `int64_t ${p.cname}`;
    case 'float': return `float ${p.cname}`;
    case 'flag': case 'code': case 'ndim': return `int32_t ${p.cname}`;
    case 'shape': case 'strides': return `const int64_t *${p.cname}`;
    case 'conv': case 'pool': return `const ${GEOM_CTYPES[p.kind]} *${p.cname}`;
  }
}

/** The parameters before the trailing `void *stream`, as one string. */
function paramsOf(spec: KernelSpec): string {
  return spec.params.map(paramDecl).join(', ');
}

/** The koffi declaration of a kernel: the header's prototype. */
export function kernelSignature(spec: KernelSpec): string {
  return `int ${spec.cname}(${paramsOf(spec)}, void *stream)`;
}

/** Every kernel of bagua_kernels.h: its parameters before the trailing `void *stream`. */
export const KERNEL_PARAMS = Object.fromEntries(
  KERNEL_METHODS.map((m) => [KERNELS[m].cname, paramsOf(KERNELS[m])])) as Readonly<Record<KernelName, string>>;
export const KERNEL_NAMES = KERNEL_METHODS.map((m) => KERNELS[m].cname) as KernelName[];

/** A declared C kernel: returns a bk_status (0 = BK_OK; see bk_last_error). */
export type KernelFn = (...args: unknown[]) => number;

/** Declares every kernel of the table in a loaded library (koffi throws for a missing one). */
export function declareKernels(lib: { func(decl: string): unknown }): Record<KernelName, KernelFn> {
  declareGeometryTypes();
  declareHalfTypes();
  const fn = {} as Record<KernelName, KernelFn>;
  for (const m of KERNEL_METHODS) fn[KERNELS[m].cname] = lib.func(kernelSignature(KERNELS[m])) as KernelFn;
  return fn;
}

/** The header's half typedefs (bk_float16, bk_bfloat16: raw 16 bits) for koffi, once per koffi instance. */
function declareHalfTypes(): void {
  for (const name of [OPERAND_CTYPES.float16, OPERAND_CTYPES.bfloat16]) {
    try {
      koffi.sizeof(name);
    } catch {
      koffi.alias(name, 'uint16_t');
    }
  }
}
