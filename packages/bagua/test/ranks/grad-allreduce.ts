/**
 * GradientAllReduce with overlap, under the launcher. Usage: grad-allreduce.js <scenario>
 *   main    overlapped == non-overlapped (bitwise), unused parameters with and
 *           without findUnusedParameters, noSync accumulation == the big batch,
 *           bucket rebuild order, memory flat over many steps
 *   killed  the last rank dies before a backward: the others' step fails with a CollectiveError
 *   dies    the last rank throws in the middle of a backward (from a gradient-ready hook), after
 *           its first buckets started: the others' step fails with a CollectiveError naming it
 *   mismatch  rank 1 caps its buckets differently: the bucket all-reduces differ
 */
import { manualSeed, memoryStats, nn, optim, randn, registerGradReadyHook, tensor, type Tensor } from '@bagua/core';
import { CollectiveError, type ProcessGroup } from '@bagua/comm';
import * as bagua from '../../src/index.js';
import { expectClose, fail, newCheck, report, type Check } from './report.js';

await bagua.initProcessGroup();
const rank = bagua.getRank();
const size = bagua.getWorldSize();
const world = bagua.defaultGroup();
const scenario = process.argv[2] ?? 'main';
const host = (t: Tensor) => (t.toArray() as Float32Array).slice();
const sq = (t: Tensor) => t.mul(t);

/** conv-bn-relu x2, pool, linear: parameters of several sizes, so a small cap makes several buckets. */
function cnn(bn: 'bn' | 'syncbn', out = 10): nn.Module {
  manualSeed(11);
  const m = new nn.Sequential(
    new nn.Conv2d(3, 8, 3, { padding: 1 }), new nn.BatchNorm2d(8), new nn.ReLU(), new nn.MaxPool2d(2),
    new nn.Conv2d(8, 16, 3, { padding: 1 }), new nn.BatchNorm2d(16), new nn.ReLU(),
    new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(16, out),
  );
  return bn === 'syncbn' ? bagua.SyncBatchNorm.convertSyncBatchnorm(m) : m;
}

function train(model: nn.Module, algorithm: bagua.GradientAllReduce, steps: number, group: ProcessGroup = world): Float32Array[][] {
  const opt = new optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9 });
  const wrapped = model.withBagua([opt], algorithm, { processGroup: group });
  const trace: Float32Array[][] = [];
  for (let s = 0; s < steps; s++) {
    manualSeed(100 + 10 * s + rank);
    const x = randn([4, 3, 8, 8]);
    opt.zeroGrad();
    sq(wrapped.forward(x)).mean().backward();
    opt.step();
    trace.push(wrapped.parameters().map(host));
  }
  return trace;
}

class TwoHeads extends nn.Module {
  readonly trunk = this.addModule('trunk', new nn.Linear(3, 4));
  readonly head = this.addModule('head', new nn.Linear(4, 2));
  readonly spare = this.addModule('spare', new nn.Linear(4, 2));
  useSpare = false;
  forward(x: Tensor): Tensor {
    const h = this.trunk.forward(x).relu();
    return this.useSpare ? this.head.forward(h).add(this.spare.forward(h)) : this.head.forward(h);
  }
}

/** Each parameter's gradient after the step is the group's average of the local ones. */
function expectAveraged(check: Check, what: string, params: Tensor[], local: Float32Array[]): void {
  params.forEach((p, i) => {
    const sum = local[i]!.slice();
    world.allReduce(sum, 'sum');
    expectClose(check, `${what} ${i}`, p.grad, sum.map((v) => v / size));
  });
}

