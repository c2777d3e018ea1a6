import { backwardCount, nn, noGrad, onBackwardStart, zeros, type HookHandle, type Tensor } from '@bagua/core';
import { defaultGroup, isInitialized, type ProcessGroup } from '@bagua/comm';
import { commBuffer } from './comm-buffer.js';
import { BucketReducer } from './bucket-reducer.js';

/** What withBagua needs of an algorithm: set-up when wrapping, and the work before each optimizer step. */
export interface Algorithm {
  readonly name: string;
  init(module: nn.Module, group: ProcessGroup): void;
  /** Runs after backward, before the optimizers step. */
  beforeStep(module: nn.Module, group: ProcessGroup): void;
}

export interface GradientAllReduceOptions {
  /** Bucket size cap in MiB (PyTorch DDP's bucket_cap_mb; default 25). */
  bucketCapMb?: number;
  /** The same cap in bytes (older name; bucketCapMb wins when both are given). */
  bucketBytes?: number;
  /**
   * Start each bucket's all-reduce as soon as its gradients are ready, while
   * backward goes on (default true). Off: every bucket at the step, blocking.
   */
  overlap?: boolean;
  /**
   * Parameters that get no gradient in a step count as zero gradients (and
   * those a backward cannot reach are ready at its start, as in DDP). Without
   * it, a step that leaves a parameter without a gradient is an error naming it.
   */
  findUnusedParameters?: boolean;
}

/**
 * Bagua's GradientAllReduce: parameters and buffers are broadcast from rank 0
 * when wrapped; gradients are averaged across the group in buckets, each
 * all-reduce started as soon as its bucket is full (BucketReducer), and the
 * optimizers step once every bucket is back. Device tensors on a group that
 * moves device memory (NCCL) are reduced in place, a bucket at a time as one
 * call on the group's communication stream, also while backward goes on.
 */
export class GradientAllReduce implements Algorithm {
  readonly name = 'gradient_allreduce';
  readonly bucketBytes: number;
  readonly overlap: boolean;
  readonly findUnusedParameters: boolean;
  private reducer: BucketReducer | null = null;
  private noSyncDepth = 0;
  private deviceSync: HookHandle | null = null;
  private syncedBackward = false;

  constructor(opts: GradientAllReduceOptions = {}) {
    this.bucketBytes = opts.bucketCapMb !== undefined ? Math.round(opts.bucketCapMb * (1 << 20)) : opts.bucketBytes ?? 25 << 20;
    if (!Number.isFinite(this.bucketBytes) || this.bucketBytes <= 0) {
      throw new Error(`GradientAllReduce: bucketBytes must be a positive number, got ${this.bucketBytes}`);
    }
    this.overlap = opts.overlap ?? true;
    this.findUnusedParameters = opts.findUnusedParameters ?? false;
  }

  init(module: nn.Module, group: ProcessGroup): void {
    for (const t of [...module.parameters(), ...module.buffers()]) {
      if (t.dtype === 'float32') group.broadcast(commBuffer(t), 0); // in place, in the tensor's own storage
    }
    const named = [...module.namedParameters()].filter(([, p]) => p.requiresGrad);
    const params = named.map(([, p]) => p);
    this.reducer?.remove();
    this.reducer = null;
    this.deviceSync?.remove();
    if (params.length) {
      this.reducer = new BucketReducer(params, new Map(named.map(([n, p]) => [p as Tensor, n])), group,
        { bucketBytes: this.bucketBytes, overlap: this.overlap, findUnusedParameters: this.findUnusedParameters });
    } else {
      // The device path reduces at the step; it still needs to know whether a backward since the last ran outside noSync.
      this.deviceSync = onBackwardStart((info) => {
        if (this.noSyncDepth === 0 && params.some((p) => info.reaches(p))) this.syncedBackward = true;
      });
    }
  }

  /**
   * Runs fn with gradient reduction off (PyTorch DDP's no_sync): backward
   * passes in it accumulate local gradients only, and a step after only such
   * passes is local; the next backward outside reduces the accumulated sum.
   */
  noSync<T>(fn: () => T): T {
    if (this.reducer) return this.reducer.noSync(fn);
    this.noSyncDepth++;
    try {
      return fn();
    } finally {
      this.noSyncDepth--;
    }
  }

  /** The current buckets of trainable parameters (after the first step: in the order gradients arrived). */
  buckets(module: nn.Module): Tensor[][] {
    if (this.reducer) return this.reducer.buckets();
    const params = module.parameters().filter((p) => p.requiresGrad).reverse();
    const out: Tensor[][] = [];
    let bucket: Tensor[] = [];
    let bytes = 0;
    for (const p of params) {
      if (bucket.length && bytes + p.numel * 4 > this.bucketBytes) {
        out.push(bucket);
        bucket = [];
        bytes = 0;
      }
      bucket.push(p);
      bytes += p.numel * 4;
    }
    if (bucket.length) out.push(bucket);
    return out;
  }

  beforeStep(module: nn.Module, group: ProcessGroup): void {
    noGrad(() => {
      if (this.reducer) return this.reducer.finish();
      // Only noSync backwards since the last step: a local step. (Without init, as a plain
      // function of the module, it reduces whatever the gradients hold, tensor by tensor.)
      if (this.deviceSync && !this.syncedBackward) return;
      this.syncedBackward = false;
      // NCCL reduces device memory in place, tensor by tensor.
      for (const bucket of this.buckets(module)) {
        for (const p of bucket) {
          p.grad ??= zeros(p.shape, { device: p.device });
          group.allReduce(commBuffer(p.grad), 'avg');
        }
      }
    });
  }
}

export interface BaguaState {
  readonly algorithm: Algorithm;
  readonly group: ProcessGroup;
  readonly optimizers: readonly Stepper[];
}

export type BaguaModule<M extends nn.Module> = M & { readonly bagua: BaguaState };

/** What withBagua wraps: any optimizer (core's, or one of the user's) with a step(). */
export type Stepper = { step(): void; syncGradients?(): void };

/**
 * Bagua's with_bagua: the same module (forward, parameters, train/eval and
 * stateDict unchanged), with the algorithm hooked in front of each
 * optimizer's step. Gradients are reduced once per backward even with several
 * optimizers: a step whose gradients were already reduced does not reduce again.
 */
export function withBagua<M extends nn.Module>(module: M, optimizers: readonly Stepper[], algorithm: Algorithm,
  opts: { processGroup?: ProcessGroup | null } = {}): BaguaModule<M> {
  const group = opts.processGroup ?? (isInitialized() ? defaultGroup() : null);
  if (!group) throw new Error('withBagua: no process group: call bagua.initProcessGroup() first');
  if ('bagua' in module) throw new Error('withBagua: this module is already wrapped');
  algorithm.init(module, group);
  let reducedAfter = -1; // the backward count at the last reduction
  const syncGradients = () => {
    if (reducedAfter !== backwardCount()) {
      algorithm.beforeStep(module, group);
      reducedAfter = backwardCount();
    }
  };
  for (const opt of optimizers) {
    const step = opt.step.bind(opt);
    // GradScaler calls syncGradients before it unscales and checks for inf/NaN, so every
    // rank checks the same averaged gradients and all skip (or take) the step together.
    opt.syncGradients = syncGradients;
    opt.step = () => {
      syncGradients();
      step();
    };
  }
  Object.defineProperty(module, 'bagua', {
    value: { algorithm, group, optimizers },
    enumerable: false,
  });
  return module as BaguaModule<M>;
}
