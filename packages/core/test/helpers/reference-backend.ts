/**
 * A stand-in for a real backend in core's own tests: core's `Backend` for
 * device type 'cpu' in plain TypeScript, with simple, obviously correct loops
 * (no caching allocator, no threads, no native code), so that core's tests
 * need neither @bagua/kernels (which depends on core) nor a compiled library.
 *
 * Storages are Float32Array / Int32Array; a handle is the typed array itself.
 * Kernels follow the C ABI in packages/kernels/native/include/bagua_kernels.h
 * (outputs first). Kernels no moved test uses throw "not supported by the
 * stand-in"; reference-backend.test.ts checks the others against hand-computed
 * values so that a wrong stand-in cannot make core's tests pass.
 */
import {
  hasBackend, registerBackend, type Backend, type BinaryOp, type Conv2dGeometry, type DType, type Handle,
  type HostArray, type Pool2dGeometry, type UnaryOp,
} from '../../src/index.js';

type Storage = Float32Array | Int32Array | BigInt64Array;

const f32 = (h: Handle): Float32Array => {
  if (!(h instanceof Float32Array)) throw new Error('reference backend: expected a float32 storage');
  return h;
};
const i32 = (h: Handle): Int32Array => {
  if (!(h instanceof Int32Array)) throw new Error('reference backend: expected an int32 storage');
  return h;
};
const unsupported = (kernel: string): never => {
  throw new Error(`reference backend: ${kernel} is not supported by the stand-in`);
};
/** Guards the kernels whose signature is being changed: a call with another arity fails loudly. */
const arity = (kernel: string, args: IArguments, n: number): void => {
  if (args.length !== n) {
    throw new Error(`reference backend: ${kernel} called with ${args.length} arguments, the stand-in knows ${n}: ` +
      'update test/helpers/reference-backend.ts to the Backend interface');
  }
};

/** Calls f(outIndex, offset) for every element of a contiguous `shape`, offset read through `strides`. */
function forEachStrided(shape: readonly number[], strides: readonly number[], f: (o: number, off: number) => void): void {
  const numel = shape.reduce((a, b) => a * b, 1);
  for (let o = 0; o < numel; o++) {
    let rest = o;
    let off = 0;
    for (let d = shape.length - 1; d >= 0; d--) {
      off += (rest % shape[d]) * strides[d];
      rest = Math.floor(rest / shape[d]);
    }
    f(o, off);
  }
}

export class ReferenceBackend implements Backend {
  readonly deviceType = 'cpu' as const;
  private nextId = 1;
  private readonly live = new Map<number, Storage>();
  private readonly ids = new WeakMap<Storage, number>();
  private systemAllocs = 0;

  alloc(dtype: DType, numel: number, deviceIndex: number): Handle {
    if (deviceIndex !== 0) throw new Error(`alloc: the CPU has only device index 0 (got ${deviceIndex})`);
    if (!Number.isInteger(numel) || numel < 0) throw new Error(`alloc: bad element count ${numel}`);
    let s: Storage;
    if (dtype === 'float32') s = new Float32Array(numel);
    else if (dtype === 'int32') s = new Int32Array(numel);
    else if (dtype === 'int64') s = new BigInt64Array(numel); // held only (numBatchesTracked): no kernel reads it
    else return unsupported(`dtype ${dtype}`);
    const id = this.nextId++;
    this.live.set(id, s);
    this.ids.set(s, id);
    this.systemAllocs++;
    return s;
  }

  free(handle: Handle): void {
    const id = this.ids.get(handle as Storage);
    if (id === undefined || !this.live.delete(id)) throw new Error('free: not a live storage of the stand-in');
  }

  allocatorStats(): { reserved: number; systemAllocs: number } {
    let reserved = 0;
    for (const s of this.live.values()) reserved += s.byteLength;
    return { reserved, systemAllocs: this.systemAllocs };
  }

  emptyCache(): void {
    // nothing is cached
  }

  reclaimToken(handle: Handle): unknown {
    return this.ids.get(handle as Storage);
  }

  reclaim(token: unknown): void {
    this.live.delete(token as number);
  }

  upload(handle: Handle, src: HostArray): void {
    const dst = handle as Storage;
    if (src.length > dst.length) throw new Error(`upload: ${src.length} elements do not fit a storage of ${dst.length}`);
    if (dst instanceof BigInt64Array !== src instanceof BigInt64Array) throw new Error('upload: dtype mismatch');
    (dst as Float32Array).set(src as Float32Array);
  }

