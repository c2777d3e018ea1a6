/**
 * Datasets for data.test.ts that a DataLoader worker thread can rebuild: this
 * module has no side effects (the worker imports it by URL).
 */
import type { data } from '../../src/index.js';

type Item = { image: data.HostTensor; label: number; weight: Float32Array };

/** Item i: a 2x3 float image filled with i, label i % 10, and a 1-element weight i / 2; throws at `failAt`, ends its thread at `exitAt`. */
export class Synthetic implements data.Dataset<Item> {
  constructor(readonly length: number, readonly failAt = -1, readonly exitAt = -1) {}

  getItem(i: number): Item {
    if (i === this.failAt) throw new Error(`item ${i} is unreadable`);
    if (i === this.exitAt) process.exit(3); // a dataset that ends its thread
    return { image: { data: new Float32Array(6).fill(i), shape: [2, 3], dtype: 'float32' }, label: i % 10, weight: Float32Array.of(i / 2) };
  }

  workerSource(): data.WorkerSource {
    return { module: import.meta.url, factory: 'syntheticFromSpec', spec: { length: this.length, failAt: this.failAt, exitAt: this.exitAt } };
  }
}

export function syntheticFromSpec(spec: { length: number; failAt: number; exitAt: number }): Synthetic {
  return new Synthetic(spec.length, spec.failAt, spec.exitAt);
}
