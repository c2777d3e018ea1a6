/**
 * optim against PyTorch 1.13 (fixtures/optim.json, tools/gen-optim-fixtures.py), on the reference
 * backend stand-in: SGD, Adam and AdamW step for step with every option, parameter groups and
 * per-parameter step counts; state dicts in PyTorch's structure (ours against PyTorch's, PyTorch's
 * loaded here, ours round-tripped); every scheduler and its state dict; clipGradNorm.
 *
 * Tolerance of the parameters: 1e-5 relative + 1e-6 absolute at every step. The stand-in rounds
 * every operation to float32 in PyTorch's order, but PyTorch's vectorised kernels fuse some
 * multiply-adds (one rounding instead of two), so single elements differ by an ulp now and then;
 * Adam normalises the update, so such differences do not grow: the float64 run of the same
 * inputs stays within 0.26 of this tolerance of PyTorch's float32 one (the fixture's `drift`).
 * Schedulers compute in double as PyTorch's Python does: 1e-12 relative.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { useReferenceBackend } from './helpers/reference-backend.js';
import { nn, optim, tensor, type Tensor } from '../src/index.js';

useReferenceBackend();

const { SGD, Adam, AdamW, clipGradNorm, lrScheduler } = optim;

interface FT { shape: number[]; data: number[] }
type Opts = Record<string, unknown>;
interface SchedSpec { scheduler: string; args: Opts }
interface TorchStateDict { state: Record<string, Record<string, number | FT | null>>; param_groups: Array<Record<string, unknown>> }
interface OptCase {
  name: string; optimizer: 'SGD' | 'Adam' | 'AdamW'; options: Opts; groups: { params: number[]; options: Opts }[] | null;
  scheduler: SchedSpec | null; steps: FT[][]; stateDict10: TorchStateDict; stateDict20: TorchStateDict; drift: number;
}
interface SchedCase {
  name: string; scheduler: string; optimizer: 'SGD' | 'Adam'; args: Opts; epochs: number[] | null; lrs: number[][];
  momenta: number[][] | null; stateDict: Record<string, unknown>; groupKeys: string[];
}
interface ClipCase { name: string; maxNorm: number; normType: number | 'inf'; totalNorm: number; grads: FT[] }
interface Fixture {
  steps: number; expectedCounts: { optimizers: number; schedulers: number; clip: number };
  params: FT[]; grads: (FT | null)[][]; optimizers: OptCase[]; schedulers: SchedCase[];
  clipParams: FT[]; clipGrads: FT[]; clip: ClipCase[];
}

function fixture(): Fixture {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'pnpm-workspace.yaml'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('optim.test: no pnpm-workspace.yaml above the test');
    dir = up;
  }
  return JSON.parse(readFileSync(join(dir, 'fixtures', 'optim.json'), 'utf8')) as Fixture;
}
const fx = fixture();

const RTOL = 1e-5;
const ATOL = 1e-6;
const toT = (ft: FT): Tensor => tensor(Float32Array.from(ft.data), { shape: ft.shape });
/** A parameter: kept, as a module's parameters are (a plain tensor unused for a step would be released). */
const param = (ft: FT): Tensor => tensor(Float32Array.from(ft.data), { shape: ft.shape, requiresGrad: true }).keep();

/** Every element within atol + rtol |expected|; the message names the worst. */
function close(t: ExecutionContext, actual: ArrayLike<number>, expected: ArrayLike<number>, label: string,
  rtol = RTOL, atol = ATOL): boolean {
  if (actual.length !== expected.length) {
    t.fail(`${label}: ${actual.length} values, expected ${expected.length}`);
    return false;
  }
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      t.fail(`${label}[${i}]: got ${a}, expected ${e} (|diff| ${Math.abs(a - e)})`);
      return false;
    }
  }
  t.pass();
  return true;
}
const values = (x: Tensor): number[] => Array.from(x.toArray() as Float32Array);

function makeOptimizer(c: OptCase, params: Tensor[]): optim.Optimizer<{ lr: number }, unknown> {
  const Cls = { SGD, Adam, AdamW }[c.optimizer] as unknown as new (p: unknown, o: Opts) => optim.Optimizer<{ lr: number }, unknown>;
  const ps = c.groups ? c.groups.map((g) => ({ params: g.params.map((i) => params[i]!), ...g.options })) : params;
  return new Cls(ps, { ...c.options });
}