  download(handle: Handle, _dtype: DType, numel: number): HostArray {
    const src = handle as Storage;
    if (numel > src.length) throw new Error(`download: ${numel} elements requested from a storage of ${src.length}`);
    return src.slice(0, numel);
  }

  synchronize(): void {
    // every kernel is synchronous
  }

  hostView(handle: Handle): HostArray {
    return handle as Storage;
  }

  // ---- memory movement ----

  fill(out: Handle, n: number, value: number): void {
    const o = f32(out);
    for (let i = 0; i < n; i++) o[i] = value;
  }

  copy(out: Handle, x: Handle, n: number): void {
    const o = f32(out);
    const src = f32(x).slice(0, n); // a copy first: overlapping ranges stay correct
    for (let i = 0; i < n; i++) o[i] = src[i];
  }

  stridedCopy(out: Handle, x: Handle, shape: readonly number[], xStrides: readonly number[]): void {
    const o = f32(out);
    const src = f32(x).slice();
    forEachStrided(shape, xStrides, (i, off) => { o[i] = src[off]; });
  }

  // ---- elementwise ----

  binary(op: BinaryOp, out: Handle, a: Handle, aStrides: readonly number[], b: Handle,
    bStrides: readonly number[], shape: readonly number[]): void {
    const o = f32(out);
    const av = f32(a).slice();
    const bv = f32(b).slice();
    const numel = shape.reduce((p, q) => p * q, 1);
    const aOff: number[] = new Array(numel);
    forEachStrided(shape, aStrides, (i, off) => { aOff[i] = off; });
    forEachStrided(shape, bStrides, (i, off) => {
      const x = av[aOff[i]];
      const y = bv[off];
      switch (op) {
        case 'add': o[i] = x + y; break;
        case 'sub': o[i] = x - y; break;
        case 'mul': o[i] = x * y; break;
        case 'div': o[i] = x / y; break;
        default: unsupported(`binary op ${String(op)}`);
      }
    });
  }

  unary(op: UnaryOp, out: Handle, x: Handle, n: number): void {
    const o = f32(out);
    const v = f32(x);
    const f: Record<UnaryOp, (a: number) => number> = {
      neg: (a) => -a, relu: (a) => (a > 0 ? a : 0), exp: Math.exp, log: Math.log, sqrt: Math.sqrt,
    };
    const g = f[op] ?? unsupported(`unary op ${String(op)}`);
    for (let i = 0; i < n; i++) o[i] = g(v[i]);
  }

  affine(out: Handle, x: Handle, n: number, alpha: number, beta: number): void {
    const o = f32(out);
    const v = f32(x);
    for (let i = 0; i < n; i++) o[i] = alpha * v[i] + beta;
  }

  reluBackward(dx: Handle, dy: Handle, x: Handle, n: number): void {
    const d = f32(dx);
    const g = f32(dy);
    const v = f32(x);
    for (let i = 0; i < n; i++) d[i] = v[i] > 0 ? g[i] : 0;
  }

  // ---- reductions and products ----

  sum(out: Handle, x: Handle, outer: number, reduce: number, inner: number): void {
    const o = f32(out);
    const v = f32(x);
    for (let a = 0; a < outer; a++) {
      for (let i = 0; i < inner; i++) {
        let s = 0;
        for (let r = 0; r < reduce; r++) s += v[(a * reduce + r) * inner + i];
        o[a * inner + i] = s;
      }
    }
  }

