import { getBackend, type Backend, type Handle } from './backend.js';
import { Device, type DeviceName } from './device.js';
import { bytesPerElement, type DType } from './dtype.js';

/** Counters of one device, in the manner of torch.cuda.memory_stats (bytes and counts). */
export interface MemoryStats {
  /** Bytes of live storages. */
  allocated: number;
  /** The most `allocated` has been since the start or resetPeakMemoryStats. */
  peakAllocated: number;
  /** Bytes the device's caching allocator holds: live blocks and cached free ones. */
  reserved: number;
  /** Storages allocated and released. */
  numAllocs: number;
  numFrees: number;
  /** Blocks the caching allocator had to get fresh from the OS or driver (none in a steady state). */
  numSystemAllocs: number;
}

interface Counters {
  allocated: number;
  peakAllocated: number;
  numAllocs: number;
  numFrees: number;
}

const counters = new Map<string, Counters>();

function countersOf(device: Device): Counters {
  const key = String(device);
  let c = counters.get(key);
  if (!c) counters.set(key, (c = { allocated: 0, peakAllocated: 0, numAllocs: 0, numFrees: 0 }));
  return c;
}

/** What the safety net needs to take a storage back; it must not reference the memory itself. */
interface Lost {
  backend: Backend;
  token: unknown;
  counters: Counters;
  nbytes: number;
}

/**
 * Only a net, under the storages of kept tensors (the only ones without a
 * deterministic owner): one dropped without dispose() goes back when the
 * collector finds it. The held value is a token, not the buffer, so it never
 * keeps the memory alive. (Registering every storage would cost a steady loop
 * old-generation garbage: the registry's cells.)
 */
const net = new FinalizationRegistry<Lost | GradSlot>((held) => {
  if (held instanceof GradSlot) {
    held.storage?.release();
    return;
  }
  held.backend.reclaim(held.token);
  held.counters.allocated -= held.nbytes;
  held.counters.numFrees++;
});

/**
 * The net under a kept leaf's gradient, which changes every step: registered
 * once per leaf, it follows the current gradient's storage instead of
 * registering each new one.
 */
export class GradSlot {
  storage: Storage | null = null;

  static for(leaf: object): GradSlot {
    const slot = new GradSlot();
    net.register(leaf, slot);
    return slot;
  }
}

/** One backend allocation, shared by a tensor and its views; freed when the last one lets go. */
export class Storage {
  private refs = 1;
  private guarded = false;
  readonly nbytes: number;
  private readonly counters: Counters;

  constructor(
    readonly backend: Backend,
    readonly handle: Handle,
    readonly dtype: DType,
    readonly numel: number,
    readonly device: Device,
  ) {
    this.nbytes = numel * bytesPerElement(dtype);
    const c = (this.counters = countersOf(device));
    c.allocated += this.nbytes;
    c.numAllocs++;
    if (c.allocated > c.peakAllocated) c.peakAllocated = c.allocated;
  }

  /** Puts the storage under the collector's safety net (kept tensors; idempotent). */
  guard(): void {
    if (this.guarded || this.refs === 0) return;
    this.guarded = true;
    net.register(this, { backend: this.backend, token: this.backend.reclaimToken(this.handle), counters: this.counters,
      nbytes: this.nbytes }, this);
  }

  static alloc(dtype: DType, numel: number, device: Device): Storage {
    const backend = getBackend(device.type);
    return new Storage(backend, backend.alloc(dtype, numel, device.index), dtype, numel, device);
  }

  /** Whether another tensor or view shares this memory (then it must not be written in place). */
  get isShared(): boolean {
    return this.refs > 1;
  }

  retain(): this {
    this.refs++;
    return this;
  }

  /** The last release gives the block back to the device's caching allocator at once. */
  release(): void {
    if (--this.refs !== 0) return;
    if (this.guarded) net.unregister(this);
    this.counters.allocated -= this.nbytes;
    this.counters.numFrees++;
    this.backend.free(this.handle);
  }
}

/** Allocation counters and the caching allocator's reserve of a device ('cpu', 'cuda:0', ...). */
export function memoryStats(device: DeviceName | Device | string = 'cpu'): MemoryStats {
  const d = Device.parse(device);
  const c = countersOf(d);
  const a = getBackend(d.type).allocatorStats(d.index);
  return { allocated: c.allocated, peakAllocated: c.peakAllocated, reserved: a.reserved, numAllocs: c.numAllocs,
    numFrees: c.numFrees, numSystemAllocs: a.systemAllocs };
}

/** Gives the caching allocator's free blocks of a device back to the OS or driver. */
export function emptyCache(device: DeviceName | Device | string = 'cpu'): void {
  const d = Device.parse(device);
  getBackend(d.type).emptyCache(d.index);
}

export function resetPeakMemoryStats(device: DeviceName | Device | string = 'cpu'): void {
  const c = countersOf(Device.parse(device));
  c.peakAllocated = c.allocated;
}
