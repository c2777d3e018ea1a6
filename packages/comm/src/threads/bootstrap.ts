/** Builds a rank's world group from what runThreads() put in its workerData. */
import { isMainThread, workerData, type MessagePort } from 'node:worker_threads';
import { createGroupMemory } from './layout.js';
import type { WasmMemory } from './simd.js';
import { takeWorldMemory, ThreadsLink } from './link.js';
import { ThreadsProcessGroup } from './group.js';

/** What runThreads() passes to each rank, under workerData.bagua. */
export interface ThreadsWorkerInfo {
  backend: 'threads';
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  world: SharedArrayBuffer;
  port: MessagePort;
  timeoutMs?: number;
}

/** This thread's rank info when it was started by runThreads()/bagua-launch, else null. */
export function threadsWorkerInfo(): ThreadsWorkerInfo | null {
  if (isMainThread) return null;
  const info = (workerData as { bagua?: ThreadsWorkerInfo } | null | undefined)?.bagua;
  return info && info.backend === 'threads' && info.world instanceof SharedArrayBuffer ? info : null;
}

let link: ThreadsLink | null = null; // one per thread: the port accepts one listener set
let worldMemory: WasmMemory | null = null; // the world's wasm Memory, taken off the port with the link
let epoch = 0; // worlds made by this thread; every rank counts the same, so sub-group keys stay unique

export function createThreadsWorld(info: ThreadsWorkerInfo, timeoutMs: number): ThreadsProcessGroup {
  if (!link) {
    worldMemory = takeWorldMemory(info.port); // before the link's listener starts the port
    link = new ThreadsLink(info.port);
  }
  return new ThreadsProcessGroup({
    sab: info.world,
    memory: worldMemory,
    ranks: Array.from({ length: info.worldSize }, (_, i) => i),
    rank: info.rank,
    name: 'world',
    key: `world.${epoch++}`,
    timeoutMs,
    link,
  });
}

/** A world of one rank (no launcher): every collective is local. */
export function createSingleRankWorld(timeoutMs: number): ThreadsProcessGroup {
  return new ThreadsProcessGroup({ sab: createGroupMemory(1, 64), ranks: [0], rank: 0, name: 'world', key: 'world', timeoutMs });
}