  gemm(c: Handle, a: Handle, b: Handle, transA: boolean, transB: boolean,
    m: number, n: number, k: number, alpha: number, beta: number,
    lda: number, ldb: number, ldc: number,
    batch: number, strideA: number, strideB: number, strideC: number): void {
    const C = f32(c);
    const A = f32(a).slice();
    const B = f32(b).slice();
    for (let t = 0; t < batch; t++) {
      const a0 = t * strideA;
      const b0 = t * strideB;
      const c0 = t * strideC;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let p = 0; p < k; p++) {
            const aip = transA ? A[a0 + p * lda + i] : A[a0 + i * lda + p];
            const bpj = transB ? B[b0 + j * ldb + p] : B[b0 + p * ldb + j];
            s += aip * bpj;
          }
          // beta == 0 ignores C (it may hold garbage or NaN), as BLAS does
          C[c0 + i * ldc + j] = alpha * s + (beta === 0 ? 0 : beta * C[c0 + i * ldc + j]);
        }
      }
    }
  }

  // ---- softmax and losses ----

  softmax(out: Handle, x: Handle, rows: number, cols: number, log: boolean): void {
    const o = f32(out);
    const v = f32(x).slice();
    for (let r = 0; r < rows; r++) {
      const row = v.subarray(r * cols, (r + 1) * cols);
      let m = -Infinity;
      for (const e of row) m = Math.max(m, e);
      if (!(m > -Infinity)) m = 0;
      let s = 0;
      for (const e of row) s += Math.exp(e - m);
      for (let i = 0; i < cols; i++) o[r * cols + i] = log ? row[i] - m - Math.log(s) : Math.exp(row[i] - m) / s;
    }
  }

  softmaxBackward(dx: Handle, dy: Handle, y: Handle, rows: number, cols: number, log: boolean): void {
    const d = f32(dx);
    const g = f32(dy).slice();
    const o = f32(y).slice();
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let i = 0; i < cols; i++) s += log ? g[r * cols + i] : g[r * cols + i] * o[r * cols + i];
      for (let i = 0; i < cols; i++) {
        const k = r * cols + i;
        d[k] = log ? g[k] - Math.exp(o[k]) * s : o[k] * (g[k] - s);
      }
    }
  }

  private checkTargets(kernel: string, t: Int32Array, rows: number, cols: number): void {
    for (let r = 0; r < rows; r++) {
      if (t[r] < 0 || t[r] >= cols) throw new Error(`${kernel}: target ${t[r]} out of range [0, ${cols}) at row ${r}`);
    }
  }

  nllLoss(out: Handle, logp: Handle, target: Handle, rows: number, cols: number): void {
    const o = f32(out);
    const lp = f32(logp);
    const t = i32(target);
    this.checkTargets('nllLoss', t, rows, cols);
    for (let r = 0; r < rows; r++) o[r] = -lp[r * cols + t[r]];
  }

  nllLossBackward(dlogp: Handle, dout: Handle, target: Handle, rows: number, cols: number): void {
    const d = f32(dlogp);
    const g = f32(dout);
    const t = i32(target);
    this.checkTargets('nllLossBackward', t, rows, cols);
    d.fill(0, 0, rows * cols);
    for (let r = 0; r < rows; r++) d[r * cols + t[r]] = -g[r];
  }

  // ---- convolution and pooling: forward convolution only ----

  conv2d(y: Handle, x: Handle, w: Handle, bias: Handle | null, g: Conv2dGeometry): void {
    const Y = f32(y);
    const X = f32(x);
    const W = f32(w);
    const B = bias ? f32(bias) : null;
    const cpg = g.c / g.groups;
    const kpg = g.k / g.groups;
    for (let b = 0; b < g.n; b++) {
      for (let k = 0; k < g.k; k++) {
        const group = Math.floor(k / kpg);
        for (let oh = 0; oh < g.oh; oh++) {
          for (let ow = 0; ow < g.ow; ow++) {
            let s = B ? B[k] : 0;
            for (let cg = 0; cg < cpg; cg++) {
              const ch = group * cpg + cg;
              for (let r = 0; r < g.r; r++) {
                const ih = oh * g.strideH - g.padH + r * g.dilH;
                if (ih < 0 || ih >= g.h) continue;
                for (let q = 0; q < g.s; q++) {
                  const iw = ow * g.strideW - g.padW + q * g.dilW;
                  if (iw < 0 || iw >= g.w) continue;
                  s += X[((b * g.c + ch) * g.h + ih) * g.w + iw] * W[((k * cpg + cg) * g.r + r) * g.s + q];
                }
              }
            }
            Y[((b * g.k + k) * g.oh + oh) * g.ow + ow] = s;
          }
        }
      }
    }
  }

  conv2dBackwardInput(_dx: Handle, _dy: Handle, _w: Handle, _g: Conv2dGeometry): void { unsupported('conv2dBackwardInput'); }
  conv2dBackwardWeight(_dw: Handle, _dy: Handle, _x: Handle, _g: Conv2dGeometry): void { unsupported('conv2dBackwardWeight'); }
  maxPool2d(_y: Handle, _i: Handle, _x: Handle, _g: Pool2dGeometry): void { unsupported('maxPool2d'); }
  maxPool2dBackward(_dx: Handle, _dy: Handle, _i: Handle, _g: Pool2dGeometry): void { unsupported('maxPool2dBackward'); }
  avgPool2d(_y: Handle, _x: Handle, _g: Pool2dGeometry): void { unsupported('avgPool2d'); }
  avgPool2dBackward(_dx: Handle, _dy: Handle, _g: Pool2dGeometry): void { unsupported('avgPool2dBackward'); }
  adaptiveAvgPool2d(_y: Handle, _x: Handle, _g: Pool2dGeometry): void { unsupported('adaptiveAvgPool2d'); }
  adaptiveAvgPool2dBackward(_dx: Handle, _dy: Handle, _g: Pool2dGeometry): void {
    unsupported('adaptiveAvgPool2dBackward');
  }

  // ---- batch normalisation: the forward path of a training step only ----

  /** stats: float[2c + 2] = mean, biased var, count, tag (two passes in doubles) */
  bnStats(stats: Handle, x: Handle, n: number, c: number, hw: number, tag: number): void {
    arity('bnStats', arguments, 6);
    const S = f32(stats);
    const X = f32(x);
    const count = n * hw;
    for (let ch = 0; ch < c; ch++) {
      let s = 0;
      for (let b = 0; b < n; b++) for (let i = 0; i < hw; i++) s += X[(b * c + ch) * hw + i];
      const mean = count ? s / count : 0;
      let v = 0;
      for (let b = 0; b < n; b++) for (let i = 0; i < hw; i++) v += (X[(b * c + ch) * hw + i] - mean) ** 2;
      S[ch] = mean;
      S[c + ch] = count ? v / count : 0;
    }
    S[2 * c] = count;
    S[2 * c + 1] = tag;
  }

  /** `ranks` records `stride` floats apart, each mean[c], var[c], count (the rest unread) */
  bnMergeStats(mean: Handle, invstd: Handle, count: Handle, stats: Handle, ranks: number, c: number, stride: number,
    eps: number, runningMean: Handle | null, runningVar: Handle | null, factor: number): void {
    arity('bnMergeStats', arguments, 11);
    if (stride < 2 * c + 1) throw new Error(`bnMergeStats: stride ${stride} is less than 2c + 1 = ${2 * c + 1}`);
    const M = f32(mean);
    const I = f32(invstd);
    const S = f32(stats);
    const width = stride;
    let total = 0;
    for (let r = 0; r < ranks; r++) total += S[r * width + 2 * c];
    f32(count)[0] = total;
    for (let ch = 0; ch < c; ch++) {
      let m = 0;
      for (let r = 0; r < ranks; r++) m += S[r * width + 2 * c] * S[r * width + ch];
      m = total ? m / total : 0;
      let v = 0; // the pooled biased variance: within-rank plus between-rank
      for (let r = 0; r < ranks; r++) {
        const cnt = S[r * width + 2 * c];
        if (cnt) v += cnt * (S[r * width + c + ch] + (S[r * width + ch] - m) ** 2);
      }
      v = total ? v / total : 0;
      M[ch] = m;
      I[ch] = 1 / Math.sqrt(v + eps);
      if (total > 1) {
        if (runningMean) f32(runningMean)[ch] = (1 - factor) * f32(runningMean)[ch] + factor * m;
        if (runningVar) f32(runningVar)[ch] = (1 - factor) * f32(runningVar)[ch] + factor * v * total / (total - 1);
      }
    }
  }

  /** sums: float[2c + 1 + ranks] = sum(x - s), sum((x - s)^2), count, tag slots (direct sums in doubles) */
  bnStatsSums(sums: Handle, x: Handle, shift: Handle | null, n: number, c: number, hw: number, ranks: number,
    rank: number, tag: number): void {
    arity('bnStatsSums', arguments, 9);
    const S = f32(sums);
    const X = f32(x);
    for (let ch = 0; ch < c; ch++) {
      const s = shift ? f32(shift)[ch] : 0;
      let s1 = 0;
      let s2 = 0;
      for (let b = 0; b < n; b++) {
        for (let i = 0; i < hw; i++) {
          const d = X[(b * c + ch) * hw + i] - s;
          s1 += d;
          s2 += d * d;
        }
      }
      S[ch] = s1;
      S[c + ch] = s2;
    }
    S[2 * c] = n * hw;
    for (let r = 0; r < ranks; r++) S[2 * c + 1 + r] = r === rank ? tag : 0;
  }

  /** mean = shift + S1/N, var = (S2 - S1^2/N)/N; shift = mean when N > 0 */
  bnMergeSums(mean: Handle, invstd: Handle, count: Handle, shift: Handle, sums: Handle, c: number, eps: number,
    runningMean: Handle | null, runningVar: Handle | null, factor: number): void {
    arity('bnMergeSums', arguments, 10);
    const S = f32(sums);
    const Sh = f32(shift);
    const total = S[2 * c];
    f32(count)[0] = total;
    for (let ch = 0; ch < c; ch++) {
      const d = total ? S[ch] / total : 0;
      const m = total ? Sh[ch] + d : 0;
      const v = total ? Math.max(S[c + ch] / total - d * d, 0) : 0;
      f32(mean)[ch] = m;
      f32(invstd)[ch] = 1 / Math.sqrt(v + eps);
      if (total > 1) {
        if (runningMean) f32(runningMean)[ch] = (1 - factor) * f32(runningMean)[ch] + factor * m;
        if (runningVar) f32(runningVar)[ch] = (1 - factor) * f32(runningVar)[ch] + factor * v * total / (total - 1);
      }
      if (total > 0) Sh[ch] = f32(mean)[ch];
    }
  }

  bnInvstd(invstd: Handle, variance: Handle, c: number, eps: number): void {
    const I = f32(invstd);
    const V = f32(variance);
    for (let ch = 0; ch < c; ch++) I[ch] = 1 / Math.sqrt(V[ch] + eps);
  }

  bnElemt(y: Handle, x: Handle, mean: Handle, invstd: Handle, weight: Handle | null,
    bias: Handle | null, n: number, c: number, hw: number): void {
    const Y = f32(y);
    const X = f32(x);
    const M = f32(mean);
    const I = f32(invstd);
    const W = weight ? f32(weight) : null;
    const B = bias ? f32(bias) : null;
    for (let b = 0; b < n; b++) {
      for (let ch = 0; ch < c; ch++) {
        for (let i = 0; i < hw; i++) {
          const k = (b * c + ch) * hw + i;
          Y[k] = (X[k] - M[ch]) * I[ch] * (W ? W[ch] : 1) + (B ? B[ch] : 0);
        }
      }
    }
  }

  bnBackwardReduce(): void { unsupported('bnBackwardReduce'); }
  bnBackwardElemt(): void { unsupported('bnBackwardElemt'); }

  // ---- optimiser ----

  sgd(param: Handle, momentumBuf: Handle | null, grad: Handle, n: number, lr: number,
    momentum: number, dampening: number, weightDecay: number, nesterov: boolean, firstStep: boolean): void {
    const p = f32(param);
    const g = f32(grad);
    if (nesterov && (momentum <= 0 || dampening !== 0)) {
      throw new Error('sgd: nesterov momentum requires a momentum > 0 and zero dampening');
    }
    const buf = momentum !== 0 ? f32(momentumBuf ?? unsupported('sgd with momentum and no buffer')) : null;
    for (let i = 0; i < n; i++) {
      const d = g[i] + weightDecay * p[i];
      if (!buf) {
        p[i] -= lr * d;
        continue;
      }
      const b = firstStep ? d : momentum * buf[i] + (1 - dampening) * d;
      buf[i] = b;
      p[i] -= lr * (nesterov ? d + momentum * b : b);
    }
  }

  /** PyTorch's single-tensor Adam/AdamW, every operation rounded to float32 (Math.fround) in PyTorch's order. */
  adam(param: Handle, expAvg: Handle, expAvgSq: Handle, maxExpAvgSq: Handle | null, grad: Handle, n: number,
    beta1: number, beta2: number, oneMinusBeta1: number, oneMinusBeta2: number, eps: number, weightDecay: number,
    paramScale: number, stepSize: number, biasCorrection2Sqrt: number, amsgrad: boolean, maximize: boolean): void {
    arity('adam', arguments, 17);
    const r = Math.fround;
    const [p, m, v, g] = [f32(param), f32(expAvg), f32(expAvgSq), f32(grad)];
    const vmax = amsgrad ? f32(maxExpAvgSq ?? unsupported('adam with amsgrad and no max_exp_avg_sq')) : null;
    const [b1, b2, omb1, omb2, e, wd, scale, negStep, bc2] =
      [beta1, beta2, oneMinusBeta1, oneMinusBeta2, eps, weightDecay, paramScale, -stepSize, biasCorrection2Sqrt].map(r);
    for (let i = 0; i < n; i++) {
      let x = p[i];
      if (scale !== 1) x = r(x * scale);
      let d = maximize ? -g[i] : g[i];
      if (wd !== 0) d = r(d + r(wd * x));
      m[i] = r(r(m[i] * b1) + r(omb1 * d));
      v[i] = r(r(v[i] * b2) + r(r(omb2 * d) * d));
      let vi = v[i];
      if (vmax) {
        vi = vmax[i] >= vi || Number.isNaN(vmax[i]) ? vmax[i] : vi;
        vmax[i] = vi;
      }
      const denom = r(r(r(Math.sqrt(vi)) / bc2) + e);
      p[i] = r(x + r(r(negStep * m[i]) / denom));
    }
  }

  // ---- LayerNorm / GroupNorm rows: the definitions, in double ----

  rowNorm(y: Handle, mean: Handle, rstd: Handle, x: Handle, weight: Handle | null, bias: Handle | null,
    rows: number, len: number, groups: number, inner: number, eps: number): void {
    arity('rowNorm', arguments, 11);
    const [Y, M, R, X] = [f32(y), f32(mean), f32(rstd), f32(x)];
    const W = weight ? f32(weight) : null;
    const B = bias ? f32(bias) : null;
    const segs = len / inner;
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let p = 0; p < len; p++) s += X[r * len + p];
      const m = s / len;
      let q = 0;
      for (let p = 0; p < len; p++) q += (X[r * len + p] - m) ** 2;
      const rs = 1 / Math.sqrt(q / len + Math.fround(eps));
      M[r] = m;
      R[r] = rs;
      for (let p = 0; p < len; p++) {
        const a = (r % groups) * segs + Math.floor(p / inner);
        Y[r * len + p] = (X[r * len + p] - m) * rs * (W ? W[a] : 1) + (B ? B[a] : 0);
      }
    }
  }

  rowNormBackward(dx: Handle | null, dweight: Handle | null, dbias: Handle | null, dy: Handle, x: Handle,
    mean: Handle, rstd: Handle, weight: Handle | null, rows: number, len: number, groups: number, inner: number): void {
    arity('rowNormBackward', arguments, 12);
    const [G, X, M, R] = [f32(dy), f32(x), f32(mean), f32(rstd)];
    const W = weight ? f32(weight) : null;
    const segs = len / inner;
    const DW = dweight ? f32(dweight).fill(0) : null;
    const DB = dbias ? f32(dbias).fill(0) : null;
    const dw = new Float64Array(groups * segs);
    const db = new Float64Array(groups * segs);
    const at = (r: number, p: number) => (r % groups) * segs + Math.floor(p / inner);
    for (let r = 0; r < rows; r++) {
      let s1 = 0;
      let s2 = 0;
      for (let p = 0; p < len; p++) {
        const i = r * len + p;
        const xh = (X[i] - M[r]) * R[r];
        const g = G[i] * (W ? W[at(r, p)] : 1);
        s1 += g;
        s2 += g * xh;
        dw[at(r, p)] += G[i] * xh;
        db[at(r, p)] += G[i];
      }
      if (!dx) continue;
      const D = f32(dx);
      for (let p = 0; p < len; p++) {
        const i = r * len + p;
        const xh = (X[i] - M[r]) * R[r];
        D[i] = R[r] * (G[i] * (W ? W[at(r, p)] : 1) - s1 / len - xh * s2 / len);
      }
    }
    if (DW) DW.set(dw);
    if (DB) DB.set(db);
  }
}

/** The stand-in every test file of core shares (one per worker thread). */
export const referenceBackend = new ReferenceBackend();

/** Registers the stand-in as the 'cpu' backend of this thread (once), and returns it. */
export function useReferenceBackend(): ReferenceBackend {
  if (!hasBackend('cpu')) registerBackend(referenceBackend);
  return referenceBackend;
}
