/** Datasets: PyTorch's map-style Dataset (an item per index) and TensorDataset. */
import { hostArray, bytesPerElement, type DType, type HostArray } from '../dtype.js';
import { fmt, numelOf, type Shape } from '../shape.js';
import type { Tensor } from '../tensor.js';
import type { HostTensor, Sample } from './sample.js';

/**
 * How a worker thread rebuilds a dataset: it imports `module` (a file URL)
 * and calls its export `factory` with `spec` (structured-cloned: share big
 * data through SharedArrayBuffers, or name a file to read).
 */
export interface WorkerSource {
  readonly module: string;
  readonly factory: string;
  readonly spec: unknown;
}

/** A map-style dataset, as PyTorch's: `length` items, read by index. */
export interface Dataset<T extends Sample = Sample> {
  readonly length: number;
  getItem(index: number): T;
  /**
   * Present when the dataset can be read from a worker thread (items then
   * must be host values: HostTensor, typed arrays, numbers); the DataLoader
   * then assembles batches there, off the main thread.
   */
  workerSource?(): WorkerSource | null;
}

interface Column {
  readonly buffer: SharedArrayBuffer;
  readonly dtype: DType;
  /** the shape of one row */
  readonly rowShape: Shape;
}

function view(c: Column): HostArray {
  const n = c.buffer.byteLength / bytesPerElement(c.dtype);
  const probe = hostArray(c.dtype, 0);
  return new (probe.constructor as new (b: SharedArrayBuffer, o: number, n: number) => HostArray)(c.buffer, 0, n);
}

/**
 * PyTorch's TensorDataset: item i is row i of every tensor. The rows are
 * copied once into SharedArrayBuffers, so that a worker thread reads them
 * without a copy; an item is the rows as HostTensors (views, not copies),
 * and the DataLoader's collate makes Tensors of the batch.
 */
export class TensorDataset implements Dataset<HostTensor[]> {
  readonly length: number;
  private readonly columns: Column[];
  private readonly views: HostArray[];

  constructor(...tensors: Tensor[]) {
    if (tensors.length === 0) throw new Error('TensorDataset: needs at least one tensor');
    for (const [i, t] of tensors.entries()) {
      if (t.ndim === 0) throw new Error(`TensorDataset: tensor ${i} is a scalar; every tensor needs a first (item) dimension`);
      if (t.shape[0] !== tensors[0].shape[0]) {
        throw new Error(`TensorDataset: size mismatch between tensors: tensor 0 is ${fmt(tensors[0].shape)}, tensor ${i} is ${fmt(t.shape)}`);
      }
    }
    this.length = tensors[0].shape[0];
    this.columns = tensors.map((t) => {
      const buffer = new SharedArrayBuffer(t.numel * bytesPerElement(t.dtype));
      const c: Column = { buffer, dtype: t.dtype, rowShape: t.shape.slice(1) };
      (view(c) as Float32Array).set(t.toArray() as Float32Array);
      return c;
    });
    this.views = this.columns.map(view);
  }

  /** Rebuilds a TensorDataset from its columns (the worker's side of workerSource). */
  static fromColumns(spec: { length: number; columns: readonly Column[] }): TensorDataset {
    const ds = Object.create(TensorDataset.prototype) as { length: number; columns: readonly Column[]; views: HostArray[] };
    ds.columns = spec.columns;
    ds.views = spec.columns.map(view);
    ds.length = spec.length;
    return ds as unknown as TensorDataset;
  }

  getItem(index: number): HostTensor[] {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) {
      throw new RangeError(`TensorDataset: index ${index} out of range for ${this.length} items`);
    }
    return this.columns.map((c, k) => {
      const n = numelOf(c.rowShape);
      return { data: this.views[k].subarray(index * n, (index + 1) * n), shape: c.rowShape, dtype: c.dtype };
    });
  }

  workerSource(): WorkerSource {
    return { module: import.meta.url, factory: 'tensorDatasetFromColumns', spec: { length: this.length, columns: this.columns } };
  }
}

export function tensorDatasetFromColumns(spec: { length: number; columns: readonly Column[] }): TensorDataset {
  return TensorDataset.fromColumns(spec);
}
