/**
 * Entry of a thread rank whose script is TypeScript (see typescript.ts): registers
 * tsx's loaders in this thread, then runs the script as if it were the entry.
 */
import { fileURLToPath } from 'node:url';
import { workerData } from 'node:worker_threads';
import { register as registerCjs } from 'tsx/cjs/api';
import { register as registerEsm } from 'tsx/esm/api';

const script = (workerData as { baguaScript?: string } | null)?.baguaScript;
if (typeof script !== 'string') throw new Error('ts-worker: started without workerData.baguaScript (bagua-launch sets it)');
// Both: a .ts file in a package without "type": "module" is CommonJS to tsx.
registerCjs();
registerEsm();
// The script sees itself as the entry, as it would in a process (process.argv[1]).
process.argv[1] = fileURLToPath(script);
await import(script);
