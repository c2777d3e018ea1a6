/**
 * The worker side of the channel to the coordinator (./coordinator.ts): asks
 * it for the shared memory of new sub-groups. The port is unreferenced while
 * idle so that it never keeps a finished rank alive.
 */
import { receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type { WasmMemory } from './simd.js';

export interface NewGroupRequest {
  t: 'newGroup';
  key: string;
  ranks: number[];
  rank: number; // the requesting global rank
  chunkBytes: number;
}
export interface ReleaseMessage {
  t: 'release';
  key: string;
  rank: number;
}
export type LinkRequest = NewGroupRequest;
export type LinkMessage = (LinkRequest & { id: number }) | ReleaseMessage;

export interface NewGroupReply {
  sab: SharedArrayBuffer;
  /** The wasm Memory of sab, when it has one. */
  memory: WasmMemory | null;
  gid: number;
}
/** The coordinator's first message on a rank's port: the world's wasm Memory. */
export interface WorldMemoryMessage {
  t: 'worldMemory';
  memory: WasmMemory;
}

/** Takes the WorldMemoryMessage queued on a port no listener has started yet, if any. */
export function takeWorldMemory(port: MessagePort): WasmMemory | null {
  const m = receiveMessageOnPort(port)?.message as Partial<WorldMemoryMessage> | undefined;
  return m?.t === 'worldMemory' && m.memory ? m.memory : null;
}

export class ThreadsLink {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: NewGroupReply) => void; reject: (e: Error) => void }>();

  constructor(private readonly port: MessagePort) {
    port.on('message', (m: { id: number; ok: boolean; error?: string } & Partial<NewGroupReply>) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (this.pending.size === 0) this.port.unref();
      if (m.ok) p.resolve({ sab: m.sab!, memory: m.memory ?? null, gid: m.gid! });
      else p.reject(new Error(m.error));
    });
    port.unref();
  }

  /** Rejects after timeoutMs: the coordinator is this thread's parent, but never hang on it. */
  request(msg: LinkRequest, timeoutMs: number): Promise<NewGroupReply> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (!this.pending.delete(id)) return;
        if (this.pending.size === 0) this.port.unref();
        reject(new Error(`threads: the coordinator did not answer ${msg.t} within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      if (this.pending.size === 0) this.port.ref();
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.port.postMessage({ ...msg, id } satisfies LinkMessage);
    });
  }

  send(msg: ReleaseMessage): void {
    this.port.postMessage(msg satisfies LinkMessage);
  }
}
