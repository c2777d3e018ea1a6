/**
 * Shared-memory layout of one `threads` group: a control block of Int32
 * words followed by the data region, in a single SharedArrayBuffer.
 *
 * Control block (64-byte lines so that each rank writes only its own line):
 *   line 0   ARRIVE, WAKE, SLEEPERS, ABORT, ABORT_RANK, ABORT_INFO  (shared, hot)
 *   line 1   MAGIC, SIZE, CHUNK_BYTES, NONCE                        (read-only after creation)
 *   line 2+r rank r: PHASE, EXIT, descriptor[parity 0], descriptor[parity 1]
 * Data region: two parity areas (phases alternate between them, so a rank
 * may refill one while slower peers still read the other), each holding one
 * CHUNK_BYTES slot per rank plus one result slot. Only the large
 * all-reduce (./pipeline.ts) writes result slots, and its last chunk's
 * result is read one phase after the collective ends: other collectives
 * must keep to the rank slots.
 *
 * The buffer is a shared WebAssembly.Memory's when the runtime allows, so
 * that the SIMD kernels of ./simd.ts can reduce in place; NONCE identifies
 * the memory when it reaches a thread separately from its buffer.
 */
import { sharedWasmMemory, type WasmMemory } from './simd.js';

export const LINE = 16; // Int32 words per 64-byte line

// line 0
export const ARRIVE = 0; // arrivals, summed over all phases (wraps at 2^32)
export const WAKE = 1; // bumped on every event a sleeper must see (phase completed, abort, exit)
export const SLEEPERS = 2; // ranks inside Atomics.wait; arrivals skip notify when 0
export const ABORT = 3; // AbortReason; 0 while healthy
export const ABORT_RANK = 4; // global rank that caused the abort (-1 unknown)
export const ABORT_INFO = 5; // exit code, or the rank's phase for timeouts

// line 1
export const MAGIC = LINE + 0;
export const SIZE = LINE + 1;
export const CHUNK_BYTES = LINE + 2;
export const NONCE = LINE + 3; // random, non-zero: tells this block's wasm Memory from others
export const MAGIC_VALUE = 0x62616775; // 'bagu'

// per-rank line, at rankLine(r)
export const PHASE = 0; // phases this rank has arrived at
export const EXIT = 1; // 0 alive, else exit code + 1 (set by the coordinator)
export const DESC0 = 2; // descriptor of a collective starting on an even phase
export const DESC1 = 8; // ... on an odd phase
export const DESC_OP = 0;
export const DESC_DTYPE = 1;
export const DESC_COUNT = 2;
export const DESC_ROOT = 3;
export const DESC_REDOP = 4;

export const enum AbortReason {
  NONE = 0,
  RANK_FAILED = 1, // a member thread threw or exited non-zero
  TIMEOUT = 2, // a member gave up waiting; the group's phase counters no longer agree
  EXITED = 3, // a member exited while others waited for it
  STOPPED = 4, // the launcher is stopping the job (signal)
}

export const enum OpCode {
  ALL_REDUCE = 1,
  ALL_GATHER = 2,
  BROADCAST = 3,
  BARRIER = 4,
  INVALID = 9, // the rank rejected its own arguments; peers fail too instead of waiting
}

export const OP_NAMES: Readonly<Record<number, string>> = {
  1: 'allReduce',
  2: 'allGather',
  3: 'broadcast',
  4: 'barrier',
  9: 'invalid call',
};

export const REDOP_CODES = { sum: 1, avg: 2, max: 3, min: 4 } as const;
export const REDOP_NAMES: Readonly<Record<number, string>> = { 1: 'sum', 2: 'avg', 3: 'max', 4: 'min' };
export const DTYPE_NAMES: Readonly<Record<number, string>> = { 1: 'float32', 2: 'float64', 3: 'int32', 4: 'int64', 5: 'uint8' };

/** Default bytes per rank slot; 16 MiB buffers move through it in chunks. */
export const DEFAULT_CHUNK_BYTES = 512 << 10;

