/**
 * The process-group base shared by every backend: the device query, the
 * rank-list checks of newGroup, and the argument checks, shown on a threads
 * world of one rank (no launcher needed).
 */
import test from 'ava';
import { createSingleRankWorld } from '../src/threads/bootstrap.js';
import { CollectiveError, parseCommDevice } from '../src/process-group.js';

test('supports(device): host-only groups move cpu memory only; devices by name or { type, index }', (t) => {
  const g = createSingleRankWorld(1000);
  t.true(g.supports('cpu'));
  t.true(g.supports({ type: 'cpu', index: 0 }));
  t.false(g.supports('cuda'));
  t.false(g.supports({ type: 'cuda', index: 1 }));
  t.throws(() => g.supports('tpu:0'), { instanceOf: TypeError, message: /unknown device/ });
  t.deepEqual(parseCommDevice('cuda'), { type: 'cuda', index: 0 });
  t.deepEqual(parseCommDevice('cuda:3'), { type: 'cuda', index: 3 });
  g.destroy();
});

test('newGroup checks the rank list the same way on every backend; arguments fail as CollectiveErrors on threads', async (t) => {
  const g = createSingleRankWorld(1000);
  await t.throwsAsync(g.newGroup([]), { instanceOf: RangeError, message: 'newGroup: empty rank list' });
  await t.throwsAsync(g.newGroup([1]), { instanceOf: RangeError, message: "newGroup: rank 1 is not a member of group 'world' (0)" });
  await t.throwsAsync(g.newGroup([0, 0]), { instanceOf: RangeError, message: 'newGroup: rank 0 is listed twice' });
  const sub = await g.newGroup([0]);
  t.is(sub!.size, 1);
  t.throws(() => g.broadcast(new Float32Array(2), 1), {
    instanceOf: CollectiveError,
    message: /invalid arguments: root 1 is not a rank of group 'world' \(size 1\)/,
  });
  t.throws(() => g.allGather(new Float32Array(3), new Float32Array(2)), { message: /invalid arguments: output has 3 elements, expected 1 x 2/ });
  t.throws(() => g.allReduce(new Float32Array(1), 'prod' as never), { message: /invalid arguments: unknown reduce op 'prod'/ });
  sub!.destroy();
  g.destroy();
  t.throws(() => g.barrier(), { instanceOf: CollectiveError, message: /the process group is destroyed/ });
});
