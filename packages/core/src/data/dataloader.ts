/**
 * PyTorch's DataLoader for map-style datasets: batches of `batchSize` indices
 * from a sampler, collated into Tensors. When the dataset can be read from a
 * worker thread (Dataset.workerSource) the batches are read and stacked
 * there, one ahead of the one in use; the main thread waits for one with
 * Atomics.wait and takes it with receiveMessageOnPort, so iteration stays
 * synchronous (a plain `for...of` training loop), makes its Tensors at once
 * (copies), and hands the host buffers back for reuse: memory stays flat.
 */
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { Device, type DeviceLike } from '../device.js';
import type { Generator } from '../random.js';
import type { Dataset, WorkerSource } from './dataset.js';
import { RandomSampler, SequentialSampler, type Sampler } from './sampler.js';
import { BufferPool, collateHost, hostBuffers, toTensors, type Collated, type HostBatch, type Sample } from './sample.js';

export interface DataLoaderOptions<S extends Sample, B> {
  /** items per batch (default 1) */
  batchSize?: number;
  /** a fresh random order each epoch (from `generator`; default: the global generator, seeded by manualSeed) */
  shuffle?: boolean;
  generator?: Generator;
  /** the order of indices (e.g. a DistributedSampler); excludes `shuffle` */
  sampler?: Sampler;
  /** drop the last batch when it is smaller than batchSize */
  dropLast?: boolean;
  /** turns a list of items into a batch (runs on the main thread; the default stacks leaves into Tensors) */
  collate?: (items: S[]) => B;
  /**
   * Read and stack batches on a worker thread (default: whenever the dataset
   * has a workerSource and no custom collate is given). true demands it.
   */
  prefetch?: boolean;
  /** where the default collate puts the Tensors (default cpu) */
  device?: DeviceLike;
}

/** How many batches the worker may have ready or in flight ahead of the main thread. */
const PREFETCH_DEPTH = 2;

type FromWorker =
  | { type: 'batch'; epoch: number; index: number; batch: HostBatch }
  | { type: 'error'; epoch: number; message: string };

interface WorkerHandle {
  worker: Worker;
  port: MessagePort;
  signal: Int32Array;
}

export class DataLoader<S extends Sample = Sample, B = Collated<S>> implements Iterable<B> {
  readonly batchSize: number;
  readonly dropLast: boolean;
  readonly sampler: Sampler;
  private readonly collate: ((items: S[]) => B) | null;
  private readonly device: Device;
  private readonly source: WorkerSource | null;
  private readonly pool = new BufferPool();
  private worker: WorkerHandle | null = null;
  private epochs = 0;

  constructor(readonly dataset: Dataset<S>, opts: DataLoaderOptions<S, B> = {}) {
    this.batchSize = opts.batchSize ?? 1;
    if (!Number.isInteger(this.batchSize) || this.batchSize < 1) {
      throw new Error(`DataLoader: batchSize must be a positive integer, got ${opts.batchSize}`);
    }
    if (opts.sampler && opts.shuffle) throw new Error('DataLoader: sampler option is mutually exclusive with shuffle');
    if (!Number.isInteger(dataset.length) || dataset.length < 0) {
      throw new Error(`DataLoader: the dataset's length must be a non-negative integer, got ${dataset.length}`);
    }
    this.dropLast = opts.dropLast ?? false;
    this.sampler = opts.sampler
      ?? (opts.shuffle ? new RandomSampler(dataset.length, { generator: opts.generator }) : new SequentialSampler(dataset.length));
    this.collate = opts.collate ?? null;
    this.device = Device.parse(opts.device ?? 'cpu');
    const source = dataset.workerSource?.() ?? null;
    if (opts.prefetch === true && (!source || this.collate)) {
      throw new Error(`DataLoader: prefetch needs a dataset with a workerSource and the default collate` +
        ` (${source ? 'a custom collate was given' : `${dataset.constructor.name} has no workerSource`})`);
    }
    this.source = opts.prefetch === false || this.collate ? null : source;
  }

