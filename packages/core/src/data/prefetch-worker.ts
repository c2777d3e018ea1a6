/**
 * The DataLoader's worker thread: rebuilds the dataset from its
 * WorkerSource, then, per epoch, reads and stacks up to PREFETCH_DEPTH
 * batches ahead of the main thread, taking back each batch's buffers (a
 * credit) once the main thread has copied them into Tensors.
 */
import { workerData, type MessagePort } from 'node:worker_threads';
import type { Dataset, WorkerSource } from './dataset.js';
import { BufferPool, collateHost, hostBuffers, type HostTensor } from './sample.js';

const { port, signal, source } = workerData as { port: MessagePort; signal: Int32Array; source: WorkerSource };

function post(msg: unknown, transfer: ArrayBuffer[] = []): void {
  port.postMessage(msg, transfer);
  Atomics.add(signal, 0, 1);
  Atomics.notify(signal, 0);
}

// the main thread, waiting for a batch, cannot see the 'exit' event: it reads this flag
process.on('exit', () => {
  Atomics.store(signal, 1, 1);
  Atomics.notify(signal, 0);
});

const messageOf = (e: unknown) => (e instanceof Error ? e.message : String(e));

let dataset: Dataset | null = null;
let failed: string | null = null;
const ready = import(source.module).then((mod: Record<string, unknown>) => {
  const factory = mod[source.factory];
  if (typeof factory !== 'function') throw new Error(`${source.module} exports no function '${source.factory}'`);
  dataset = factory(source.spec) as Dataset;
}).catch((e: unknown) => {
  failed = `could not rebuild the dataset from ${source.module} (${source.factory}): ${messageOf(e)}`;
});

const pool = new BufferPool();
let epoch = -1;
let indices: Int32Array = new Int32Array(0);
let batchSize = 1;
let count = 0;
let next = 0;
let credits = 0;

function pump(): void {
  if (failed) {
    post({ type: 'error', epoch, message: failed });
    epoch = -1;
    return;
  }
  while (epoch >= 0 && credits > 0 && next < count) {
    const b = next++;
    credits--;
    try {
      const items = Array.from(indices.subarray(b * batchSize, Math.min(indices.length, (b + 1) * batchSize)),
        (i) => dataset!.getItem(i));
      const batch = collateHost(items, pool.alloc);
      post({ type: 'batch', epoch, index: b, batch }, hostBuffers(batch).map((a) => a.buffer as ArrayBuffer));
    } catch (e) {
      post({ type: 'error', epoch, message: `batch ${b}: ${messageOf(e)}` });
      epoch = -1;
    }
  }
}

port.on('message', (msg: { type: string; epoch: number; indices?: Int32Array; batchSize?: number; count?: number;
  depth?: number; buffers?: HostTensor['data'][] }) => {
  if (msg.type === 'epoch') {
    epoch = msg.epoch;
    indices = msg.indices!;
    batchSize = msg.batchSize!;
    count = msg.count!;
    next = 0;
    credits = msg.depth!;
  } else if (msg.type === 'return') {
    for (const a of msg.buffers!) pool.giveArray(a);
    if (msg.epoch === epoch) credits++;
  } else if (msg.type === 'stop' && msg.epoch === epoch) {
    epoch = -1;
  }
  void ready.then(pump);
});
