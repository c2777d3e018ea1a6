#!/usr/bin/python3
"""Golden fixtures for @bagua/core's optim: fixtures/optim.json, from PyTorch (Debian's python3-torch).

Run from anywhere:  /usr/bin/python3 tools/gen-optim-fixtures.py
Deterministic (fixed seeds, one thread): rerunning gives an identical file.

What it holds
-------------
"params":  three float32 parameters (shapes [2,3], [4], [1]) and "grads": 20 steps of
           random gradients for them; the third has a gradient on even steps only (null
           otherwise), so its per-parameter step count lags the others (Adam's bias
           corrections use each parameter's own count).
"optimizers": one case per optimizer and option combination. Each runs torch.optim's
           SGD / Adam / AdamW (PyTorch 1.13, foreach=False, float32) from "params" over the
           20 steps of "grads":
             name, optimizer, options (camelCase: lr, momentum, dampening, weightDecay,
             nesterov, betas, eps, amsgrad, maximize; absent = PyTorch's default),
             groups: null, or [{params: [indices], options: {...}}] (parameter groups),
             scheduler: null, or a scheduler case's spec (below) stepped after each step,
             steps: [[Tensor per parameter] after each step] (float32 PyTorch),
             stateDict10 / stateDict20: optimizer.state_dict() after steps 10 and 20, tensors
               as Tensor JSON, `step` as a number, state keys as strings,
             drift: worst |torch32 - torch64| / (1e-6 + 1e-5 |torch64|) over all steps, where
               torch64 is the same run in float64 from the same float32 inputs: how far float32
               rounding alone moves PyTorch's own result (the tests' tolerance is set from it).
"schedulers": one case per scheduler and options, on SGD(momentum=0.9) (or Adam when
           "optimizer": "Adam") with two groups, lr 0.1 and 0.05:
             name, scheduler (StepLR, MultiStepLR, CosineAnnealingLR, LinearLR, LambdaLR,
             OneCycleLR), args (camelCase options; LambdaLR's lambdas by name:
             "pow0.95" = 0.95 ** e, "inv" = 1 / (e + 1), "step10" = 0.1 ** (e // 10)),
             epochs: null (step() 29 times) or a list (step(epoch) each: the closed form),
             lrs: [[lr per group]] after construction then after each step,
             momenta: OneCycleLR only: [[momentum or beta1 per group]] likewise,
             stateDict: the scheduler's state_dict() after the last step (JSON-able keys),
             groupKeys: the optimizer's param_groups[0] keys after the last step.
"clip":    clip_grad_norm_ over "params" with the gradients "clipGrads" (the fourth parameter,
           index 3, has none): name, maxNorm, normType (a number, or "inf"), totalNorm,
           grads (after clipping, per parameter with a gradient).
Tensors: {"shape": [...], "data": [...]} with every value a float32 written in its shortest
round-tripping decimal (Math.fround(x) gives it back exactly).
"""
import json
import math
import os
import warnings

import numpy as np
import torch

torch.set_num_threads(1)
warnings.filterwarnings('ignore')  # step(epoch) is deprecated in PyTorch; its closed form is what we test

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'fixtures', 'optim.json')
STEPS = 20
SHAPES = [(2, 3), (4,), (1,)]


def f32list(t):
    return [float(str(np.float32(v))) for v in t.detach().double().reshape(-1).tolist()]


def enc(t):
    return {'shape': list(t.shape), 'data': f32list(t.float())}


gen = torch.Generator().manual_seed(1234)
PARAMS = [torch.randn(s, generator=gen) for s in SHAPES]
GRADS = [[torch.randn(s, generator=gen) if (i < 2 or step % 2 == 0) else None for i, s in enumerate(SHAPES)]
         for step in range(STEPS)]

TORCH_KEYS = {'lr': 'lr', 'momentum': 'momentum', 'dampening': 'dampening', 'weightDecay': 'weight_decay',
              'nesterov': 'nesterov', 'betas': 'betas', 'eps': 'eps', 'amsgrad': 'amsgrad', 'maximize': 'maximize'}