  /** Batches per epoch (never an empty one). */
  get length(): number {
    const n = this.sampler.length;
    return this.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** Whether batches are assembled on a worker thread. */
  get prefetching(): boolean {
    return this.source !== null;
  }

  *[Symbol.iterator](): Iterator<B> {
    const order = this.sampler.indices();
    const count = this.dropLast ? Math.floor(order.length / this.batchSize) : Math.ceil(order.length / this.batchSize);
    if (count === 0) return;
    if (this.source) {
      yield* this.fromWorker(order, count);
      return;
    }
    for (let b = 0; b < count; b++) {
      const items = Array.from(order.subarray(b * this.batchSize, Math.min(order.length, (b + 1) * this.batchSize)),
        (i) => this.dataset.getItem(i));
      if (this.collate) {
        yield this.collate(items);
      } else {
        const host = collateHost(items, this.pool.alloc);
        const batch = toTensors(host, this.device) as B;
        this.pool.giveBatch(host);
        yield batch;
      }
    }
  }

  private startWorker(source: WorkerSource): WorkerHandle {
    const { port1, port2 } = new MessageChannel();
    // [0]: messages posted (bumped after each), [1]: 1 once the worker thread has exited
    const signal = new Int32Array(new SharedArrayBuffer(8));
    const worker = new Worker(new URL('./prefetch-worker.js', import.meta.url), {
      workerData: { port: port2, signal, source }, transferList: [port2],
    });
    worker.unref(); // an idle loader does not keep the process alive
    port1.unref();
    return { worker, port: port1, signal };
  }

  private *fromWorker(order: Int32Array, count: number): IterableIterator<B> {
    this.worker ??= this.startWorker(this.source!);
    const { port, signal } = this.worker;
    const epoch = ++this.epochs;
    port.postMessage({ type: 'epoch', epoch, indices: order, batchSize: this.batchSize, count, depth: PREFETCH_DEPTH });
    let done = 0;
    try {
      while (done < count) {
        if (this.epochs !== epoch) {
          throw new Error('DataLoader: a newer iteration of this loader started, which stopped this one (one worker serves one iteration at a time)');
        }
        const msg = this.receive(port, signal);
        if (msg.type === 'error') throw new Error(`DataLoader worker: ${msg.message}`);
        if (msg.epoch !== epoch) continue; // left over from an epoch the caller stopped early
        if (msg.index !== done) throw new Error(`DataLoader worker: batch ${msg.index} arrived, expected ${done}`);
        const batch = toTensors(msg.batch, this.device) as B;
        const buffers = hostBuffers(msg.batch);
        // the copies are made: the buffers go back to the worker's pool
        port.postMessage({ type: 'return', epoch, buffers }, buffers.map((a) => a.buffer as ArrayBuffer));
        done++;
        yield batch;
      }
    } finally {
      if (done < count) port.postMessage({ type: 'stop', epoch });
    }
  }

  /** The next message from the worker, waiting for it without leaving the synchronous loop. */
  private receive(port: MessagePort, signal: Int32Array): FromWorker {
    for (;;) {
      const seen = Atomics.load(signal, 0);
      const got = receiveMessageOnPort(port);
      if (got) return got.message as FromWorker;
      if (Atomics.load(signal, 1) === 1) {
        this.worker = null;
        throw new Error('DataLoader worker: the worker thread exited (the dataset ended it?) before sending the batch');
      }
      // the worker posts, then bumps the counter and notifies: a post after `seen` was read wakes this
      Atomics.wait(signal, 0, seen, 1000);
    }
  }

  /** Stops the worker thread, if one was started (it is also stopped when the process exits). */
  async close(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    if (w) {
      w.port.close();
      await w.worker.terminate();
    }
  }
}
