import test from 'ava';
import '@bagua/kernels';
import { nn, optim, randn, type Tensor } from '@bagua/core';
import { convertBatchNorms, revertBatchNorms, type RankAware } from '../src/index.js';

/** A stand-in target layer: any _BatchNorm subclass the walker is asked to produce. */
class Marked extends nn._BatchNorm implements RankAware {
  inputRank: number | null = null;
  protected checkInputDim(x: Tensor): void {
    this.inputRank = x.ndim;
  }
}
const isMarked = (m: nn.Module): m is Marked => m instanceof Marked;
const toMarked = (bn: nn._BatchNorm) => new Marked(bn.numFeatures, { eps: bn.eps, momentum: bn.momentum, affine: bn.affine, trackRunningStats: bn.trackRunningStats });

class Net extends nn.Module {
  declare features: nn.Sequential;
  declare head: nn.Linear;
  declare norm: nn.BatchNorm1d;
  constructor() {
    super();
    this.addModule('features', new nn.Sequential(new nn.Conv2d(2, 4, 3), new nn.BatchNorm2d(4, { momentum: null }),
      new nn.ReLU(), new nn.Sequential(new nn.BatchNorm2d(4, { affine: false })), new nn.AdaptiveAvgPool2d(1), new nn.Flatten()));
    this.addModule('head', new nn.Linear(4, 3));
    this.addModule('norm', new nn.BatchNorm1d(3, { eps: 1e-3 }));
  }
  forward(x: Tensor): Tensor {
    return this.norm.forward(this.head.forward(this.features.forward(x)));
  }
}

test('every BatchNorm in the tree is replaced, sharing parameters, buffers, counters and flags', (t) => {
  const net = new Net();
  net.forward(randn([3, 2, 5, 5])); // numBatchesTracked = 1 everywhere
  net.eval();
  const keys = Object.keys(net.stateDict());
  const before = [...net.namedModules()].filter(([, m]) => m instanceof nn._BatchNorm) as [string, nn._BatchNorm][];
  t.is(before.length, 3);
  const out = convertBatchNorms(net, toMarked);
  t.is(out, net, 'a non-batch-norm root comes back as itself');
  const after = new Map([...net.namedModules()]);
  for (const [name, old] of before) {
    const now = after.get(name) as nn._BatchNorm;
    t.true(now instanceof Marked, `${name} converted`);
    t.is(now.weight, old.weight);
    t.is(now.bias, old.bias);
    t.is(now.runningMean, old.runningMean);
    t.is(now.runningVar, old.runningVar);
    t.is(now.numBatchesTracked, 1);
    t.is(now.training, false);
    t.is(now.eps, old.eps);
    t.is(now.momentum, old.momentum);
    t.is(now.affine, old.affine);
  }
  t.is(net.norm as nn.Module | undefined, after.get('norm'), 'the property follows the tree');
  t.deepEqual(Object.keys(net.stateDict()), keys, 'state-dict keys are unchanged');
});

test('an optimizer built before the conversion still updates the converted layers', (t) => {
  const net = new Net();
  const opt = new optim.SGD(net.parameters(), { lr: 0.5 });
  convertBatchNorms(net, toMarked);
  const w = (net.features.at(1) as nn._BatchNorm).weight!;
  const before = (w.toArray() as Float32Array).slice();
  const loss = net.forward(randn([4, 2, 5, 5])).mul(randn([4, 3])).sum();
  loss.backward();
  opt.step();
  const afterW = w.toArray() as Float32Array;
  t.true(afterW.some((v, i) => v !== before[i]), 'the shared weight moved');
  t.true(net.parameters().includes(w as never));
});

test('a batch-norm root returns a new layer; revert round-trips by the rank seen', (t) => {
  const bn = new nn.BatchNorm3d(2, { momentum: 0.3 });
  const marked = convertBatchNorms(bn, toMarked) as Marked;
  t.not(marked as nn.Module, bn);
  t.true(marked instanceof Marked);
  marked.forward(randn([2, 2, 2, 2, 2]));
  const back = revertBatchNorms(marked, isMarked) as nn._BatchNorm;
  t.true(back instanceof nn.BatchNorm3d);
  t.is(back.runningMean, bn.runningMean);
  t.is(back.numBatchesTracked, 1);
  t.is(back.momentum, 0.3);
});

test('revert picks the class from a declared rank, and refuses a layer that saw nothing without one', (t) => {
  const m = convertBatchNorms(new nn.Sequential(new nn.BatchNorm1d(3)), toMarked);
  t.throws(() => revertBatchNorms(m, isMarked), { message: /has seen no input.*pass the input rank/ });
  const back = revertBatchNorms(m, isMarked, 4) as nn.Sequential;
  t.true(back.at(0) instanceof nn.BatchNorm2d);
});

test('a model without batch norm comes back unchanged', (t) => {
  const model = new nn.Sequential(new nn.Linear(2, 3), new nn.ReLU());
  const children = [...model.children()];
  t.is(convertBatchNorms(model, toMarked), model);
  t.deepEqual([...model.children()], children);
});

test('batch norms inside a ModuleList and a ModuleDict are replaced there, and revert back', (t) => {
  const list = new nn.ModuleList([new nn.Conv2d(2, 4, 1), new nn.BatchNorm2d(4), new nn.ModuleList([new nn.BatchNorm1d(3)])]);
  const dict = new nn.ModuleDict({ norm: new nn.BatchNorm2d(4), id: new nn.Identity(), deep: new nn.ModuleDict({ bn: new nn.BatchNorm3d(2) }) });
  const root = new nn.Sequential(list, dict);
  const keys = Object.keys(root.stateDict());
  const params = root.parameters();
  const weight = (list.at(1) as nn.BatchNorm2d).weight;
  convertBatchNorms(root, toMarked);
  t.true(list.at(1) instanceof Marked, 'ModuleList entry');
  t.true((list.at(2) as nn.ModuleList).at(0) instanceof Marked, 'nested ModuleList entry');
  t.true(dict.get('norm') instanceof Marked, 'ModuleDict entry');
  t.true((dict.get('deep') as nn.ModuleDict).get('bn') instanceof Marked, 'nested ModuleDict entry');
  t.true(dict.get('id') instanceof nn.Identity);
  t.is((list.at(1) as Marked).weight, weight, 'parameters shared');
  t.deepEqual(Object.keys(root.stateDict()), keys, 'state-dict keys are unchanged');
  t.deepEqual(root.parameters(), params, 'the same parameters, in the same order');
  t.deepEqual([...dict.keys()], ['norm', 'id', 'deep'], 'the dict keeps its order');
  (list.at(1) as Marked).forward(randn([2, 4, 3, 3]));
  (dict.get('norm') as Marked).forward(randn([2, 4, 3, 3]));
  ((list.at(2) as nn.ModuleList).at(0) as Marked).forward(randn([4, 3]));
  ((dict.get('deep') as nn.ModuleDict).get('bn') as Marked).forward(randn([2, 2, 2, 2, 2]));
  revertBatchNorms(root, isMarked);
  t.true(list.at(1) instanceof nn.BatchNorm2d && dict.get('norm') instanceof nn.BatchNorm2d);
  t.true((list.at(2) as nn.ModuleList).at(0) instanceof nn.BatchNorm1d);
  t.true((dict.get('deep') as nn.ModuleDict).get('bn') instanceof nn.BatchNorm3d);
});