const LAMBDAS: Record<string, (e: number) => number> = {
  'pow0.95': (e) => 0.95 ** e, inv: (e) => 1 / (e + 1), step10: (e) => 0.1 ** Math.floor(e / 10),
};

function makeScheduler(opt: optim.Optimizer<{ lr: number }, unknown>, s: SchedSpec): optim.lrScheduler.LRScheduler {
  const a = s.args as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  switch (s.scheduler) {
    case 'StepLR': return new lrScheduler.StepLR(opt, a.stepSize, { gamma: a.gamma });
    case 'MultiStepLR': return new lrScheduler.MultiStepLR(opt, a.milestones, { gamma: a.gamma });
    case 'CosineAnnealingLR': return new lrScheduler.CosineAnnealingLR(opt, a.tMax, { etaMin: a.etaMin });
    case 'LinearLR': return new lrScheduler.LinearLR(opt, a);
    case 'LambdaLR': {
      const fns = (a.lambdas as string[]).map((n) => LAMBDAS[n]!);
      return new lrScheduler.LambdaLR(opt, fns.length === 1 ? fns[0]! : fns);
    }
    case 'OneCycleLR': {
      const { maxLr, ...rest } = a;
      return new lrScheduler.OneCycleLR(opt, maxLr, rest);
    }
    default: throw new Error(`unknown scheduler ${s.scheduler}`);
  }
}

/** Sets step `i`'s gradients from the fixture (null: none), as a training loop's backward would. */
function setGrads(params: Tensor[], step: number): void {
  params.forEach((p, j) => {
    const g = fx.grads[step]![j];
    p.grad = g ? toT(g) : null;
  });
}

/** A PyTorch state dict of the fixture with its tensors as Tensors. */
function torchStateDict(sd: TorchStateDict): optim.OptimizerStateDict {
  const state: optim.OptimizerStateDict['state'] = {};
  for (const [k, entry] of Object.entries(sd.state)) {
    state[Number(k)] = Object.fromEntries(Object.entries(entry).map(([n, v]) =>
      [n, v === null || typeof v === 'number' ? v : toT(v)]));
  }
  return { state, param_groups: sd.param_groups as optim.OptimizerStateDict['param_groups'] };
}

/** Ours against PyTorch's state dict: the same entries, groups and values. */
function sameStateDict(t: ExecutionContext, ours: optim.OptimizerStateDict, torch: TorchStateDict, label: string): void {
  t.deepEqual(Object.keys(ours.state).sort(), Object.keys(torch.state).sort(), `${label}: state indices`);
  for (const [k, entry] of Object.entries(torch.state)) {
    const mine = ours.state[Number(k)]!;
    t.deepEqual(Object.keys(mine).sort(), Object.keys(entry).sort(), `${label}: state[${k}] keys`);
    for (const [n, v] of Object.entries(entry)) {
      const got = mine[n];
      if (v === null) t.is(got, null, `${label}: state[${k}].${n}`);
      else if (typeof v === 'number') {
        t.true(got instanceof Object && (got as Tensor).ndim === 0, `${label}: state[${k}].${n} is a 0-dim tensor as PyTorch's`);
        t.is((got as Tensor).item(), v, `${label}: state[${k}].${n}`);
      } else {
        t.deepEqual((got as Tensor).shape, v.shape, `${label}: state[${k}].${n} shape`);
        close(t, values(got as Tensor), v.data, `${label}: state[${k}].${n}`);
      }
    }
  }
  t.is(ours.param_groups.length, torch.param_groups.length);
  torch.param_groups.forEach((g, i) => {
    const mine = ours.param_groups[i]!;
    t.deepEqual(Object.keys(mine).sort(), Object.keys(g).sort(), `${label}: param_groups[${i}] keys`);
    for (const [k, v] of Object.entries(g)) {
      if (typeof v === 'number') close(t, [mine[k] as number], [v], `${label}: param_groups[${i}].${k}`, 1e-12, 0);
      else t.deepEqual(mine[k], v, `${label}: param_groups[${i}].${k}`);
    }
  });
  t.notThrows(() => JSON.stringify({ ...ours, state: {} }), 'everything but the tensors is JSON');
}

