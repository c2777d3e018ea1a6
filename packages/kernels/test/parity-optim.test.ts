/**
 * The optimizers' fused kernels against PyTorch 1.13 (fixtures/optim.json,
 * tools/gen-optim-fixtures.py) on the test device (the CPU library, or cuda:0 under
 * tools/cuda-emu): SGD, Adam and AdamW step for step over 20 steps with every option
 * combination, parameter groups and schedulers; PyTorch's state dict loaded at step 10 and
 * continued; clipGradNorm; one kernel call per parameter per step; flat memory in a loop.
 *
 * Tolerance: 1e-5 relative + 1e-6 absolute at every step. The kernel computes PyTorch's
 * float32 operations in PyTorch's order, but the compilers fuse multiply-adds in their own
 * places (as PyTorch's vectorised kernels do in theirs), so elements differ by an ulp now and
 * then; Adam normalises its update and these do not grow over the 20 steps. PyTorch's own
 * float32 run stays within 0.26 of this tolerance of its float64 run (the fixture's `drift`).
 */
import test from 'ava';
import '@bagua/kernels';
import { KERNEL_METHODS } from '@bagua/kernels';
import { getBackend, memoryStats, nn, optim, randn, tensor, type Tensor } from '@bagua/core';
import { assertClose, assertCloseScalar, loadFixture, testDevice, type FixtureTensor, type Tolerance } from '@bagua/testing';

type Opts = Record<string, unknown>;
interface TorchStateDict { state: Record<string, Record<string, number | FixtureTensor | null>>; param_groups: Array<Record<string, unknown>> }
interface OptCase {
  name: string; optimizer: 'SGD' | 'Adam' | 'AdamW'; options: Opts; groups: { params: number[]; options: Opts }[] | null;
  scheduler: { scheduler: string; args: Record<string, any> } | null; // eslint-disable-line @typescript-eslint/no-explicit-any
  steps: FixtureTensor[][]; stateDict10: TorchStateDict; stateDict20: TorchStateDict;
}
interface ClipCase { name: string; maxNorm: number; normType: number | 'inf'; totalNorm: number; grads: FixtureTensor[] }
interface Fixture {
  steps: number; expectedCounts: { optimizers: number };
  params: FixtureTensor[]; grads: (FixtureTensor | null)[][]; optimizers: OptCase[];
  clipParams: FixtureTensor[]; clipGrads: FixtureTensor[]; clip: ClipCase[];
}

const fx = loadFixture<Fixture>('optim.json');
const device = testDevice();
const TOL: Tolerance = { rtol: 1e-5, atol: 1e-6 };
type AnyOptimizer = optim.Optimizer<{ lr: number }, unknown>;

const onDevice = (ft: FixtureTensor): Tensor => tensor(Float32Array.from(ft.data), { shape: ft.shape, device });
/** A parameter on the device, kept as a module's are. */
const param = (ft: FixtureTensor): Tensor =>
  tensor(Float32Array.from(ft.data), { shape: ft.shape, device, requiresGrad: true }).keep();

function makeOptimizer(c: OptCase, params: Tensor[]): AnyOptimizer {
  const Cls = { SGD: optim.SGD, Adam: optim.Adam, AdamW: optim.AdamW }[c.optimizer] as unknown as
    new (p: unknown, o: Opts) => AnyOptimizer;
  return new Cls(c.groups ? c.groups.map((g) => ({ params: g.params.map((i) => params[i]!), ...g.options })) : params,
    { ...c.options });
}

function makeScheduler(opt: AnyOptimizer, c: OptCase): optim.lrScheduler.LRScheduler | null {
  if (!c.scheduler) return null;
  const a = c.scheduler.args;
  switch (c.scheduler.scheduler) {
    case 'OneCycleLR': return new optim.lrScheduler.OneCycleLR(opt, a.maxLr, { totalSteps: a.totalSteps });
    case 'CosineAnnealingLR': return new optim.lrScheduler.CosineAnnealingLR(opt, a.tMax);
    default: throw new Error(`parity-optim: no scheduler ${c.scheduler.scheduler} in the optimizer cases`);
  }
}

