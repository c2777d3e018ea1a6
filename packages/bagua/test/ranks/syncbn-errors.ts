/**
 * Ranks that disagree: each rank prints `ERROR <message>` for what it caught,
 * or `NOERROR`; the test checks that every rank failed clearly (no hang).
 * argv[2]: 'channels' | 'channels-later' | 'sequence' | 'sequence-later' | 'count1' | 'extra-layer' | 'non-member'
 * ('-later': the ranks disagree only after a step they agreed on; with the 'allReduce'
 * exchange that is a step after the shift's broadcast). Exchange: BAGUA_TEST_STATS_EXCHANGE.
 */
import { nn, randn } from '@bagua/core';
import * as bagua from '../../src/index.js';
import { exchangeUnderTest } from './report.js';

await bagua.initProcessGroup({ timeoutMs: 5000 });
const rank = bagua.getRank();
const mode = process.argv[2];
const statsExchange = exchangeUnderTest();
try {
  if (mode === 'channels') {
    const c = 4 + rank; // rank 0 has 4 channels, rank 1 has 5
    new bagua.SyncBatchNorm(c, { statsExchange }).forward(randn([3, c, 2]));
  } else if (mode === 'channels-later') {
    // One agreed step in a 4-channel layer, then rank 1 switches to a 5-channel one.
    const four = new bagua.SyncBatchNorm(4, { statsExchange, name: 'four' });
    four.forward(randn([3, 4, 2]));
    const five = new bagua.SyncBatchNorm(5, { statsExchange, name: 'five' });
    five.forward(randn([3, 5, 2])); // both ranks: its shift is broadcast here
    (rank === 0 ? four : five).forward(randn([3, rank === 0 ? 4 : 5, 2]));
  } else if (mode === 'sequence') {
    // Both ranks build layers a and b, in opposite orders, then run a.
    const [a] = rank === 0
      ? [new bagua.SyncBatchNorm(3, { statsExchange }), new bagua.SyncBatchNorm(3, { statsExchange })]
      : [new bagua.SyncBatchNorm(3, { statsExchange }), new bagua.SyncBatchNorm(3, { statsExchange })].reverse();
    a.forward(randn([4, 3]));
  } else if (mode === 'sequence-later') {
    // Both ranks run layers a and b once in the same order, then rank 1 skips a.
    const a = new bagua.SyncBatchNorm(3, { statsExchange, name: 'a' });
    const b = new bagua.SyncBatchNorm(3, { statsExchange, name: 'b' });
    a.forward(randn([4, 3]));
    b.forward(randn([4, 3]));
    (rank === 0 ? a : b).forward(randn([4, 3]));
  } else if (mode === 'count1') {
    new bagua.SyncBatchNorm(2, { statsExchange }).forward(randn([rank === 0 ? 1 : 0, 2]));
  } else if (mode === 'extra-layer') {
    // Rank 0 alone makes another layer first: converted layers are named by their path, so no false alarm.
    if (rank === 0) new bagua.SyncBatchNorm(3);
    const model = bagua.SyncBatchNorm.convertSyncBatchnorm(new nn.Sequential(new nn.Linear(4, 3), new nn.BatchNorm1d(3)), undefined,
      { statsExchange });
    model.forward(randn([5, 4])).sum().backward();
  } else if (mode === 'non-member') {
    const group = await bagua.newGroup([0]); // rank 1 gets null
    new bagua.SyncBatchNorm(3, { processGroup: group, statsExchange }).forward(randn([4, 3]));
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  console.log('NOERROR');
} catch (e) {
  console.log(`ERROR ${(e as Error).message.replace(/\n/g, ' ')}`);
}
// A failed collective may leave the group unusable: leave without the closing barrier.
process.exit(0);
