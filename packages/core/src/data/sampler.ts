/** Index orders for the DataLoader: sequential, random (seeded), and PyTorch's DistributedSampler. */
import { defaultGenerator, Generator } from '../random.js';

/** The order in which a DataLoader reads a dataset: `indices()` is one epoch's. */
export interface Sampler {
  readonly length: number;
  indices(): Int32Array;
}

function checkLength(who: string, n: number): void {
  if (!Number.isInteger(n) || n < 0) throw new Error(`${who}: the dataset length must be a non-negative integer, got ${n}`);
}

/** A uniform draw in [0, n) from 48 random bits (24 bits alone would bias large n). */
function below(gen: Generator, n: number): number {
  const u = (Math.floor(gen.uniform() * 16777216) * 16777216 + Math.floor(gen.uniform() * 16777216)) / 281474976710656;
  return Math.floor(u * n);
}

/**
 * A random permutation of 0..n-1 (Fisher-Yates with `gen`). It plays
 * torch.randperm's part, but the orders differ from PyTorch's: its generator
 * and algorithm are not reproduced bit for bit.
 */
export function randperm(n: number, gen: Generator = defaultGenerator): Int32Array {
  checkLength('randperm', n);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = below(gen, i + 1);
    const t = out[i];
    out[i] = out[j];
    out[j] = t;
  }
  return out;
}

export class SequentialSampler implements Sampler {
  constructor(readonly length: number) {
    checkLength('SequentialSampler', length);
  }

  indices(): Int32Array {
    return Int32Array.from({ length: this.length }, (_, i) => i);
  }
}

/** A new permutation each epoch from `generator` (default: the global one, seeded by manualSeed). */
export class RandomSampler implements Sampler {
  private readonly generator: Generator;

  constructor(readonly length: number, opts: { generator?: Generator } = {}) {
    checkLength('RandomSampler', length);
    this.generator = opts.generator ?? defaultGenerator;
  }

  indices(): Int32Array {
    return randperm(this.length, this.generator);
  }
}

export interface DistributedSamplerOptions {
  /** the number of ranks taking part (PyTorch: num_replicas; the world size) */
  numReplicas: number;
  /** this rank, in [0, numReplicas) */
  rank: number;
  shuffle?: boolean;
  /** the shuffle's seed, the same on every rank; each epoch draws with seed + epoch */
  seed?: number;
  /** drop the tail that does not divide evenly, instead of padding by wrapping around */
  dropLast?: boolean;
}

/**
 * PyTorch 1.13's DistributedSampler, rule for rule: each rank takes
 * numSamples indices; with dropLast the list is cut to numSamples *
 * numReplicas, otherwise padded to it by repeating its start (wrapping as
 * often as needed); rank r takes indices[r], indices[r + numReplicas], ...
 * With shuffle the list is a permutation seeded by seed + epoch (setEpoch),
 * the same on every rank. The permutation itself differs from
 * torch.randperm's (see randperm); without shuffle the partition is PyTorch's
 * exactly (tested against it).
 */
export class DistributedSampler implements Sampler {
  readonly numReplicas: number;
  readonly rank: number;
  readonly shuffle: boolean;
  readonly seed: number;
  readonly dropLast: boolean;
  /** the indices each rank takes per epoch (PyTorch: num_samples) */
  readonly length: number;
  readonly totalSize: number;
  epoch = 0;

  constructor(readonly datasetLength: number, opts: DistributedSamplerOptions) {
    checkLength('DistributedSampler', datasetLength);
    const { numReplicas, rank } = opts;
    if (!Number.isInteger(numReplicas) || numReplicas < 1) {
      throw new Error(`DistributedSampler: numReplicas must be a positive integer, got ${numReplicas}`);
    }
    if (!Number.isInteger(rank) || rank < 0 || rank >= numReplicas) {
      throw new Error(`DistributedSampler: invalid rank ${rank}, rank should be in the interval [0, ${numReplicas - 1}]`);
    }
    this.numReplicas = numReplicas;
    this.rank = rank;
    this.shuffle = opts.shuffle ?? true;
    this.seed = opts.seed ?? 0;
    if (!Number.isInteger(this.seed)) throw new Error(`DistributedSampler: seed must be an integer, got ${this.seed}`);
    this.dropLast = opts.dropLast ?? false;
    const n = datasetLength;
    this.length = this.dropLast && n % numReplicas !== 0
      ? Math.max(0, Math.ceil((n - numReplicas) / numReplicas))
      : Math.ceil(n / numReplicas);
    this.totalSize = this.length * numReplicas;
  }

  /** Sets the epoch, so that each epoch's shuffle differs (call it before each epoch, on every rank). */
  setEpoch(epoch: number): void {
    if (!Number.isInteger(epoch) || epoch < 0) throw new Error(`DistributedSampler: epoch must be a non-negative integer, got ${epoch}`);
    this.epoch = epoch;
  }

  /** Every rank's list before it is split: a permutation (or 0..n-1), padded or cut to totalSize. */
  globalIndices(): Int32Array {
    const n = this.datasetLength;
    const base = this.shuffle
      ? randperm(n, new Generator(this.seed + this.epoch))
      : Int32Array.from({ length: n }, (_, i) => i);
    const out = new Int32Array(this.totalSize);
    // padding (or cutting): position i takes base[i mod n], which is PyTorch's
    // indices + indices[:pad] (and its repeated wrap when pad > n) or indices[:totalSize]
    for (let i = 0; i < this.totalSize; i++) out[i] = base[i % n];
    return out;
  }

  indices(): Int32Array {
    const all = this.globalIndices();
    const out = new Int32Array(this.length);
    for (let i = 0; i < this.length; i++) out[i] = all[this.rank + i * this.numReplicas];
    return out;
  }
}