function setGrads(params: Tensor[], step: number): void {
  params.forEach((p, j) => {
    const g = fx.grads[step]![j];
    p.grad = g ? onDevice(g) : null;
  });
}

test('parity optim.json: the optimizer cases are there', (t) => {
  t.is(fx.optimizers.length, fx.expectedCounts.optimizers);
  t.true(fx.optimizers.length >= 30);
  for (const k of ['SGD', 'Adam', 'AdamW']) t.true(fx.optimizers.some((c) => c.optimizer === k), k);
});

for (const c of fx.optimizers) {
  test(`parity optim ${c.name} on ${device}: 20 steps and the state dict equal PyTorch's`, (t) => {
    const params = fx.params.map(param);
    const opt = makeOptimizer(c, params);
    const sched = makeScheduler(opt, c);
    for (let s = 0; s < fx.steps; s++) {
      setGrads(params, s);
      opt.step();
      sched?.step();
      params.forEach((p, j) => assertClose(t, p, c.steps[s]![j]!, `step ${s + 1} param ${j}`, TOL));
    }
    const sd = opt.stateDict();
    for (const [k, entry] of Object.entries(c.stateDict20.state)) {
      for (const [n, v] of Object.entries(entry)) {
        const got = sd.state[Number(k)]![n];
        if (v === null) t.is(got, null, `state[${k}].${n}`);
        else if (typeof v === 'number') assertCloseScalar(t, got as Tensor, v, `state[${k}].${n}`, { rtol: 0, atol: 0 });
        else assertClose(t, got as Tensor, v, `state[${k}].${n}`, TOL);
      }
    }
  });
}

test(`parity optim on ${device}: PyTorch's state dicts at step 10 load and continue as PyTorch`, (t) => {
  for (const c of fx.optimizers.filter((x) => !x.scheduler)) {
    const params = c.steps[9]!.map(param);
    const opt = makeOptimizer(c, params);
    const state: optim.OptimizerStateDict['state'] = {};
    for (const [k, entry] of Object.entries(c.stateDict10.state)) {
      state[Number(k)] = Object.fromEntries(Object.entries(entry).map(([n, v]) =>
        [n, v === null || typeof v === 'number' ? v : tensor(Float32Array.from(v.data), { shape: v.shape })]));
    }
    opt.loadStateDict({ state, param_groups: c.stateDict10.param_groups as optim.OptimizerStateDict['param_groups'] });
    for (const s of Object.values(opt.stateDict().state)) {
      for (const v of Object.values(s)) if (v && typeof v === 'object' && v.ndim > 0) t.is(v.device.toString(), device);
    }
    for (let s = 10; s < fx.steps; s++) {
      setGrads(params, s);
      opt.step();
    }
    params.forEach((p, j) => assertClose(t, p, c.steps[19]![j]!, `${c.name}: step 20 param ${j}`, TOL));
  }
});

for (const c of fx.clip) {
  test(`parity clipGradNorm ${c.name} on ${device}`, (t) => {
    const params = fx.clipParams.map(param);
    fx.clipGrads.forEach((g, i) => { params[i]!.grad = onDevice(g); });
    const total = optim.clipGradNorm(params, c.maxNorm, c.normType === 'inf' ? Infinity : c.normType);
    assertCloseScalar(t, total, c.totalNorm, 'total norm', TOL);
    c.grads.forEach((g, i) => assertClose(t, params[i]!.grad, g, `grad ${i}`, TOL));
  });
}