export function rankLine(r: number): number {
  return (2 + r) * LINE;
}

export function ctrlBytes(size: number): number {
  return (2 + size) * LINE * 4;
}

export function areaBytes(size: number, chunkBytes: number): number {
  return (size + 1) * chunkBytes;
}

export function groupBytes(size: number, chunkBytes: number): number {
  return ctrlBytes(size) + 2 * areaBytes(size, chunkBytes);
}

/** A group's memory: the buffer, and the wasm Memory it belongs to (null where wasm is unavailable). */
export interface GroupMemory {
  sab: SharedArrayBuffer;
  memory: WasmMemory | null;
}

/** Allocates and initialises the shared memory of a group of `size` ranks. */
export function allocGroupMemory(size: number, chunkBytes = DEFAULT_CHUNK_BYTES): GroupMemory {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`group size must be a positive integer, got ${size}`);
  // Multiples of 64 keep every slot aligned for 8-byte elements and on its own cache lines.
  const chunk = Math.max(64, Math.ceil(chunkBytes / 64) * 64);
  const bytes = groupBytes(size, chunk);
  const memory = size > 1 ? sharedWasmMemory(bytes) : null; // a group of one never reduces
  const sab = memory ? (memory.buffer as SharedArrayBuffer) : new SharedArrayBuffer(bytes);
  const ctrl = new Int32Array(sab, 0, ctrlBytes(size) / 4);
  ctrl[MAGIC] = MAGIC_VALUE;
  ctrl[SIZE] = size;
  ctrl[CHUNK_BYTES] = chunk;
  ctrl[NONCE] = ((Math.random() * 0x7fffffff) | 0) + 1;
  ctrl[ABORT_RANK] = -1;
  return { sab, memory };
}

export function createGroupMemory(size: number, chunkBytes = DEFAULT_CHUNK_BYTES): SharedArrayBuffer {
  return allocGroupMemory(size, chunkBytes).sab;
}

/** `memory` if it is the wasm Memory of `sab` (same size and nonce), else null. */
export function memoryOf(sab: SharedArrayBuffer, memory: WasmMemory | null | undefined): WasmMemory | null {
  if (!memory || !(memory.buffer instanceof SharedArrayBuffer) || memory.buffer.byteLength !== sab.byteLength) return null;
  const a = new Int32Array(sab, 0, 2 * LINE);
  const b = new Int32Array(memory.buffer, 0, 2 * LINE);
  return a[MAGIC] === MAGIC_VALUE && a[NONCE] !== 0 && b[NONCE] === a[NONCE] ? memory : null;
}

/**
 * Records that a member exited (called by the coordinator, which watches the
 * threads). A non-zero code aborts the group; a clean exit only fails peers
 * that still wait for that rank.
 */
export function markExited(sab: SharedArrayBuffer, groupRank: number, globalRank: number, code: number): void {
  const ctrl = new Int32Array(sab, 0, ctrlBytes(new Int32Array(sab, 0, 2 * LINE)[SIZE]!) / 4);
  Atomics.store(ctrl, rankLine(groupRank) + EXIT, Math.max(0, code | 0) + 1);
  if (code !== 0) abortGroup(ctrl, AbortReason.RANK_FAILED, globalRank, code);
  else wake(ctrl);
}

/** Sets the abort reason (the first one wins) and wakes every sleeper. */
export function abortGroup(ctrl: Int32Array, reason: AbortReason, rank: number, info: number): void {
  if (Atomics.load(ctrl, ABORT) === AbortReason.NONE) {
    Atomics.store(ctrl, ABORT_RANK, rank);
    Atomics.store(ctrl, ABORT_INFO, info);
    Atomics.compareExchange(ctrl, ABORT, AbortReason.NONE, reason);
  }
  wake(ctrl);
}

export function wake(ctrl: Int32Array): void {
  Atomics.add(ctrl, WAKE, 1);
  Atomics.notify(ctrl, WAKE);
}