test('optim.json holds every optimizer, scheduler and clip case', (t) => {
  t.is(fx.steps, 20);
  t.is(fx.optimizers.length, fx.expectedCounts.optimizers);
  t.is(fx.schedulers.length, fx.expectedCounts.schedulers);
  t.is(fx.clip.length, fx.expectedCounts.clip);
  const names = fx.optimizers.map((c) => c.name);
  for (const kind of ['Adam', 'AdamW']) {
    for (const combo of ['wd0.0', 'wd0.1', 'wd0.0_maximize', 'wd0.1_amsgrad', 'wd0.1_amsgrad_maximize']) {
      t.true(names.includes(`${kind}/lr0.01_${combo}`), `${kind} ${combo}`);
    }
  }
  for (const s of ['StepLR', 'MultiStepLR', 'CosineAnnealingLR', 'LinearLR', 'LambdaLR', 'OneCycleLR']) {
    t.true(fx.schedulers.some((c) => c.scheduler === s), s);
  }
  t.true(fx.optimizers.every((c) => c.drift < 1), 'PyTorch float32 itself is within the tolerance of float64');
});

test('the stand-in Adam kernel: one hand-computed step', (t) => {
  // step 1: m = 0.1 g, v = 0.001 g^2; step_size = lr / 0.1; denom = sqrt(v) / sqrt(0.001) + eps = |g| + eps
  const p = tensor([1, -1], { requiresGrad: true });
  p.grad = tensor([2, -0.5]);
  new Adam([p], { lr: 0.1 }).step();
  close(t, values(p), [1 - 0.1 * 2 / (2 + 1e-8), -1 + 0.1 * 0.5 / (0.5 + 1e-8)], 'param', 0, 1e-7);
});

for (const c of fx.optimizers) {
  test(`${c.name}: 20 steps equal PyTorch's, state dicts at steps 10 and 20 too`, (t) => {
    const params = fx.params.map((p) => param(p));
    const opt = makeOptimizer(c, params);
    const sched = c.scheduler ? makeScheduler(opt, c.scheduler) : null;
    for (let s = 0; s < fx.steps; s++) {
      setGrads(params, s);
      opt.step();
      sched?.step();
      params.forEach((p, j) => close(t, values(p), c.steps[s]![j]!.data, `step ${s + 1} param ${j}`));
      if (s + 1 === 10) sameStateDict(t, opt.stateDict(), c.stateDict10, 'step 10');
    }
    sameStateDict(t, opt.stateDict(), c.stateDict20, 'step 20');
  });

  test(`${c.name}: PyTorch's state dict at step 10 loaded here continues as PyTorch; ours round-trips`, (t) => {
    for (const source of ['torch', 'ours'] as const) {
      let sd: optim.OptimizerStateDict;
      let schedSd: Record<string, unknown> | null = null;
      if (source === 'torch') sd = torchStateDict(c.stateDict10);
      else {
        const first = fx.params.map((p) => param(p));
        const o = makeOptimizer(c, first);
        const sc = c.scheduler ? makeScheduler(o, c.scheduler) : null;
        for (let s = 0; s < 10; s++) {
          setGrads(first, s);
          o.step();
          sc?.step();
        }
        sd = o.stateDict();
        schedSd = sc ? JSON.parse(JSON.stringify(sc.stateDict())) as Record<string, unknown> : null;
      }
      // Fresh parameters at PyTorch's step-10 values, a fresh optimizer (and scheduler), then the state.
      const params = c.steps[9]!.map((p) => param(p));
      const opt = makeOptimizer(c, params);
      const sched = c.scheduler ? makeScheduler(opt, c.scheduler) : null;
      if (sched && schedSd) sched.loadStateDict(schedSd);
      else if (sched) for (let s = 0; s < 10; s++) sched.step(); // the fixture has no scheduler state: replay it
      opt.loadStateDict(sd);
      for (let s = 10; s < fx.steps; s++) {
        setGrads(params, s);
        opt.step();
        sched?.step();
        params.forEach((p, j) => close(t, values(p), c.steps[s]![j]!.data, `${source}: step ${s + 1} param ${j}`));
      }
      sameStateDict(t, opt.stateDict(), c.stateDict20, `${source}: step 20`);
    }
  });
}

