import { backwardCount, nn, noGrad, tensor, zeros, type optim, type Tensor } from '@bagua/core';
import { defaultGroup, isInitialized, type ProcessGroup } from '@bagua/comm';
import { commBuffer, movesDeviceMemory } from './comm-buffer.js';

/** What withBagua needs of an algorithm: set-up when wrapping, and the work before each optimizer step. */
export interface Algorithm {
  readonly name: string;
  init(module: nn.Module, group: ProcessGroup): void;
  /** Runs after backward, before the optimizers step. */
  beforeStep(module: nn.Module, group: ProcessGroup): void;
}

export interface GradientAllReduceOptions {
  /** Gradients are averaged in buckets of about this many bytes (PyTorch DDP's default is 25 MiB). */
  bucketBytes?: number;
}

/**
 * Bagua's GradientAllReduce: parameters and buffers are broadcast from rank 0
 * when wrapped; after backward, gradients are averaged across the group in
 * buckets (one all-reduce per bucket, parameters in reverse order, as
 * gradients become ready), then the optimizers step as usual.
 */
export class GradientAllReduce implements Algorithm {
  readonly name = 'gradient_allreduce';
  readonly bucketBytes: number;

  constructor(opts: GradientAllReduceOptions = {}) {
    this.bucketBytes = opts.bucketBytes ?? 25 << 20;
    if (!Number.isFinite(this.bucketBytes) || this.bucketBytes <= 0) {
      throw new Error(`GradientAllReduce: bucketBytes must be a positive number, got ${this.bucketBytes}`);
    }
  }

  init(module: nn.Module, group: ProcessGroup): void {
    for (const t of [...module.parameters(), ...module.buffers()]) {
      if (t.dtype === 'float32') group.broadcast(commBuffer(t), 0); // in place, in the tensor's own storage
    }
  }

  /** Buckets of trainable parameters, last parameter first. */
  buckets(module: nn.Module): Tensor[][] {
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

  /** One host buffer per bucket, kept from step to step (a fresh one per step is garbage and fresh pages). */
  private readonly stagingBuffers: Float32Array[] = [];
  private staging(bucket: number, length: number): Float32Array {
    let b = this.stagingBuffers[bucket];
    if (b?.length !== length) this.stagingBuffers[bucket] = b = new Float32Array(length);
    return b;
  }

  beforeStep(module: nn.Module, group: ProcessGroup): void {
    noGrad(() => {
      for (const [bucketIndex, bucket] of this.buckets(module).entries()) {
        // NCCL reduces device memory in place, tensor by tensor; CPU groups get one host buffer per bucket.
        if (movesDeviceMemory(group, bucket[0])) {
          for (const p of bucket) {
            p.grad ??= zeros(p.shape, { device: p.device });
            group.allReduce(commBuffer(p.grad), 'avg');
          }
          continue;
        }
        const flat = this.staging(bucketIndex, bucket.reduce((n, p) => n + p.numel, 0));
        let offset = 0;
        // A parameter without a gradient contributes zeros, so every rank sends the same layout.
        for (const p of bucket) {
          if (p.grad) flat.set(hostData(p.grad), offset);
          else flat.fill(0, offset, offset + p.numel);
          offset += p.numel;
        }
        group.allReduce(flat, 'avg');
        offset = 0;
        for (const p of bucket) {
          const part = flat.subarray(offset, offset + p.numel);
          // Back into the gradient's own storage when nothing else shares it; else a new gradient.
          const g = p.grad;
          if (g && !g.storage('GradientAllReduce').isShared) g.storage('GradientAllReduce').backend.upload(g.handle('GradientAllReduce'), part);
          else p.grad = tensor(part, { shape: p.shape, device: p.device });
          offset += p.numel;
        }
      }
    });
  }
}

/** A gradient's values on the host: its own storage on the CPU, a copy from a device. */
function hostData(t: Tensor): Float32Array {
  const b = commBuffer(t);
  if (b instanceof Float32Array) return b;
  if (ArrayBuffer.isView(b)) throw new Error(`GradientAllReduce: expected a float32 gradient, got ${b.constructor.name}`);
  return b.toHost() as Float32Array;
}

export interface BaguaState {
  readonly algorithm: Algorithm;
  readonly group: ProcessGroup;
  readonly optimizers: readonly optim.SGD[];
}

export type BaguaModule<M extends nn.Module> = M & { readonly bagua: BaguaState };

type Stepper = { step(): void };

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
  for (const opt of optimizers) {
    const step = opt.step.bind(opt);
    opt.step = () => {
      if (reducedAfter !== backwardCount()) {
        algorithm.beforeStep(module, group);
        reducedAfter = backwardCount();
      }
      step();
    };
  }
  Object.defineProperty(module, 'bagua', {
    value: { algorithm, group, optimizers: optimizers as optim.SGD[] },
    enumerable: false,
  });
  return module as BaguaModule<M>;
}