function scenarioMain(): void {
  for (const bn of ['bn', 'syncbn'] as const) {
    const check = newCheck(`overlapped buckets equal the non-overlapped path bitwise (${bn})`);
    const cap = 0.002; // ~2 KiB: several buckets
    const on = train(cnn(bn), new bagua.GradientAllReduce({ bucketCapMb: cap, overlap: true }), 4);
    const off = train(cnn(bn), new bagua.GradientAllReduce({ bucketCapMb: cap, overlap: false }), 4);
    on.forEach((params, s) => params.forEach((p, i) => expectClose(check, `step ${s} param ${i}`, p, off[s]![i], { rtol: 0, atol: 0 })));
    report(check);
  }

  {
    const check = newCheck('a parameter unused on some ranks: findUnusedParameters averages it with zeros');
    manualSeed(3);
    const m = new TwoHeads();
    m.useSpare = rank === 0;
    const alg = new bagua.GradientAllReduce({ findUnusedParameters: true, bucketCapMb: 0.0001 });
    const opt = new optim.SGD(m.parameters(), { lr: 0 });
    const w = m.withBagua([opt], alg);
    manualSeed(7 + rank);
    w.forward(randn([5, 3])).sum().backward();
    const local = w.parameters().map((p) => (p.grad ? host(p.grad) : new Float32Array(p.numel)));
    opt.step();
    expectAveraged(check, 'param', w.parameters(), local);
    report(check);
  }

  {
    const check = newCheck('a parameter unused everywhere: without the option the step names it');
    manualSeed(3);
    const m = new TwoHeads();
    const opt = new optim.SGD(m.parameters(), { lr: 0.1 });
    const w = m.withBagua([opt], new bagua.GradientAllReduce({ bucketCapMb: 0.0001 }));
    w.forward(randn([5, 3])).sum().backward();
    try {
      opt.step();
      fail(check, 'the step did not throw');
    } catch (e) {
      const msg = (e as Error).message;
      if (!/spare\.weight/.test(msg) || !/spare\.bias/.test(msg) || !/findUnusedParameters/.test(msg)) fail(check, `message: ${msg}`);
    }
    // The group is still in step on every rank: the next (complete) step works.
    m.useSpare = true;
    opt.zeroGrad();
    w.forward(randn([5, 3])).sum().backward();
    opt.step();
    report(check);
  }

  {
    const check = newCheck('noSync: two accumulated micro-batches equal one step on the big batch');
    let allReduces = 0;
    const counting = new Proxy(world, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver);
        if (prop === 'allReduceAsync' || prop === 'allReduce') return (...a: unknown[]) => (allReduces++, (v as (...x: unknown[]) => unknown).apply(target, a));
        return typeof v === 'function' ? v.bind(target) : v;
      },
    }) as ProcessGroup;
    const mlp = () => (manualSeed(5), new nn.Sequential(new nn.Linear(6, 16), new nn.ReLU(), new nn.Linear(16, 3)));
    manualSeed(20 + rank);
    const x1 = randn([4, 6]);
    const x2 = randn([4, 6]);
    const both = new Float32Array(48);
    both.set(host(x1));
    both.set(host(x2), 24);
    const x = tensor(both, { shape: [8, 6] });
    const big = mlp();
    const bigOpt = new optim.SGD(big.parameters(), { lr: 0.1 });
    big.withBagua([bigOpt], new bagua.GradientAllReduce({ bucketCapMb: 0.001 }));
    sq(big.forward(x)).sum().backward();
    bigOpt.step();
    const acc = mlp();
    const accOpt = new optim.SGD(acc.parameters(), { lr: 0.1 });
    const alg = new bagua.GradientAllReduce({ bucketCapMb: 0.001 });
    acc.withBagua([accOpt], alg, { processGroup: counting });
    allReduces = 0;
    alg.noSync(() => sq(acc.forward(x1)).sum().backward());
    if (allReduces !== 0) fail(check, `${allReduces} all-reduces inside noSync`);
    sq(acc.forward(x2)).sum().backward();
    accOpt.step();
    if (allReduces !== alg.buckets(acc).length) fail(check, `${allReduces} all-reduces for ${alg.buckets(acc).length} buckets`);
    acc.parameters().forEach((p, i) => expectClose(check, `param ${i}`, p, host(big.parameters()[i]!)));
    report(check);
  }

  {
    const check = newCheck('two backward passes before a step: the step averages their sum');
    manualSeed(5);
    const m = new nn.Sequential(new nn.Linear(6, 16), new nn.ReLU(), new nn.Linear(16, 3));
    const opt = new optim.SGD(m.parameters(), { lr: 0.1 });
    const w = m.withBagua([opt], new bagua.GradientAllReduce({ bucketCapMb: 0.0005 }));
    manualSeed(40 + rank);
    const y = sq(w.forward(randn([4, 6]))).sum();
    y.backward({ retainGraph: true }); // its buckets start here...
    y.backward(); // ...and are redone from the accumulated gradients here
    const local = w.parameters().map((p) => host(p.grad!));
    opt.step();
    expectAveraged(check, 'param', w.parameters(), local);
    report(check);
  }

  {
    const check = newCheck('buckets are rebuilt after the first step in the order gradients arrived');
    // Registered a, b, c but applied c(b(a(x)))... reversed: a is last in the graph, so its gradient comes first.
    class Reversed extends nn.Module {
      readonly a = this.addModule('a', new nn.Linear(4, 4));
      readonly b = this.addModule('b', new nn.Linear(4, 4));
      readonly c = this.addModule('c', new nn.Linear(3, 4));
      forward(x: Tensor): Tensor {
        return this.a.forward(this.b.forward(this.c.forward(x)).relu());
      }
    }
    manualSeed(9);
    const m = new Reversed();
    const names = new Map([...m.namedParameters()].map(([n, p]) => [p as Tensor, n]));
    const alg = new bagua.GradientAllReduce({ bucketCapMb: 0.00001 }); // one parameter per bucket
    const opt = new optim.SGD(m.parameters(), { lr: 0.1 });
    const w = m.withBagua([opt], alg);
    const order = () => alg.buckets(w).map((b) => b.map((p) => names.get(p)).join('+')).join(' ');
    const before = order();
    if (before !== 'c.bias c.weight b.bias b.weight a.bias a.weight') fail(check, `initial order ${before}`);
    for (let s = 0; s < 2; s++) {
      manualSeed(30 + s + rank);
      opt.zeroGrad();
      w.forward(randn([2, 3])).sum().backward();
      const local = w.parameters().map((p) => host(p.grad!));
      opt.step();
      expectAveraged(check, `step ${s} param`, w.parameters(), local);
      const after = order();
      if (!after.startsWith('a.')) fail(check, `after step ${s}: ${after}`);
    }
    report(check);
  }

  {
    const check = newCheck('memory is flat over many overlapped steps (allocator and RSS)');
    const model = cnn('syncbn');
    const opt = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9 });
    const w = model.withBagua([opt], new bagua.GradientAllReduce({ bucketCapMb: 0.002 }));
    manualSeed(50 + rank);
    const x = randn([4, 3, 8, 8]);
    const step = () => {
      opt.zeroGrad();
      sq(w.forward(x)).mean().backward();
      opt.step();
    };
    for (let s = 0; s < 30; s++) step();
    const a0 = memoryStats().allocated;
    const r0 = process.memoryUsage().rss;
    for (let s = 0; s < 400; s++) step();
    const a1 = memoryStats().allocated;
    const r1 = process.memoryUsage().rss;
    for (let s = 0; s < 400; s++) step();
    const r2 = process.memoryUsage().rss;
    if (a1 !== a0) fail(check, `allocated ${a0} -> ${a1} bytes`);
    // Two windows: a leak grows RSS in both alike; a one-time heap expansion (of any of the
    // process's isolates: on threads, every rank's and its communication thread's) lands in one.
    const mib = (b: number) => (b / 2 ** 20).toFixed(1);
    if (Math.min(r1 - r0, r2 - r1) > 12 << 20) fail(check, `RSS grew ${mib(r1 - r0)} then ${mib(r2 - r1)} MiB over two windows of 400 steps`);
    console.log(`MEMORY allocated ${a0} -> ${a1}, rss +${mib(r1 - r0)} then +${mib(r2 - r1)} MiB`);
    report(check);
  }
}

