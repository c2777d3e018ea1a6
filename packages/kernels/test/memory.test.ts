import test from 'ava';
import koffi from 'koffi';
import {
  empty, endStep, memoryStats, nn, ones, optim, randn, scope, tensor, type Tensor,
} from '@bagua/core';
import '@bagua/kernels';

// Each ava worker thread has its own copy of core's state (steps, counters); the tests
// of this file run serially because steps and counters are per thread.
const serial = test.serial;

const values = (t: Tensor) => Array.from(t.toArray() as Float32Array);

/** The loop a user writes: forward, loss, zeroGrad, backward, step; no awaits, no dispose calls. */
function cnnLoop(steps: number, onStep: (i: number) => void): void {
  const net = new nn.Sequential(new nn.Conv2d(3, 8, 3, { padding: 1 }), new nn.BatchNorm2d(8), new nn.ReLU(),
    new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(8, 10));
  const opt = new optim.SGD(net.parameters(), { lr: 0.01, momentum: 0.9 });
  const lossFn = new nn.CrossEntropyLoss();
  const target = tensor(Int32Array.from({ length: 4 }, (_, i) => i % 10), { shape: [4], dtype: 'int32' });
  for (let i = 1; i <= steps; i++) {
    const loss = lossFn.forward(net.forward(randn([4, 3, 8, 8])), target);
    opt.zeroGrad();
    loss.backward();
    opt.step();
    onStep(i);
  }
}

serial('the plain training loop reaches a steady state: no growth in bytes, allocations per step or fresh blocks', (t) => {
  const seen: { allocated: number; reserved: number; allocs: number; system: number }[] = [];
  cnnLoop(40, (i) => {
    if (i % 10 === 0) {
      const s = memoryStats('cpu');
      seen.push({ allocated: s.allocated, reserved: s.reserved, allocs: s.numAllocs, system: s.numSystemAllocs });
    }
  });
  const [, a, b, c] = seen;
  t.is(c.allocated, b.allocated, 'live bytes are the same after step 30 and step 40');
  t.is(b.allocated, a.allocated, 'and after step 20');
  t.is(c.allocs - b.allocs, b.allocs - a.allocs, 'the same number of allocations every 10 steps');
  t.true(c.allocs - b.allocs > 0);
  t.is(c.system, b.system, 'no fresh blocks from the OS after warm-up');
  t.is(c.reserved, b.reserved, 'the reserve does not grow');
});

serial('a tensor lives until the end of the step after the last one that used it, then errors clearly', (t) => {
  const w = new nn.Linear(3, 1);
  endStep(); // leave the set-up step (whose tensors are kept)
  const x = randn([2, 3]);
  const loss = w.forward(x).sum();
  loss.backward();
  endStep();
  t.notThrows(() => loss.item(), 'readable after the step that made it ended (logging after step())');
  const kept = randn([2]).keep();
  endStep(); // x was not used in this step: released; loss was (item())
  t.true(x.isReleased);
  t.false(loss.isReleased);
  t.throws(() => x.add(1), { message: /add: tensor of shape \[2,3\] was released at the end of the step after the last one that used it .*keep\(\) a tensor to use it longer/ });
  endStep();
  t.true(loss.isReleased);
  t.throws(() => loss.item(), { message: /item: tensor of shape \[\] was released at the end of the step/ });
  t.false(kept.isReleased, 'keep() takes a tensor out of its step');
  t.false(w.weight.isReleased, 'parameters belong to their module');
});

serial('with several optimizers a step lasts until one steps again: data used once per iteration lives on', (t) => {
  const a = new nn.Linear(3, 1);
  const b = new nn.Linear(3, 1);
  const optA = new optim.SGD(a.parameters(), { lr: 0.1 });
  const optB = new optim.SGD(b.parameters(), { lr: 0.1 });
  endStep();
  const dataA = randn([4, 3]);
  const dataB = randn([4, 3]);
  let once: Tensor | null = null;
  for (let i = 0; i < 6; i++) {
    a.forward(dataA).sum().backward();
    optA.step();
    if (i === 0) once = b.forward(dataB).mul(1);
    b.forward(dataB).sum().backward();
    optB.step();
  }
  t.false(dataA.isReleased);
  t.false(dataB.isReleased);
  t.true(once!.isReleased, 'what no later iteration used was released');
});

serial('tensors made in the set-up (before the first step ends) are kept', (t) => {
  // A fresh worker state cannot be had here; emulate the rule's other half: scope() ends what it made.
  const target = scope(() => tensor([1, 2, 3]).keep());
  endStep();
  endStep();
  endStep();
  t.deepEqual(values(target), [1, 2, 3]);
});

serial('backward frees the graph: a second backward is an error naming the op; retainGraph keeps it', (t) => {
  const x = tensor([1, 2, 3], { requiresGrad: true });
  const y = x.mul(x).sum();
  y.backward({ retainGraph: true });
  t.deepEqual(values(x.grad!), [2, 4, 6]);
  y.backward();
  t.deepEqual(values(x.grad!), [4, 8, 12], 'accumulated: the retained graph ran twice');
  t.throws(() => y.backward(), { message: /backward: the graph through 'sum' was already freed by an earlier backward; pass \{ retainGraph: true \}/ });
  t.deepEqual(values(x.grad!), [4, 8, 12], 'the refused backward changed nothing');
});

