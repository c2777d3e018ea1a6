/**
 * Entry of the worker thread that hosts a StoreServer (see ./host.ts). Its
 * own event loop keeps serving while the thread that started it is blocked.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { StoreServer, type StoreServerOptions } from './server.js';

const port = parentPort!;
const opts = workerData as StoreServerOptions;
const server = new StoreServer({ ...opts, log: (message) => port.postMessage({ type: 'log', message }) });

server.listen().then(
  (addr) => port.postMessage({ type: 'listening', ...addr }),
  (e: Error) => {
    port.postMessage({ type: 'error', message: e.message, code: (e as NodeJS.ErrnoException).code });
    port.close();
  },
);

port.on('message', (m: { type: string }) => {
  if (m.type === 'close') {
    void server.close().then(() => port.close());
  }
});