function scenarioFault(): void {
  const check = newCheck(`${scenario}: the step fails with a CollectiveError`);
  const model = cnn('bn');
  const opt = new optim.SGD(model.parameters(), { lr: 0.01 });
  const w = model.withBagua([opt], new bagua.GradientAllReduce({ bucketCapMb: scenario === 'mismatch' && rank === 1 ? 1 : 0.002 }));
  let step = 0;
  if (scenario === 'dies' && rank === size - 1) {
    // The first conv's weight is among the last gradients of a backward: earlier buckets have started.
    registerGradReadyHook(model.parameters()[0]!, () => {
      if (step === 2) throw new Error(`rank ${rank} dies in the middle of backward`);
    });
  }
  const t0 = performance.now();
  try {
    for (let s = 0; s < 4; s++) {
      step = s;
      if (scenario === 'killed' && s === 2 && rank === size - 1) process.kill(process.pid, 'SIGKILL');
      opt.zeroGrad();
      sq(w.forward(randn([4, 3, 8, 8]))).mean().backward();
      opt.step();
    }
    fail(check, 'no error');
  } catch (e) {
    if (scenario === 'dies' && rank === size - 1) throw e; // this rank's own failure ends it (non-zero)
    if (!(e instanceof CollectiveError)) fail(check, `not a CollectiveError: ${(e as Error).stack}`);
    else console.log(`FAULT ${JSON.stringify({ ms: Math.round(performance.now() - t0), missing: e.missingRanks, message: e.message })}`);
  }
  report(check);
  process.exit(0);
}

if (scenario === 'main') scenarioMain();
else scenarioFault();
await bagua.destroyProcessGroup();
