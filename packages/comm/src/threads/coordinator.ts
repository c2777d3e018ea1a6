/**
 * The parent side of a `threads` job (runThreads / bagua-launch): owns the
 * world group's memory, hands sub-group memory to their members (a
 * SharedArrayBuffer cannot travel through Atomics, so it goes over each
 * rank's MessagePort), and, because it sees every thread exit, marks exited
 * ranks and aborts every group when a rank fails, so no peer hangs.
 *
 * A group's wasm Memory (layout.ts) travels with its buffer: for sub-groups
 * in the reply, for the world as the first message on each rank's port
 * (workerData, built by the launcher, carries the buffer alone), which the
 * rank takes synchronously when it builds its world (bootstrap.ts).
 */
import type { MessagePort } from 'node:worker_threads';
import {
  abortGroup,
  AbortReason,
  allocGroupMemory,
  CHUNK_BYTES,
  ctrlBytes,
  DEFAULT_CHUNK_BYTES,
  LINE,
  markExited,
  SIZE,
} from './layout.js';
import type { LinkMessage, WorldMemoryMessage } from './link.js';
import type { WasmMemory } from './simd.js';

interface GroupRecord {
  sab: SharedArrayBuffer;
  memory: WasmMemory | null;
  ranks: number[];
  gid: number;
  joined: Set<number>;
  released: Set<number>;
}

export class ThreadsCoordinator {
  readonly world: SharedArrayBuffer;
  readonly chunkBytes: number;
  private readonly worldMemory: WasmMemory | null;
  private readonly groups = new Map<string, GroupRecord>();
  private readonly exited = new Map<number, number>(); // global rank -> exit code
  private readonly ports = new Map<number, MessagePort>();
  private nextGid = 1;
  private aborted: { reason: AbortReason; rank: number; info: number } | null = null;

  constructor(
    readonly worldSize: number,
    chunkBytes: number = DEFAULT_CHUNK_BYTES,
  ) {
    const mem = allocGroupMemory(worldSize, chunkBytes);
    this.world = mem.sab;
    this.worldMemory = mem.memory;
    this.chunkBytes = new Int32Array(this.world, 0, 2 * LINE)[CHUNK_BYTES]!; // after rounding
    const all = Array.from({ length: worldSize }, (_, i) => i);
    this.groups.set('world', { sab: this.world, memory: mem.memory, ranks: all, gid: 0, joined: new Set(all), released: new Set() });
  }

  /** Serves requests from the thread of global rank `rank`. */
  attach(rank: number, port: MessagePort): void {
    this.ports.set(rank, port);
    // Queued before the thread runs: it finds the message when it builds its world.
    if (this.worldMemory) port.postMessage({ t: 'worldMemory', memory: this.worldMemory } satisfies WorldMemoryMessage);
    port.on('message', (m: LinkMessage) => this.onMessage(rank, port, m));
    port.unref(); // the workers, not this port, keep the job alive
  }

  /** Records a thread's exit: peers waiting for it fail; a non-zero code aborts every group. */
  rankExited(rank: number, code: number): void {
    if (this.exited.has(rank)) return;
    this.exited.set(rank, code);
    for (const g of this.groups.values()) {
      const gr = g.ranks.indexOf(rank);
      if (gr >= 0) markExited(g.sab, gr, rank, code);
    }
    if (code !== 0) this.abort(AbortReason.RANK_FAILED, rank, code);
    this.ports.get(rank)?.close();
    this.ports.delete(rank);
  }

  /** Aborts every group (the first reason sticks): waiting ranks throw CollectiveError at once. */
  abort(reason: AbortReason, rank: number, info: number): void {
    if (!this.aborted) this.aborted = { reason, rank, info };
    for (const g of this.groups.values()) abortGroup(this.ctrlOf(g.sab), reason, rank, info);
  }

  private ctrlOf(sab: SharedArrayBuffer): Int32Array {
    return new Int32Array(sab, 0, ctrlBytes(new Int32Array(sab, 0, 2 * LINE)[SIZE]!) / 4);
  }

  private onMessage(rank: number, port: MessagePort, m: LinkMessage): void {
    if (m.t === 'release') {
      const g = this.groups.get(m.key);
      if (!g || m.key === 'world') return; // the world stays: a rank may initialise again
      g.released.add(rank);
      // Forget it once every member has both joined and released it.
      if (g.released.size === g.ranks.length && g.joined.size === g.ranks.length) this.groups.delete(m.key);
      return;
    }
    if (m.t === 'newGroup') {
      let g = this.groups.get(m.key);
      if (!g) {
        g = {
          ...allocGroupMemory(m.ranks.length, m.chunkBytes || this.chunkBytes),
          ranks: [...m.ranks],
          gid: this.nextGid++,
          joined: new Set(),
          released: new Set(),
        };
        this.groups.set(m.key, g);
        // Members that already left can never arrive; a dead job stays dead.
        for (const [r, code] of this.exited) {
          const gr = g.ranks.indexOf(r);
          if (gr >= 0) markExited(g.sab, gr, r, code);
        }
        if (this.aborted) abortGroup(this.ctrlOf(g.sab), this.aborted.reason, this.aborted.rank, this.aborted.info);
      } else if (g.ranks.length !== m.ranks.length || g.ranks.some((r, i) => r !== m.ranks[i])) {
        port.postMessage({
          id: m.id,
          ok: false,
          error:
            `newGroup: rank ${rank} asked for ranks [${m.ranks.join(', ')}] but another member asked for ` +
            `[${g.ranks.join(', ')}] in the same call (every member must pass the same list, in the same order of calls)`,
        });
        return;
      }
      g.joined.add(rank);
      port.postMessage({ id: m.id, ok: true, sab: g.sab, memory: g.memory, gid: g.gid });
    }
  }
}