for (const c of fx.schedulers) {
  test(`scheduler ${c.name}: every lr${c.momenta ? ' and momentum' : ''} equals PyTorch's, and its state dict`, (t) => {
    const a = tensor([0, 0], { requiresGrad: true });
    const b = tensor([0, 0, 0], { requiresGrad: true });
    const opt = c.optimizer === 'Adam'
      ? new Adam([{ params: [a], lr: 0.1 }, { params: [b], lr: 0.05 }])
      : new SGD([{ params: [a], lr: 0.1 }, { params: [b], lr: 0.05 }], { lr: 0.1, momentum: 0.9 });
    const sched = makeScheduler(opt, c);
    const momentum = () => opt.paramGroups.map((g) => (c.optimizer === 'Adam' ? (g.betas as number[])[0]! : g.momentum as number));
    const lrs = [sched.getLastLr()];
    const moms = [momentum()];
    t.deepEqual(lrs[0], opt.paramGroups.map((g) => g.lr));
    const epochs = c.epochs ?? new Array<undefined>(c.lrs.length - 1).fill(undefined);
    for (const e of epochs) {
      opt.step();
      sched.step(e);
      lrs.push(sched.getLastLr());
      moms.push(momentum());
    }
    t.is(lrs.length, c.lrs.length);
    close(t, lrs.flat(), c.lrs.flat(), 'lr', 1e-12, 1e-15);
    if (c.momenta) close(t, moms.flat(), c.momenta.flat(), 'momentum', 1e-12, 1e-15);
    const sd = sched.stateDict();
    for (const [k, v] of Object.entries(c.stateDict)) {
      t.true(k in sd, `state dict key ${k}`);
      if (k === '_last_lr' || k === 'base_lrs') close(t, sd[k] as number[], v as number[], k, 1e-12, 1e-15);
      else t.deepEqual(sd[k], v, `state dict ${k}`);
    }
    t.deepEqual(Object.keys(opt.stateDict().param_groups[0]!).filter((k) => k !== 'params').sort(), c.groupKeys,
      'the optimizer group keys PyTorch has after this scheduler');
    t.notThrows(() => JSON.stringify(sd));
  });
}

test('a scheduler resumes from its state dict and the optimizer\'s (cosine, one-cycle)', (t) => {
  for (const kind of ['cos', 'one'] as const) {
    const run = (resumeAt: number | null): number[][] => {
      const p = tensor([0], { requiresGrad: true }).keep();
      let opt = new SGD([p], { lr: 0.1, momentum: 0.9 });
      const mk = (o: optim.SGD) => kind === 'cos'
        ? new lrScheduler.CosineAnnealingLR(o, 6, { etaMin: 0.01 })
        : new lrScheduler.OneCycleLR(o, 1, { totalSteps: 20 });
      let sched = mk(opt);
      const out: number[][] = [];
      for (let s = 0; s < 18; s++) {
        if (s === resumeAt) {
          const osd = opt.stateDict();
          const ssd = JSON.parse(JSON.stringify(sched.stateDict())) as Record<string, unknown>;
          // PyTorch's order: make both as at the start, then load the optimizer's state, then the scheduler's.
          opt = new SGD([p], { lr: 0.1, momentum: 0.9 });
          sched = mk(opt);
          opt.loadStateDict(osd);
          sched.loadStateDict(ssd);
        }
        opt.step();
        sched.step();
        out.push([...sched.getLastLr(), opt.paramGroups[0]!.momentum]);
      }
      return out;
    };
    t.deepEqual(run(7), run(null), kind);
  }
});