OPTIMIZERS = {'SGD': torch.optim.SGD, 'Adam': torch.optim.Adam, 'AdamW': torch.optim.AdamW}
LAMBDAS = {'pow0.95': lambda e: 0.95 ** e, 'inv': lambda e: 1 / (e + 1), 'step10': lambda e: 0.1 ** (e // 10)}


def torch_opts(o):
    return {TORCH_KEYS[k]: (tuple(v) if k == 'betas' else v) for k, v in o.items()}


def make_scheduler(opt, spec):
    a = dict(spec['args'])
    kind = spec['scheduler']
    if kind == 'StepLR':
        return torch.optim.lr_scheduler.StepLR(opt, a.pop('stepSize'), **{'gamma': a['gamma']} if 'gamma' in a else {})
    if kind == 'MultiStepLR':
        return torch.optim.lr_scheduler.MultiStepLR(opt, a['milestones'], **{'gamma': a['gamma']} if 'gamma' in a else {})
    if kind == 'CosineAnnealingLR':
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, a['tMax'], **{'eta_min': a['etaMin']} if 'etaMin' in a else {})
    if kind == 'LinearLR':
        m = {'startFactor': 'start_factor', 'endFactor': 'end_factor', 'totalIters': 'total_iters'}
        return torch.optim.lr_scheduler.LinearLR(opt, **{m[k]: v for k, v in a.items()})
    if kind == 'LambdaLR':
        fns = [LAMBDAS[n] for n in a['lambdas']]
        return torch.optim.lr_scheduler.LambdaLR(opt, fns if len(fns) > 1 else fns[0])
    if kind == 'OneCycleLR':
        m = {'totalSteps': 'total_steps', 'epochs': 'epochs', 'stepsPerEpoch': 'steps_per_epoch', 'pctStart': 'pct_start',
             'annealStrategy': 'anneal_strategy', 'cycleMomentum': 'cycle_momentum', 'baseMomentum': 'base_momentum',
             'maxMomentum': 'max_momentum', 'divFactor': 'div_factor', 'finalDivFactor': 'final_div_factor',
             'threePhase': 'three_phase'}
        return torch.optim.lr_scheduler.OneCycleLR(opt, a['maxLr'], **{m[k]: v for k, v in a.items() if k != 'maxLr'})
    raise ValueError(kind)


def jsonable(v):
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 and v.dim() == 0 else enc(v)
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return v


def encode_state_dict(sd):
    return {'state': {str(i): {k: (v.item() if k == 'step' else (None if v is None else enc(v))) for k, v in s.items()}
                      for i, s in sd['state'].items()},
            'param_groups': [jsonable(g) for g in sd['param_groups']]}


def run_optimizer(case, dtype):
    params = [p.clone().to(dtype).requires_grad_() for p in PARAMS]
    cls = OPTIMIZERS[case['optimizer']]
    if case['groups'] is None:
        opt = cls(params, **torch_opts(case['options']))
    else:
        opt = cls([dict(params=[params[i] for i in g['params']], **torch_opts(g['options'])) for g in case['groups']],
                  **torch_opts(case['options']))
    sched = make_scheduler(opt, case['scheduler']) if case['scheduler'] else None
    steps, sds = [], {}
    for step in range(STEPS):
        for p, g in zip(params, GRADS[step]):
            p.grad = None if g is None else g.clone().to(dtype)
        opt.step()
        if sched:
            sched.step()
        steps.append([p.detach().clone() for p in params])
        if step + 1 in (10, 20):
            sds[step + 1] = encode_state_dict(opt.state_dict())
    return steps, sds


def worst_ratio(got, ref):
    return max(((got.double() - ref).abs() / (1e-6 + 1e-5 * ref.abs())).max().item() for got, ref in zip(got, ref))


def optimizer_cases():
    cases = []
    sgd = [('plain', {'lr': 0.1}), ('weight_decay', {'lr': 0.1, 'weightDecay': 0.1}),
           ('momentum', {'lr': 0.1, 'momentum': 0.9}),
           ('momentum_dampening_wd', {'lr': 0.1, 'momentum': 0.9, 'dampening': 0.5, 'weightDecay': 0.05}),
           ('nesterov', {'lr': 0.1, 'momentum': 0.9, 'nesterov': True}),
           ('nesterov_wd', {'lr': 0.1, 'momentum': 0.9, 'nesterov': True, 'weightDecay': 0.1})]
    for n, o in sgd:
        cases.append({'name': f'SGD/{n}', 'optimizer': 'SGD', 'options': o, 'groups': None, 'scheduler': None})
    cases.append({'name': 'SGD/groups', 'optimizer': 'SGD', 'options': {'lr': 0.1, 'momentum': 0.9},
                  'groups': [{'params': [0, 1], 'options': {'lr': 0.05, 'momentum': 0.5}}, {'params': [2], 'options': {}}],
                  'scheduler': None})
    for kind in ('Adam', 'AdamW'):
        cases.append({'name': f'{kind}/defaults', 'optimizer': kind, 'options': {}, 'groups': None, 'scheduler': None})
        for ams in (False, True):
            for wd in (0.0, 0.1):
                for mx in (False, True):
                    o = {'lr': 0.01, 'weightDecay': wd, 'amsgrad': ams, 'maximize': mx}
                    n = f'{kind}/lr0.01_wd{wd}' + ('_amsgrad' if ams else '') + ('_maximize' if mx else '')
                    cases.append({'name': n, 'optimizer': kind, 'options': o, 'groups': None, 'scheduler': None})
        cases.append({'name': f'{kind}/betas_eps', 'optimizer': kind,
                      'options': {'lr': 0.05, 'betas': [0.5, 0.9], 'eps': 1e-3, 'weightDecay': 0.2}, 'groups': None,
                      'scheduler': None})
        cases.append({'name': f'{kind}/groups', 'optimizer': kind, 'options': {'lr': 0.01, 'amsgrad': True},
                      'groups': [{'params': [0, 1], 'options': {'lr': 0.03, 'betas': [0.8, 0.99], 'weightDecay': 0.3}},
                                 {'params': [2], 'options': {'amsgrad': False}}],
                      'scheduler': None})
    cases.append({'name': 'AdamW/onecycle', 'optimizer': 'AdamW', 'options': {'lr': 0.01}, 'groups': None,
                  'scheduler': {'scheduler': 'OneCycleLR', 'args': {'maxLr': 0.05, 'totalSteps': STEPS}}})
    cases.append({'name': 'SGD/cosine', 'optimizer': 'SGD', 'options': {'lr': 0.1, 'momentum': 0.9}, 'groups': None,
                  'scheduler': {'scheduler': 'CosineAnnealingLR', 'args': {'tMax': 8}}})
    out = []
    for c in cases:
        s32, sd = run_optimizer(c, torch.float32)
        s64, _ = run_optimizer(c, torch.float64)
        drift = max(worst_ratio(a, b) for a, b in zip(s32, s64))
        out.append(dict(c, steps=[[enc(p) for p in ps] for ps in s32], stateDict10=sd[10], stateDict20=sd[20],
                        drift=drift))
        print(f'{c["name"]:<40} torch32 drift from torch64: {drift:.3f} of (1e-5 rel + 1e-6 abs)')
    return out


def scheduler_cases():
    specs = [
        ('StepLR/3', 'StepLR', {'stepSize': 3}, None, None),
        ('StepLR/5_gamma0.5', 'StepLR', {'stepSize': 5, 'gamma': 0.5}, None, None),
        ('MultiStepLR/repeated', 'MultiStepLR', {'milestones': [2, 5, 5, 9], 'gamma': 0.3}, None, None),
        ('CosineAnnealingLR/7', 'CosineAnnealingLR', {'tMax': 7}, None, None),
        ('CosineAnnealingLR/10_etaMin', 'CosineAnnealingLR', {'tMax': 10, 'etaMin': 0.001}, None, None),
        ('LinearLR/defaults', 'LinearLR', {}, None, None),
        ('LinearLR/down', 'LinearLR', {'startFactor': 1.0, 'endFactor': 0.1, 'totalIters': 8}, None, None),
        ('LambdaLR/one', 'LambdaLR', {'lambdas': ['pow0.95']}, None, None),
        ('LambdaLR/per_group', 'LambdaLR', {'lambdas': ['inv', 'step10']}, None, None),
        ('OneCycleLR/cos', 'OneCycleLR', {'maxLr': 1.0, 'totalSteps': 30}, None, None),
        ('OneCycleLR/linear_three_phase', 'OneCycleLR',
         {'maxLr': [1.0, 0.5], 'totalSteps': 30, 'annealStrategy': 'linear', 'threePhase': True, 'pctStart': 0.25,
          'divFactor': 10.0, 'finalDivFactor': 100.0, 'baseMomentum': 0.8, 'maxMomentum': [0.9, 0.99]}, None, None),
        ('OneCycleLR/epochs_no_momentum', 'OneCycleLR',
         {'maxLr': 0.5, 'epochs': 3, 'stepsPerEpoch': 10, 'cycleMomentum': False}, None, None),
        ('OneCycleLR/adam_betas', 'OneCycleLR', {'maxLr': 0.01, 'totalSteps': 30}, 'Adam', None),
        ('StepLR/closed_form', 'StepLR', {'stepSize': 3, 'gamma': 0.5}, None, [1, 2, 5, 3, 10, 11, 4]),
        ('MultiStepLR/closed_form', 'MultiStepLR', {'milestones': [2, 5, 5, 9], 'gamma': 0.3}, None, [1, 6, 3, 12, 5, 9]),
        ('CosineAnnealingLR/closed_form', 'CosineAnnealingLR', {'tMax': 10, 'etaMin': 0.01}, None, [1, 4, 2, 15, 10, 25]),
        ('LinearLR/closed_form', 'LinearLR', {'startFactor': 0.25, 'totalIters': 6}, None, [1, 3, 2, 8, 6]),
    ]
    out = []
    for name, kind, args, optname, closed in specs:
        a = torch.zeros(2, requires_grad=True)
        b = torch.zeros(3, requires_grad=True)
        if optname == 'Adam':
            opt = torch.optim.Adam([{'params': [a], 'lr': 0.1}, {'params': [b], 'lr': 0.05}])
        else:
            opt = torch.optim.SGD([{'params': [a], 'lr': 0.1}, {'params': [b], 'lr': 0.05}], lr=0.1, momentum=0.9)
        spec = {'scheduler': kind, 'args': args}
        sched = make_scheduler(opt, spec)
        mom = lambda: [g['betas'][0] if 'betas' in g else g['momentum'] for g in opt.param_groups]
        lrs, momenta = [[g['lr'] for g in opt.param_groups]], [mom()]
        for _ in range(0 if closed else 29):
            opt.step()
            sched.step()
            lrs.append([g['lr'] for g in opt.param_groups])
            momenta.append(mom())
        for e in closed or []:
            opt.step()
            sched.step(e)
            lrs.append([g['lr'] for g in opt.param_groups])
            momenta.append(mom())
        sd = {k: jsonable(v) for k, v in sched.state_dict().items() if k not in ('anneal_func', 'lr_lambdas')}
        out.append({'name': name, 'scheduler': kind, 'optimizer': optname or 'SGD', 'args': args, 'epochs': closed,
                    'lrs': lrs, 'momenta': momenta if kind == 'OneCycleLR' else None, 'stateDict': sd,
                    'groupKeys': sorted(k for k in opt.param_groups[0].keys() if k != 'params')})
    return out


def clip_cases():
    g = torch.Generator().manual_seed(99)
    shapes = [(2, 3), (4,), (1,), (2,)]
    params = [torch.randn(s, generator=g).requires_grad_() for s in shapes]
    grads = [torch.randn(s, generator=g) * 2 for s in shapes[:3]]
    out = []
    for nt in (2.0, 1.0, 'inf', 3.0, 0.5):
        for mn in (1.0, 100.0):
            for p, gr in zip(params, grads + [None]):
                p.grad = None if gr is None else gr.clone()
            total = torch.nn.utils.clip_grad_norm_(params, mn, float(nt) if nt != 'inf' else math.inf)
            out.append({'name': f'norm{nt}_max{mn}', 'maxNorm': mn, 'normType': nt, 'totalNorm': f32list(total)[0],
                        'grads': [enc(p.grad) for p in params[:3]]})
    return {'params': [enc(p) for p in params], 'grads': [enc(x) for x in grads], 'cases': out}


def main():
    opt = optimizer_cases()
    sch = scheduler_cases()
    clip = clip_cases()
    doc = {
        'format': 1, 'generator': 'tools/gen-optim-fixtures.py', 'torch': torch.__version__,
        'reference': 'PyTorch float32 (foreach=False), step by step',
        'steps': STEPS,
        'expectedCounts': {'optimizers': len(opt), 'schedulers': len(sch), 'clip': len(clip['cases'])},
        'params': [enc(p) for p in PARAMS],
        'grads': [[None if g is None else enc(g) for g in gs] for gs in GRADS],
        'optimizers': opt, 'schedulers': sch,
        'clipParams': clip['params'], 'clipGrads': clip['grads'], 'clip': clip['cases'],
    }
    with open(OUT, 'w') as f:
        json.dump(doc, f, separators=(',', ':'))
        f.write('\n')
    print(f'wrote {OUT}: {len(opt)} optimizer cases, {len(sch)} scheduler cases, {len(clip["cases"])} clip cases, '
          f'{os.path.getsize(OUT)} bytes')


if __name__ == '__main__':
    main()
