/**
 * Ranks that disagree: each rank prints `ERROR <message>` for what it caught,
 * or `NOERROR`; the test checks that every rank failed clearly (no hang).
 * argv[2]: 'channels' | 'sequence' | 'count1' | 'extra-layer' | 'non-member'
 */
import { nn, randn } from '@bagua/core';
import * as bagua from '../../src/index.js';

await bagua.initProcessGroup({ timeoutMs: 5000 });
const rank = bagua.getRank();
const mode = process.argv[2];
try {
  if (mode === 'channels') {
    const c = 4 + rank; // rank 0 has 4 channels, rank 1 has 5
    new bagua.SyncBatchNorm(c).forward(randn([3, c, 2]));
  } else if (mode === 'sequence') {
    // Both ranks build layers a and b, in opposite orders, then run a.
    const [a] = rank === 0
      ? [new bagua.SyncBatchNorm(3), new bagua.SyncBatchNorm(3)]
      : [new bagua.SyncBatchNorm(3), new bagua.SyncBatchNorm(3)].reverse();
    a.forward(randn([4, 3]));
  } else if (mode === 'count1') {
    new bagua.SyncBatchNorm(2).forward(randn([rank === 0 ? 1 : 0, 2]));
  } else if (mode === 'extra-layer') {
    // Rank 0 alone makes another layer first: converted layers are named by their path, so no false alarm.
    if (rank === 0) new bagua.SyncBatchNorm(3);
    const model = bagua.SyncBatchNorm.convertSyncBatchnorm(new nn.Sequential(new nn.Linear(4, 3), new nn.BatchNorm1d(3)));
    model.forward(randn([5, 4])).sum().backward();
  } else if (mode === 'non-member') {
    const group = await bagua.newGroup([0]); // rank 1 gets null
    new bagua.SyncBatchNorm(3, { processGroup: group }).forward(randn([4, 3]));
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  console.log('NOERROR');
} catch (e) {
  console.log(`ERROR ${(e as Error).message.replace(/\n/g, ' ')}`);
}
// A failed collective may leave the group unusable: leave without the closing barrier.
process.exit(0);
