/** Starts the store on its own worker thread. */
import { Worker } from 'node:worker_threads';
import type { StoreServerOptions } from './server.js';

export interface StoreHandle {
  readonly host: string;
  readonly port: number;
  /** Stops serving and ends the thread. */
  close(): Promise<void>;
  /** Lets the process exit while the store still runs (its clients then lose it). */
  unref(): void;
}

export interface StartStoreOptions extends Omit<StoreServerOptions, 'log'> {
  /** Receives protocol-violation reports from the store thread (default: console.warn). */
  log?: (message: string) => void;
}

/**
 * Serves a store at host:port on a dedicated worker thread, so that the
 * creating thread may block (in Atomics.wait, a native collective) without
 * starving the other ranks' rendezvous. Rejects when the address cannot be bound.
 */
export function startStore(options: StartStoreOptions = {}): Promise<StoreHandle> {
  const { log = (m: string) => console.warn(m), ...serverOpts } = options;
  const worker = new Worker(new URL('./worker.js', import.meta.url), {
    workerData: serverOpts,
    // The store thread prints nothing itself; keep it off the parent's stdio.
    stdout: false,
    stderr: false,
  });
  return new Promise((resolve, reject) => {
    let settled = false;
    let closing: Promise<void> | null = null;
    const exited = new Promise<void>((r) => worker.once('exit', () => r()));
    worker.on('message', (m: { type: string; message?: string; host?: string; port?: number; code?: string }) => {
      if (m.type === 'log') log(m.message!);
      else if (m.type === 'listening' && !settled) {
        settled = true;
        resolve({
          host: m.host!,
          port: m.port!,
          close: () => {
            if (!closing) {
              worker.postMessage({ type: 'close' });
              // The worker ends itself once the server is closed; bound that wait.
              const force = setTimeout(() => void worker.terminate(), 2000);
              closing = exited.then(() => clearTimeout(force));
            }
            return closing;
          },
          unref: () => worker.unref(),
        });
      } else if (m.type === 'error' && !settled) {
        settled = true;
        const e = new Error(`store: cannot listen on ${serverOpts.host ?? '127.0.0.1'}:${serverOpts.port ?? 0}: ${m.message}`);
        (e as NodeJS.ErrnoException).code = m.code;
        reject(e);
      }
    });
    worker.once('error', (e) => {
      if (!settled) {
        settled = true;
        reject(e);
      } else log(`store: thread failed: ${e.message}`);
    });
    worker.once('exit', (code) => {
      if (!settled) {
        settled = true;
        reject(new Error(`store: thread exited (code ${code}) before listening`));
      }
    });
  });
}