serial('a module\'s forward is a scope: what it made and did not return is released once backward has used it', (t) => {
  class Stash extends nn.Module {
    inner: Tensor | null = null;
    readonly lin = this.addModule('lin', new nn.Linear(2, 2));
    forward(x: Tensor): Tensor {
      this.inner = this.lin.forward(x).relu();
      return this.inner.mul(2);
    }
  }
  const m = new Stash();
  const out = m.forward(randn([3, 2]));
  t.true(m.inner!.isReleased, 'not returned: its user reference ended with forward');
  t.false(out.isReleased, 'the returned tensor lives on in the caller\'s scope');
  out.sum().backward(); // the graph still had what it saved
  t.truthy(m.lin.weight.grad);
  t.throws(() => m.inner!.toArray(), { message: /was released when Stash\.forward returned \(it was not returned\)/ });
});

serial('scope() returns tensors inside arrays and objects, and releases the rest', (t) => {
  let inner: Tensor | null = null;
  const { a, list } = scope(() => {
    inner = ones([2]).add(1);
    return { a: inner.mul(2), list: [inner.mul(3)] };
  });
  t.true(inner!.isReleased);
  t.deepEqual(values(a), [4, 4]);
  t.deepEqual(values(list[0]), [6, 6]);
});

serial('gradients accumulate in place and intermediate gradients are stolen, not copied', (t) => {
  const lin = new nn.Linear(4, 3);
  const x = randn([5, 4]);
  lin.forward(x).sum().backward();
  const g1 = values(lin.weight.grad!);
  const before = memoryStats('cpu').numAllocs;
  lin.forward(x).sum().backward();
  const g2 = values(lin.weight.grad!);
  t.deepEqual(g2.map((v) => Math.fround(v)), g1.map((v) => Math.fround(2 * v)));
  const perPass = memoryStats('cpu').numAllocs - before;
  lin.forward(x).sum().backward();
  t.is(memoryStats('cpu').numAllocs - before, 2 * perPass, 'each further pass allocates the same');
});

serial('a forward whose graph is never used frees what it saved when its output is released', (t) => {
  const lin = new nn.Linear(64, 64);
  const x = randn([32, 64]);
  endStep();
  const step = () => { lin.forward(x).relu().sum(); endStep(); };
  // (x is used every step, so it lives on)
  for (let i = 0; i < 3; i++) step();
  const a = memoryStats('cpu').allocated;
  for (let i = 0; i < 10; i++) step();
  t.is(memoryStats('cpu').allocated, a);
});

serial('a request larger than the machine fails before any allocation, naming its size', (t) => {
  const before = memoryStats('cpu');
  t.throws(() => empty([1024, 1024, 1024, 64]), { message: /alloc: 68719476736 float32 elements \(256\.0 GiB\) do not fit this machine's memory/ });
  t.throws(() => randn([1024, 1024, 1024, 64]), { message: /do not fit this machine's memory/ });
  t.is(memoryStats('cpu').numSystemAllocs, before.numSystemAllocs);
});

serial('released storages are reused: the same block serves the next request of its size class', (t) => {
  const a = empty([1000]);
  const sys = memoryStats('cpu').numSystemAllocs;
  a.dispose();
  const b = empty([990]);
  t.is(memoryStats('cpu').numSystemAllocs, sys, 'no fresh block for a request of the same class');
  b.dispose();
});

serial('a gradient replaced by assignment stays readable through the step; zeroGrad() releases at once', (t) => {
  const lin = new nn.Linear(3, 2);
  const opt = new optim.SGD(lin.parameters(), { lr: 0.1 });
  endStep();
  const x = randn([4, 3], { requiresGrad: true });
  lin.forward(x).sum().backward();
  const g = x.grad!;
  x.grad = null; // you may still hold it, as in PyTorch
  t.notThrows(() => g.toArray());
  endStep();
  t.notThrows(() => g.toArray(), 'used in the step that ended: it lives one more step');
  endStep(); // used again in that one: one more
  t.false(g.isReleased);
  endStep(); // not used in the step now ending: released
  t.true(g.isReleased);
  const w = lin.weight.grad!;
  opt.zeroGrad();
  t.throws(() => w.toArray(), { message: /was released by zeroGrad\(\)/ });
});

serial('host storages start on a 64-byte boundary, fresh and reused', (t) => {
  const starts = (ts: ReturnType<typeof empty>[]) =>
    ts.map((x) => Number(koffi.address(x.storage('test').handle as Float32Array) % 64n));
  const sizes = [[1], [3], [17], [1000], [4097], [16, 3, 32, 32]];
  const fresh = sizes.map((s) => empty(s));
  t.deepEqual(starts(fresh), sizes.map(() => 0));
  for (const x of fresh) x.dispose();
  const reused = sizes.map((s) => empty(s));
  t.deepEqual(starts(reused), sizes.map(() => 0));
  for (const x of reused) x.dispose();
});