test('schedulers: PyTorch\'s errors', (t) => {
  const p = tensor([0], { requiresGrad: true });
  const opt = new SGD([p], { lr: 0.1 });
  t.throws(() => new lrScheduler.StepLR(new SGD([tensor([0], { requiresGrad: true })], { lr: 1 }), 2, { lastEpoch: 3 }),
    { message: /initial_lr' is not specified in paramGroups\[0\]/ });
  const one = new lrScheduler.OneCycleLR(opt, 1, { totalSteps: 3 });
  for (let i = 0; i < 3; i++) one.step();
  t.throws(() => one.step(), { message: /tried to step 5 times; the specified number of total steps is 3/ });
  t.throws(() => new lrScheduler.OneCycleLR(opt, 1), { message: /totalSteps, or epochs and stepsPerEpoch/ });
  t.throws(() => new lrScheduler.OneCycleLR(opt, [1, 2], { totalSteps: 3 }), { message: /expected 1 values for maxLr, got 2/ });
  t.throws(() => new lrScheduler.LinearLR(opt, { startFactor: 2 }), { message: /startFactor must be in \[0, 1\]/ });
  t.throws(() => new lrScheduler.LambdaLR(opt, [(e) => e, (e) => e]), { message: /expected 1 lrLambdas, got 2/ });
  t.throws(() => new lrScheduler.StepLR(opt, 0), { message: /stepSize must be a positive integer, got 0/ });
  const s = new lrScheduler.StepLR(opt, 2);
  t.throws(() => s.loadStateDict({ last_epoch: 1, bogus: 2 }), { message: /unknown keys \[bogus\]/ });
});

for (const c of fx.clip) {
  test(`clipGradNorm ${c.name}: total norm and clipped gradients as PyTorch's`, (t) => {
    const params = fx.clipParams.map((p) => param(p));
    fx.clipGrads.forEach((g, i) => { params[i]!.grad = toT(g); });
    const total = clipGradNorm(params, c.maxNorm, c.normType === 'inf' ? Infinity : c.normType);
    close(t, [total], [c.totalNorm], 'total norm');
    c.grads.forEach((g, i) => close(t, values(params[i]!.grad!), g.data, `grad ${i}`));
    t.is(params[3]!.grad, null, 'a parameter without a gradient is skipped');
  });
}

test('clipGradNorm: no gradients gives 0; a non-finite norm is an error when asked', (t) => {
  const p = tensor([1, 2], { requiresGrad: true });
  t.is(clipGradNorm([p], 1), 0);
  p.grad = tensor([Infinity, 1]);
  t.throws(() => clipGradNorm(p, 1, 2, { errorIfNonfinite: true }), { message: /total norm of order 2 .* non-finite \(Infinity\)/ });
  t.throws(() => clipGradNorm(p, 1, -1), { message: /normType must be >= 0 or Infinity, got -1/ });
});

test('optimizers: bad options, parameters and groups are refused, naming the problem', (t) => {
  const p = tensor([1, 2], { requiresGrad: true });
  const q = tensor([1], { requiresGrad: true });
  t.throws(() => new Adam([p], { lr: -1 }), { message: /Adam: lr must be a finite non-negative number, got -1/ });
  t.throws(() => new AdamW([p], { betas: [0.9, 1] }), { message: /AdamW: betas\[1\] must be in \[0, 1\), got 1/ });
  t.throws(() => new Adam([p], { eps: NaN }), { message: /Adam: eps must be a finite non-negative number, got NaN/ });
  t.throws(() => new Adam([]), { message: /Adam: got an empty parameter list/ });
  t.throws(() => new Adam([{ params: [p] }, { params: [p] }]), { message: /appear more than once/ });
  t.throws(() => new Adam([tensor([1])]), { message: /does not require grad/ });
  t.throws(() => new SGD([{ params: [p], momentum: -1 }], { lr: 1 }), { message: /SGD: momentum must be a finite non-negative number/ });
  const opt = new Adam([{ params: [p], lr: 0.5 }, { params: [q] }]);
  t.deepEqual(opt.paramGroups.map((g) => g.lr), [0.5, 1e-3], 'a group\'s own lr, the defaults elsewhere');
  opt.lr = 0.2;
  t.deepEqual(opt.paramGroups.map((g) => g.lr), [0.2, 0.2]);
  opt.paramGroups[1]!.lr = NaN;
  q.grad = tensor([1]);
  t.throws(() => opt.step(), { message: /Adam: lr must be a finite non-negative number, got NaN/ });
  const lin = new nn.Linear(2, 1);
  const adamw = new AdamW(lin.parameters());
  t.throws(() => adamw.addParamGroup({ params: [lin.weight] }), { message: /appear more than once/ });
  const extra = tensor([1, 1], { requiresGrad: true });
  adamw.addParamGroup({ params: [extra], lr: 0.5, weightDecay: 0 });
  t.deepEqual(adamw.paramGroups.map((g) => [g.lr, g.weightDecay]), [[1e-3, 1e-2], [0.5, 0]], 'AdamW\'s defaults, the new group\'s own');
  t.is(adamw.params.length, 3);
  extra.grad = tensor([1, -1]);
  adamw.step();
  close(t, values(extra), [0.5, 1.5], 'the added group steps with its own lr (first Adam step: lr * sign(g))', 0, 1e-6);
});

test('loadStateDict: mismatches are named and change nothing', (t) => {
  const p = tensor([1, 2, 3], { requiresGrad: true });
  const q = tensor([1], { requiresGrad: true });
  const opt = new Adam([p, q], { lr: 0.1 });
  p.grad = tensor([1, 1, 1]);
  q.grad = tensor([1]);
  opt.step();
  const sd = opt.stateDict();
  const other = new Adam([tensor([1, 2], { requiresGrad: true }), tensor([1], { requiresGrad: true })]);
  t.throws(() => other.loadStateDict(sd), { message: /Adam.loadStateDict: state\[0\].exp_avg has shape \[3\], its parameter has shape \[2\]/ });
  t.throws(() => new Adam([{ params: [p] }, { params: [q] }]).loadStateDict(sd),
    { message: /the state dict has 1 parameter groups, the optimizer 2/ });
  t.throws(() => new Adam([p]).loadStateDict(sd), { message: /parameter group 0 has 2 parameters in the state dict, 1 in the optimizer/ });
  t.throws(() => new Adam([p, q]).loadStateDict({ ...sd, state: { 0: { ...sd.state[0], momentum_buffer: null } } }),
    { message: /unknown Adam state 'momentum_buffer'/ });
  t.throws(() => new Adam([p, q]).loadStateDict({ ...sd, state: { 5: sd.state[0]! } }), { message: /state\[5\] names no parameter/ });
  const sgd = new SGD([p, q], { lr: 0.1 });
  const ssd = sgd.stateDict();
  ssd.param_groups[0]!.maximize = true;
  t.throws(() => sgd.loadStateDict(ssd), { message: /asks for maximize = true, which this SGD does not implement/ });
  const fresh = new Adam([p, q], { lr: 0.3 });
  t.throws(() => fresh.loadStateDict({ ...sd, param_groups: [{ ...sd.param_groups[0]!, eps: -1 }] }), { message: /eps must be/ });
  t.is(fresh.lr, 0.3, 'a refused state dict changes nothing');
  t.deepEqual(fresh.stateDict().state, {});
});

test('channels-last parameters: the state follows their storage order; the result is the row-major run\'s', (t) => {
  const data = Float32Array.from({ length: 24 }, (_, i) => Math.sin(i + 1));
  const grads = [0, 1, 2].map((s) => Float32Array.from({ length: 24 }, (_, i) => Math.cos(3 * i + s)));
  const run = (channelsLast: boolean) => {
    const base = tensor(data, { shape: [2, 3, 2, 2] });
    const p = (channelsLast ? base.contiguous('channelsLast') : base.clone()).detach().keep();
    p.requiresGrad = true;
    const opts = [new AdamW([p], { lr: 0.1, amsgrad: true }), new SGD([p], { lr: 0.1, momentum: 0.9 })];
    for (const [s, g] of grads.entries()) {
      const gt = tensor(g, { shape: [2, 3, 2, 2] });
      // the third gradient arrives row-major on a channels-last parameter: moved to its order
      p.grad = channelsLast && s < 2 ? gt.contiguous('channelsLast') : gt;
      for (const o of opts) o.step();
    }
    const adamState = opts[0]!.stateDict().state[0]!;
    return { p: values(p), m: values(adamState.exp_avg as Tensor), v: values(adamState.max_exp_avg_sq as Tensor),
      buf: values(opts[1]!.stateDict().state[0]!.momentum_buffer as Tensor), fmt: (adamState.exp_avg as Tensor).memoryFormat };
  };
  const rm = run(false);
  const cl = run(true);
  t.is(cl.fmt, 'channelsLast');
  t.deepEqual(cl.p, rm.p);
  t.deepEqual(cl.m, rm.m);
  t.deepEqual(cl.v, rm.v);
  t.deepEqual(cl.buf, rm.buf);
});