test(`parity optim on ${device}: a step is one fused kernel call per parameter with a gradient`, (t) => {
  const backend = getBackend(device.startsWith('cuda') ? 'cuda' : 'cpu') as unknown as Record<string, (...a: unknown[]) => unknown>;
  for (const [kind, make] of [
    ['Adam', (ps: Tensor[]) => new optim.Adam(ps, { amsgrad: true, weightDecay: 0.1 })],
    ['AdamW', (ps: Tensor[]) => new optim.AdamW(ps)],
    ['SGD', (ps: Tensor[]) => new optim.SGD(ps, { lr: 0.1, momentum: 0.9 })],
  ] as const) {
    const params = fx.params.map(param);
    const opt = make(params);
    for (let s = 0; s < 2; s++) { // the first step makes the state (fills); the second is the steady one
      setGrads(params, s);
      const calls: string[] = [];
      const saved = KERNEL_METHODS.map((m) => [m, backend[m]!] as const);
      for (const [m, f] of saved) backend[m] = function (this: unknown, ...a: unknown[]) { calls.push(m); return f.apply(this, a); };
      try {
        opt.step();
      } finally {
        for (const [m, f] of saved) backend[m] = f;
      }
      const withGrad = params.filter((p) => p.grad).length;
      const kernel = kind === 'SGD' ? 'sgd' : 'adam';
      t.is(calls.filter((m) => m === kernel).length, withGrad, `${kind} step ${s + 1}: one ${kernel} call per parameter`);
      if (s === 1) t.deepEqual(calls.filter((m) => m !== kernel), [], `${kind}: no other kernel in a steady step`);
    }
  }
});

test.serial(`parity optim on ${device}: an AdamW + OneCycleLR + clipGradNorm loop keeps memory flat`, (t) => {
  const net = new nn.Sequential(new nn.Linear(8, 16), new nn.ReLU(), new nn.Linear(16, 4));
  net.to(device);
  const opt = new optim.AdamW(net.parameters(), { lr: 1e-3, amsgrad: true });
  const sched = new optim.lrScheduler.OneCycleLR(opt, 0.01, { totalSteps: 40 });
  const x = randn([5, 8]).to(device).keep();
  const y = randn([5, 4]).to(device).keep();
  const seen: number[] = [];
  for (let i = 1; i <= 40; i++) {
    const loss = net.forward(x).sub(y).mul(net.forward(x).sub(y)).mean();
    opt.zeroGrad();
    loss.backward();
    optim.clipGradNorm(net.parameters(), 0.5);
    opt.step();
    sched.step();
    if (i % 10 === 0) seen.push(memoryStats(device).allocated);
  }
  t.is(seen[3], seen[1], 'live bytes are the same after step 20 and step 40');
  t.is(seen[2], seen[1], 'and after step 30');
});

test(`parity optim on ${device}: the Adam kernel refuses amsgrad without its buffer and a step count below 1`, (t) => {
  const backend = getBackend(device.startsWith('cuda') ? 'cuda' : 'cpu');
  const [p, m, v, g] = [0, 1, 2, 3].map(() => tensor([1, 2, 3, 4], { device }).keep());
  const h = (x: Tensor) => x.storage('test').handle;
  t.throws(() => backend.adam(h(p), h(m), h(v), null, h(g), 4, 0.9, 0.999, 0.1, 0.001, 1e-8, 0, 1, 0.01, 0.1, true, false),
    { message: /max_exp_avg_sq/ });
  t.throws(() => backend.adam(h(p), h(m), h(v), null, h(g), 4, 0.9, 0.999, 0.1, 0.001, 1e-8, 0, 1, 0.01, 0, false, false),
    { message: /bias_correction2_sqrt must be > 0/ });
  t.throws(() => backend.adam(h(p), h(m), h(v), null, h(g), 5, 0.9, 0.999, 0.1, 0.001, 1e-8, 0, 1, 0.01, 0.1, false, false),
    { message: /param/ }, 'a size beyond the storages is refused before the C call');
  t.deepEqual(Array.from(p.toArray() as Float32Array), [1, 2, 3, 4], 'nothing written');
  for (const x of [p, m, v, g]) x.dispose();
});
