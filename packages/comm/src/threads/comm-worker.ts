/**
 * The communication thread of one rank of a threads group (see ./async.ts):
 * runs the rank's started all-reduces, one at a time in start order, over
 * the group's shared memory, beside the communication threads of the other
 * ranks. Nothing thrown here escapes: a failure is posted, then DONE is
 * stored, so the waiting thread always learns the outcome.
 */
import { workerData } from 'node:worker_threads';
import { CollectiveError } from '../process-group.js';
import { CommState, DONE, STARTED, STATE, viewOf, type CommFailure, type CommJob, type CommThreadData } from './async.js';
import { ThreadsProcessGroup } from './group.js';

const d = workerData as CommThreadData;
const ctl = new Int32Array(d.control);
const port = d.port;

/** The text a CollectiveError was built from: its message without the group prefix and the missing-ranks suffix. */
function detailOf(e: CollectiveError): string {
  let m = e.message;
  const head = `${e.op} on group '${e.group}' failed at rank ${e.rank}: `;
  if (m.startsWith(head)) m = m.slice(head.length);
  const tail = e.missingRanks.length ? ` (ranks not arrived: ${e.missingRanks.join(', ')})` : '';
  if (tail && m.endsWith(tail)) m = m.slice(0, -tail.length);
  return m;
}

function failure(seq: number, e: unknown): CommFailure {
  if (e instanceof CollectiveError) return { seq, op: e.op, detail: detailOf(e), missing: [...e.missingRanks] };
  return { seq, op: 'allReduce', detail: `the communication thread failed: ${(e as Error)?.stack ?? String(e)}`, missing: [] };
}

let group: ThreadsProcessGroup | null = null;
try {
  group = new ThreadsProcessGroup({ sab: d.sab, memory: d.memory, ranks: d.ranks, rank: d.rank, name: d.name, key: d.key, spin: d.spin });
} catch (e) {
  port.postMessage(failure(0, e));
  Atomics.store(ctl, STATE, CommState.FAILED);
  Atomics.notify(ctl, DONE);
}

if (group) {
  const g = group;
  port.on('message', (job: CommJob) => {
    Atomics.store(ctl, STARTED, job.seq);
    try {
      g.timeoutMs = job.timeoutMs;
      g.takeUpPhase();
      g.allReduce(viewOf(job.dtype, job.sab, job.byteOffset, job.length), job.op);
    } catch (e) {
      port.postMessage(failure(job.seq, e));
    }
    Atomics.store(ctl, DONE, job.seq);
    Atomics.notify(ctl, DONE);
  });
  Atomics.store(ctl, STATE, CommState.READY);
}
