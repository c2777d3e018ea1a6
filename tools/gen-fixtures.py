#!/usr/bin/python3
"""Golden fixtures for bagua-ts, generated with PyTorch (Debian's python3-torch, CPU).

Run from anywhere:  /usr/bin/python3 tools/gen-fixtures.py
Writes fixtures/ops.json, fixtures/batchnorm.json and fixtures/train-cnn.json at the
repository root. Deterministic: fixed seeds, torch.set_num_threads(1), and the JSON is
written with sorted-free, stable ordering, so rerunning gives identical files.

How expected values are made
----------------------------
Every input is drawn in float32 (and stored as such). The expected outputs and
gradients are computed by PyTorch in float64 from those exact float32 inputs and then
rounded to float32: this is the correctly rounded answer, independent of any one
library's float32 summation order, so a float32 implementation is judged by its own
rounding error only. The script also runs the same computation in float32 PyTorch
and prints how far that lands from the reference ("torch32 worst"): that is the
error budget an honest float32 implementation needs, and the tests' tolerances are
set from it. Gradients are those of  L = sum(output * g)  for a fixed random g of
the output's shape ("gradOutput"), so no gradient is trivially all-ones.

JSON format (all files)
-----------------------
Tensor:   {"shape": [d0, d1, ...], "data": [flat row-major numbers]}
          plus "dtype": "int32" for integer tensors (class targets); float tensors
          have no dtype key and every number is a float32 value written as the
          repr of its exact float64 conversion, so Math.fround(x) === x in JS and
          the value round-trips bit-exactly. A 0-dim tensor has "shape": [].
Top level: {"format": 1, "generator": "tools/gen-fixtures.py", "torch": version,
            "reference": "float64 rounded to float32", "expectedCounts": {...},
            "cases" | sections...}

fixtures/ops.json
  "cases": [ {
     "name":  unique case name, e.g. "add/broadcast_3x1_1x4",
     "op":    the @bagua/core op: add sub mul div neg relu exp log sqrt matmul transpose
              reshape view flatten sum mean softmax logSoftmax linear conv2d maxPool2d
              avgPool2d adaptiveAvgPool2d mseLoss crossEntropy,
     "inputs": {argName: Tensor, ...} in call order (binary: a, b; unary: x;
              linear/conv2d: x, w, [b]; losses: input, target),
     "attrs":  op options in core's camelCase: scalar (binary op with a JS number
              as the second operand), dim0/dim1, shape, startDim/endDim, dims (null =
              all) / keepDim, dim, stride/padding/dilation/groups, kernelSize,
              countIncludePad, outputSize, reduction,
     "output": Tensor, "gradOutput": Tensor g,
     "grads":  {argName: Tensor} for every float input } ]
  "torch32Worst": {caseName: worst |torch32 - ref| / (1e-6 + 1e-5 |ref|)}

fixtures/batchnorm.json
  "modules": [ {
     "name", "module": "BatchNorm1d" | "BatchNorm2d" | "BatchNorm3d", "numFeatures",
     "options": {"eps", "momentum" (number | null), "affine", "trackRunningStats"},
     "initial": {"weight": Tensor | null, "bias": Tensor | null,
                 "runningMean": Tensor | null, "runningVar": Tensor | null,
                 "numBatchesTracked": int | null},
     "steps": [ {"training": bool, "input", "output", "gradOutput", "gradInput",
                 "gradWeight" | null, "gradBias" | null,
                 "runningMean" | null, "runningVar" | null,
                 "numBatchesTracked": int | null  (state after the step)} x 4 ]
     } ]   3 training steps (fresh inputs, grads zeroed before each) then 1 eval step.
  "functional": [ {"name", "inputs": {x, runningMean|null, runningVar|null,
                   weight|null, bias|null}, "training", "momentum", "eps",
                   "output", "gradOutput", "grads": {x, weight?, bias?},
                   "runningMean"|null, "runningVar"|null (after the call)} ]
  "primitives": {  (float64 from the definitions: 1.13 has these only on CUDA)
     "stats":  [ {"name", "x", "stats": Tensor [2C+1] = mean(C), biased var(C), count} ],
     "merge":  [ {"name", "rankInputs": [Tensor ...] (one may have batch 0),
                  "stats": Tensor [R, 2C+1] (an empty rank's row is all zeros),
                  "eps", "factor", "runningMean"|null, "runningVar"|null (before),
                  "mean", "invstd", "count" (global), "runningMeanAfter"|null,
                  "runningVarAfter"|null,  running = (1-f) running + f stat with the
                  unbiased variance from the global count} ],
     "elemt":  [ {"name", "x", "mean", "invstd", "weight"|null, "bias"|null, "output"} ],
     "backwardReduce": [ {"name", "dy", "x", "mean", "invstd", "needWeightGrad",
                  "sums": Tensor [2C] = sum_dy, sum_dy_xmu, "gradWeight"|null,
                  "gradBias"|null} ],
     "backwardElemt": [ {"name", "dy", "x", "mean", "invstd", "weight"|null,
                  "sums", "count", "gradInput"} ],
     "syncEmulation": [ {"name", "eps", "weight", "bias", "rankInputs", "rankGradOutputs",
                  "rankOutputs", "rankGradInputs", "gradWeight", "gradBias"} ]
       equals torch BatchNorm (training) over the concatenation of the ranks' batches.
  }

fixtures/train-cnn.json
  {"model": description, "loss": "CrossEntropyLoss",
   "optimizer": {"type": "SGD", "lr", "momentum", "weightDecay", "dampening", "nesterov"},
   "steps": 20, "input": Tensor [16,3,12,12], "target": int32 Tensor [16],
   "initialState": {key: Tensor}, "losses": [loss before each step's update],
   "finalState": {key: Tensor}, "torch32Drift": {"loss": .., "state": ..}}
  State-dict keys are core's: Sequential index + camelCase ("1.runningMean");
  numBatchesTracked is stored as a 0-dim tensor holding an integer count.
  The reference trajectory is computed in float64 from the float32 initial state.
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'fixtures')
RTOL, ATOL = 1e-5, 1e-6


# ---------------------------------------------------------------- encoding

def enc(t):
    """Tensor -> JSON; float values forced through float32 so they are exact f32s."""
    if t is None:
        return None
    t = t.detach().cpu()
    if t.dtype in (torch.int32, torch.int64):
        return {'shape': list(t.shape), 'dtype': 'int32', 'data': [int(v) for v in t.reshape(-1).tolist()]}
    data = t.to(torch.float32).reshape(-1).tolist()
    for v in data:
        if not math.isfinite(v):
            raise ValueError('non-finite value in fixture')
    return {'shape': list(t.shape), 'data': data}


def f32(shape, gen, kind='randn', lo=0.5, hi=1.5):
    """A float32 random tensor; 'pos' draws in [lo, hi), 'away' keeps |x| >= lo."""
    if kind == 'randn':
        return torch.randn(shape, generator=gen, dtype=torch.float32)
    u = torch.rand(shape, generator=gen, dtype=torch.float32)
    if kind == 'pos':
        return lo + (hi - lo) * u
    if kind == 'away':
        s = torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0)
        return (s * (lo + (hi - lo) * u)).to(torch.float32)
    raise ValueError(kind)


def worst_ratio(got, ref):
    """max |got-ref| / (ATOL + RTOL |ref|): > 1 means the default tolerance fails."""
    got = got.detach().double()
    ref = ref.detach().float().double()
    if got.numel() == 0:
        return 0.0
    return float(((got - ref).abs() / (ATOL + RTOL * ref.abs())).max())


def dump(name, obj):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name)
    with open(path, 'w') as fh:
        # allow_nan=False: a NaN sneaking into a fixture would make tests pass vacuously
        json.dump(obj, fh, allow_nan=False, separators=(',', ':'))
        fh.write('\n')
    print(f'wrote {path}: {os.path.getsize(path)} bytes')


def header(counts):
    return {'format': 1, 'generator': 'tools/gen-fixtures.py', 'torch': torch.__version__,
            'reference': 'float64 rounded to float32', 'expectedCounts': counts}


# ---------------------------------------------------------------- ops.json

def op_fn(op, attrs):
    """The torch equivalent of one core op, given core's attrs."""
    a = attrs
    pair = lambda v: tuple(v) if isinstance(v, list) else v
    if op in ('add', 'sub', 'mul', 'div'):
        f = {'add': torch.add, 'sub': torch.sub, 'mul': torch.mul, 'div': torch.div}[op]
        if 'scalar' in a:
            return lambda x: f(x, a['scalar'])
        return lambda x, y: f(x, y)
    if op in ('neg', 'relu', 'exp', 'log', 'sqrt'):
        return getattr(torch, op)
    if op == 'matmul':
        return torch.matmul
    if op == 'transpose':
        return lambda x: x.transpose(a['dim0'], a['dim1'])
    if op == 'reshape':
        return lambda x: x.reshape(a['shape'])
    if op == 'view':
        return lambda x: x.view(a['shape'])
    if op == 'flatten':
        return lambda x: x.flatten(a.get('startDim', 0), a.get('endDim', -1))
    if op in ('sum', 'mean'):
        def red(x):
            if a['dims'] is None:
                return x.sum() if op == 'sum' else x.mean()
            return getattr(x, op)(dim=a['dims'], keepdim=a['keepDim'])
        return red
    if op == 'softmax':
        return lambda x: torch.softmax(x, a['dim'])
    if op == 'logSoftmax':
        return lambda x: torch.log_softmax(x, a['dim'])
    if op == 'linear':
        return lambda x, w, b=None: F.linear(x, w, b)
    if op == 'conv2d':
        return lambda x, w, b=None: F.conv2d(x, w, b, stride=pair(a['stride']), padding=pair(a['padding']),
                                             dilation=pair(a['dilation']), groups=a['groups'])
    if op == 'maxPool2d':
        return lambda x: F.max_pool2d(x, pair(a['kernelSize']), stride=pair(a.get('stride', a['kernelSize'])),
                                      padding=pair(a.get('padding', 0)), dilation=pair(a.get('dilation', 1)))
    if op == 'avgPool2d':
        return lambda x: F.avg_pool2d(x, pair(a['kernelSize']), stride=pair(a.get('stride', a['kernelSize'])),
                                      padding=pair(a.get('padding', 0)),
                                      count_include_pad=a.get('countIncludePad', True))
    if op == 'adaptiveAvgPool2d':
        return lambda x: F.adaptive_avg_pool2d(x, pair(a['outputSize']))
    if op == 'mseLoss':
        return lambda x, t: F.mse_loss(x, t, reduction=a['reduction'])
    if op == 'crossEntropy':
        return lambda x, t: F.cross_entropy(x, t.long(), reduction=a['reduction'])
    raise ValueError(op)


def run_case(name, op, inputs, attrs, gen):
    """Reference (float64) and float32 runs of one op; returns the fixture case."""
    fn = op_fn(op, attrs)
    names = list(inputs)
    g = None
    results = {}
    for dt in (torch.float64, torch.float32):
        args = []
        for k in names:
            v = inputs[k]
            if v.is_floating_point():
                v = v.to(dt).clone().requires_grad_(True)
            args.append(v)
        out = fn(*args)
        if g is None:
            g = f32(list(out.shape), gen)
        (out * g.to(dt)).sum().backward()
        results[dt] = (out, {k: a.grad for k, a in zip(names, args) if a.is_floating_point()})
    out64, grads64 = results[torch.float64]
    out32, grads32 = results[torch.float32]
    worst = max([worst_ratio(out32, out64)] + [worst_ratio(grads32[k], grads64[k]) for k in grads64])
    case = {'name': name, 'op': op, 'inputs': {k: enc(v) for k, v in inputs.items()}, 'attrs': attrs,
            'output': enc(out64), 'gradOutput': enc(g), 'grads': {k: enc(v) for k, v in grads64.items()}}
    return case, worst


def gen_ops():
    gen = torch.Generator().manual_seed(1234)
    specs = []  # (name, op, inputs, attrs)

    for op in ('add', 'sub', 'mul', 'div'):
        # div keeps its denominators away from 0 so the gradient stays well conditioned
        bk = 'away' if op == 'div' else 'randn'
        specs += [
            (f'{op}/same_2x3', op, {'a': f32([2, 3], gen), 'b': f32([2, 3], gen, bk)}, {}),
            (f'{op}/broadcast_3x1_1x4', op, {'a': f32([3, 1], gen), 'b': f32([1, 4], gen, bk)}, {}),
            (f'{op}/broadcast_2x3x4_4', op, {'a': f32([2, 3, 4], gen), 'b': f32([4], gen, bk)}, {}),
            (f'{op}/broadcast_4_2x3x4', op, {'a': f32([4], gen), 'b': f32([2, 3, 4], gen, bk)}, {}),
            (f'{op}/scalar_number', op, {'a': f32([2, 3], gen)}, {'scalar': -1.75 if op != 'div' else 2.5}),
            (f'{op}/scalar_0d_tensor', op, {'a': f32([3, 2], gen), 'b': f32([], gen, bk)}, {}),
        ]

    specs += [
        ('neg/3x4', 'neg', {'x': f32([3, 4], gen)}, {}),
        ('relu/3x4', 'relu', {'x': f32([3, 4], gen, 'away', 0.05, 2.0)}, {}),  # no exact zeros: relu'(0) is a convention
        ('exp/3x4', 'exp', {'x': f32([3, 4], gen)}, {}),
        ('log/3x4', 'log', {'x': f32([3, 4], gen, 'pos', 0.2, 3.0)}, {}),
        ('sqrt/3x4', 'sqrt', {'x': f32([3, 4], gen, 'pos', 0.2, 3.0)}, {}),

        ('matmul/2d_3x4_4x5', 'matmul', {'a': f32([3, 4], gen), 'b': f32([4, 5], gen)}, {}),
        ('matmul/batched_2x3x4_2x4x5', 'matmul', {'a': f32([2, 3, 4], gen), 'b': f32([2, 4, 5], gen)}, {}),

        ('transpose/2x3x4_0_2', 'transpose', {'x': f32([2, 3, 4], gen)}, {'dim0': 0, 'dim1': 2}),
        ('transpose/2x3x4_1_neg1', 'transpose', {'x': f32([2, 3, 4], gen)}, {'dim0': 1, 'dim1': -1}),
        ('transpose/3x5_0_1', 'transpose', {'x': f32([3, 5], gen)}, {'dim0': 0, 'dim1': 1}),

        ('reshape/2x3x4_to_6x4', 'reshape', {'x': f32([2, 3, 4], gen)}, {'shape': [6, 4]}),
        ('reshape/2x3x4_to_4x-1', 'reshape', {'x': f32([2, 3, 4], gen)}, {'shape': [4, -1]}),
        ('view/2x3x4_to_-1x2x2', 'view', {'x': f32([2, 3, 4], gen)}, {'shape': [-1, 2, 2]}),
        ('flatten/2x3x4_all', 'flatten', {'x': f32([2, 3, 4], gen)}, {}),
        ('flatten/2x3x4x2_start1', 'flatten', {'x': f32([2, 3, 4, 2], gen)}, {'startDim': 1}),
        ('flatten/2x3x4x2_1_2', 'flatten', {'x': f32([2, 3, 4, 2], gen)}, {'startDim': 1, 'endDim': 2}),
    ]

    for op in ('sum', 'mean'):
        for dims, keep, tag in ((None, False, 'all'), (1, False, 'dim1'), (1, True, 'dim1_keep'),
                                ([0, 2], False, 'dims0_2'), ([0, 2], True, 'dims0_2_keep'),
                                (-1, False, 'dim_neg1')):
            specs.append((f'{op}/2x3x4_{tag}', op, {'x': f32([2, 3, 4], gen)}, {'dims': dims, 'keepDim': keep}))

    for op in ('softmax', 'logSoftmax'):
        for dim in (-1, 1):
            specs.append((f'{op}/2x3x4_dim{dim}', op, {'x': f32([2, 3, 4], gen) * 2}, {'dim': dim}))

    specs += [
        ('linear/bias_4x5_3', 'linear', {'x': f32([4, 5], gen), 'w': f32([3, 5], gen), 'b': f32([3], gen)}, {}),
        ('linear/nobias_4x5_3', 'linear', {'x': f32([4, 5], gen), 'w': f32([3, 5], gen)}, {}),
        ('linear/3d_2x4x5_3', 'linear', {'x': f32([2, 4, 5], gen), 'w': f32([3, 5], gen), 'b': f32([3], gen)}, {}),
    ]

    conv = [  # (tag, C_in, C_out, kernel, stride, padding, dilation, groups, bias)
        ('k3_s1_p0_bias', 4, 6, 3, 1, 0, 1, 1, True),
        ('k3_s2_p1_nobias', 4, 6, 3, 2, 1, 1, 1, False),
        ('k3_d2_p2_bias', 4, 6, 3, 1, 2, 2, 1, True),
        ('k3_g2_p1_bias', 4, 6, 3, 1, 1, 1, 2, True),
        ('depthwise_k3_s2_g4_nobias', 4, 4, 3, 2, 1, 1, 4, False),
        ('k1_bias', 4, 5, 1, 1, 0, 1, 1, True),
        ('rect_k3x2_s2x1_p1x0_d1x2_bias', 4, 6, [3, 2], [2, 1], [1, 0], [1, 2], 1, True),
    ]
    for tag, cin, cout, k, s, p, d, grp, bias in conv:
        kh, kw = (k, k) if isinstance(k, int) else k
        inp = {'x': f32([2, cin, 7, 7], gen), 'w': f32([cout, cin // grp, kh, kw], gen) * 0.5}
        if bias:
            inp['b'] = f32([cout], gen)
        specs.append((f'conv2d/{tag}', 'conv2d', inp, {'stride': s, 'padding': p, 'dilation': d, 'groups': grp}))

    for tag, attrs in (('k2', {'kernelSize': 2}),
                       ('k3_s2_p1', {'kernelSize': 3, 'stride': 2, 'padding': 1}),
                       ('k3x2_s2x1_p1x0', {'kernelSize': [3, 2], 'stride': [2, 1], 'padding': [1, 0]}),
                       ('k2_s1_d2', {'kernelSize': 2, 'stride': 1, 'dilation': 2})):
        specs.append((f'maxPool2d/{tag}', 'maxPool2d', {'x': f32([2, 3, 7, 7], gen)}, attrs))

    for tag, attrs in (('k2', {'kernelSize': 2}),
                       ('k3_s2_p1_include', {'kernelSize': 3, 'stride': 2, 'padding': 1, 'countIncludePad': True}),
                       ('k3_s2_p1_exclude', {'kernelSize': 3, 'stride': 2, 'padding': 1, 'countIncludePad': False}),
                       ('k3x2_s2x1_p1x1_exclude', {'kernelSize': [3, 2], 'stride': [2, 1], 'padding': [1, 1],
                                                   'countIncludePad': False})):
        specs.append((f'avgPool2d/{tag}', 'avgPool2d', {'x': f32([2, 3, 7, 7], gen)}, attrs))

    for tag, size in (('to1', 1), ('to_1x1', [1, 1]), ('7x7_to_3x2', [3, 2]), ('7x7_to4', 4)):
        specs.append((f'adaptiveAvgPool2d/{tag}', 'adaptiveAvgPool2d', {'x': f32([2, 3, 7, 7], gen)},
                      {'outputSize': size}))

    for red in ('mean', 'sum', 'none'):
        specs.append((f'mseLoss/{red}', 'mseLoss', {'input': f32([4, 5], gen), 'target': f32([4, 5], gen)},
                      {'reduction': red}))
    for red in ('mean', 'sum'):
        tgt = torch.randint(0, 5, [6], generator=gen, dtype=torch.int64).to(torch.int32)
        specs.append((f'crossEntropy/{red}', 'crossEntropy', {'input': f32([6, 5], gen) * 2, 'target': tgt},
                      {'reduction': red}))

    cases, worst = [], {}
    for name, op, inputs, attrs in specs:
        # multiplications above (e.g. * 0.5) keep float32; make sure nothing became float64
        inputs = {k: (v.to(torch.float32) if v.is_floating_point() else v) for k, v in inputs.items()}
        case, w = run_case(name, op, inputs, attrs, gen)
        cases.append(case)
        worst[name] = w
    names = [c['name'] for c in cases]
    assert len(set(names)) == len(names), 'duplicate case names'
    by_op = {}
    for c in cases:
        by_op[c['op']] = by_op.get(c['op'], 0) + 1
    out = header({'cases': len(cases), 'byOp': by_op})
    out['cases'] = cases
    out['torch32Worst'] = worst
    dump('ops.json', out)
    bad = {k: v for k, v in worst.items() if v > 1}
    print(f'ops: {len(cases)} cases; torch32 worst ratio {max(worst.values()):.3g}; over 1: {bad}')


# ---------------------------------------------------------------- batchnorm.json

BN_SHAPES = {  # (module, tag, input shape); C = 3 everywhere
    ('BatchNorm1d', '2d', (6, 3)),
    ('BatchNorm1d', '3d', (4, 3, 5)),
    ('BatchNorm2d', '4d', (3, 3, 4, 4)),
    ('BatchNorm3d', '5d', (2, 3, 2, 3, 3)),
}


def bn_module_cases(gen):
    cases = []
    worst = 0.0
    for mod_name, tag, shape in sorted(BN_SHAPES):
        for affine in (True, False):
            for track in (True, False):
                for momentum in (0.1, None):
                    c = shape[1]
                    m64 = getattr(nn, mod_name)(c, eps=1e-5, momentum=momentum, affine=affine,
                                                track_running_stats=track).double()
                    if affine:
                        with torch.no_grad():
                            m64.weight.copy_(f32([c], gen, 'pos', 0.5, 1.5).double())
                            m64.bias.copy_(f32([c], gen).double())
                    if track:
                        # non-default running stats, so eval and the momentum update are exercised
                        with torch.no_grad():
                            m64.running_mean.copy_(f32([c], gen).double() * 0.1)
                            m64.running_var.copy_(f32([c], gen, 'pos', 0.8, 1.2).double())
                    m32 = getattr(nn, mod_name)(c, eps=1e-5, momentum=momentum, affine=affine,
                                                track_running_stats=track)
                    m32.load_state_dict({k: v.to(v.dtype if k.endswith('num_batches_tracked') else torch.float32)
                                         for k, v in m64.state_dict().items()})
                    initial = {
                        'weight': enc(m64.weight) if affine else None,
                        'bias': enc(m64.bias) if affine else None,
                        'runningMean': enc(m64.running_mean) if track else None,
                        'runningVar': enc(m64.running_var) if track else None,
                        'numBatchesTracked': int(m64.num_batches_tracked) if track else None,
                    }
                    steps = []
                    for step in range(4):
                        training = step < 3
                        m64.train(training)
                        m32.train(training)
                        # a shifted, scaled input: the mean/var are far from 0/1
                        x = (f32(list(shape), gen) * 1.7 + 0.6).to(torch.float32)
                        g = f32(list(shape), gen)
                        rec = {}
                        for m, dt in ((m64, torch.float64), (m32, torch.float32)):
                            m.zero_grad(set_to_none=True)
                            xi = x.to(dt).clone().requires_grad_(True)
                            y = m(xi)
                            (y * g.to(dt)).sum().backward()
                            rec[dt] = (y, xi.grad, m.weight.grad if affine else None,
                                       m.bias.grad if affine else None)
                        y, gx, gw, gb = rec[torch.float64]
                        y3, gx3, gw3, gb3 = rec[torch.float32]
                        worst = max(worst, worst_ratio(y3, y), worst_ratio(gx3, gx))
                        if affine:
                            worst = max(worst, worst_ratio(gw3, gw), worst_ratio(gb3, gb))
                        steps.append({
                            'training': training, 'input': enc(x), 'output': enc(y), 'gradOutput': enc(g),
                            'gradInput': enc(gx), 'gradWeight': enc(gw), 'gradBias': enc(gb),
                            'runningMean': enc(m64.running_mean) if track else None,
                            'runningVar': enc(m64.running_var) if track else None,
                            'numBatchesTracked': int(m64.num_batches_tracked) if track else None,
                        })
                    mom = 'None' if momentum is None else str(momentum)
                    cases.append({
                        'name': f'{mod_name}/{tag}/affine={affine}/track={track}/momentum={mom}',
                        'module': mod_name, 'numFeatures': c,
                        'options': {'eps': 1e-5, 'momentum': momentum, 'affine': affine, 'trackRunningStats': track},
                        'initial': initial, 'steps': steps})
    return cases, worst


def bn_functional_cases(gen):
    cases = []
    for name, training, with_running, affine in (
            ('training_running_affine', True, True, True),
            ('training_norunning_affine', True, False, True),
            ('training_norunning_noaffine', True, False, False),
            ('eval_running_affine', False, True, True)):
        c = 3
        x = (f32([4, c, 3, 2], gen) * 1.3 - 0.4).to(torch.float32)
        rm = f32([c], gen) * 0.2 if with_running else None
        rv = f32([c], gen, 'pos', 0.7, 1.3) if with_running else None
        w = f32([c], gen, 'pos', 0.5, 1.5) if affine else None
        b = f32([c], gen) if affine else None
        g = f32(list(x.shape), gen)
        xi = x.double().requires_grad_(True)
        wi = w.double().requires_grad_(True) if affine else None
        bi = b.double().requires_grad_(True) if affine else None
        rmi = rm.double().clone() if with_running else None
        rvi = rv.double().clone() if with_running else None
        y = F.batch_norm(xi, rmi, rvi, wi, bi, training=training, momentum=0.1, eps=1e-5)
        (y * g.double()).sum().backward()
        grads = {'x': enc(xi.grad)}
        if affine:
            grads['weight'] = enc(wi.grad)
            grads['bias'] = enc(bi.grad)
        cases.append({'name': f'batchNorm/{name}', 'training': training, 'momentum': 0.1, 'eps': 1e-5,
                      'inputs': {'x': enc(x), 'runningMean': enc(rm), 'runningVar': enc(rv),
                                 'weight': enc(w), 'bias': enc(b)},
                      'output': enc(y), 'gradOutput': enc(g), 'grads': grads,
                      'runningMean': enc(rmi), 'runningVar': enc(rvi)})
    return cases


def stats64(x):
    """[2C+1]: per-channel mean, biased var, count (float64, from the definition)."""
    c = x.shape[1]
    xc = x.double().transpose(0, 1).reshape(c, -1)
    n = xc.shape[1]
    if n == 0:
        return torch.zeros(2 * c + 1, dtype=torch.float64)
    mean = xc.mean(1)
    var = ((xc - mean[:, None]) ** 2).mean(1)
    return torch.cat([mean, var, torch.tensor([float(n)], dtype=torch.float64)])


def chan_shape(c, ndim):
    return [1, c] + [1] * (ndim - 2)


def bn_primitives(gen):
    c = 3
    prim = {'stats': [], 'merge': [], 'elemt': [], 'backwardReduce': [], 'backwardElemt': [], 'syncEmulation': []}

    for tag, shape in (('2d_5x3', [5, c]), ('3d_2x3x4', [2, c, 4]), ('4d_2x3x3x4', [2, c, 3, 4]),
                       ('4d_batch1_1x3x2x2', [1, c, 2, 2])):
        x = (f32(shape, gen) * 2 + 1).to(torch.float32)
        prim['stats'].append({'name': f'batchNormStats/{tag}', 'x': enc(x), 'stats': enc(stats64(x))})

    for tag, sizes, with_running, factor in (('3ranks_empty_middle', [4, 0, 3], True, 0.1),
                                             ('3ranks_empty_first_norunning', [0, 2, 5], False, 0.1),
                                             ('3ranks_uneven_factor_1_over_3', [1, 3, 2], True, 1.0 / 3.0)):
        xs = [(f32([n, c, 2, 3], gen) * 1.5 + 0.5).to(torch.float32) for n in sizes]
        rows = torch.stack([stats64(x) for x in xs])
        allx = torch.cat(xs).double()
        st = stats64(allx)
        mean, var, n = st[:c], st[c:2 * c], float(st[2 * c])
        eps = 1e-5
        rm = f32([c], gen) * 0.1 if with_running else None
        rv = f32([c], gen, 'pos', 0.8, 1.2) if with_running else None
        case = {'name': f'batchNormMergeStats/{tag}', 'rankInputs': [enc(x) for x in xs], 'stats': enc(rows),
                'eps': eps, 'factor': factor, 'runningMean': enc(rm), 'runningVar': enc(rv),
                'mean': enc(mean), 'invstd': enc(1.0 / torch.sqrt(var + eps)), 'count': n,
                'runningMeanAfter': None, 'runningVarAfter': None}
        if with_running:
            case['runningMeanAfter'] = enc((1 - factor) * rm.double() + factor * mean)
            case['runningVarAfter'] = enc((1 - factor) * rv.double() + factor * var * n / (n - 1))
        prim['merge'].append(case)

    for tag, shape, affine in (('4d_affine', [2, c, 3, 2], True), ('2d_noaffine', [5, c], False),
                               ('3d_affine', [2, c, 4], True)):
        x = (f32(shape, gen) * 1.5 + 0.3).to(torch.float32)
        mean = f32([c], gen) * 0.5
        invstd = f32([c], gen, 'pos', 0.5, 2.0)
        w = f32([c], gen, 'pos', 0.5, 1.5) if affine else None
        b = f32([c], gen) if affine else None
        cs = chan_shape(c, len(shape))
        y = (x.double() - mean.double().view(cs)) * invstd.double().view(cs)
        if affine:
            y = y * w.double().view(cs) + b.double().view(cs)
        prim['elemt'].append({'name': f'batchNormElemt/{tag}', 'x': enc(x), 'mean': enc(mean), 'invstd': enc(invstd),
                              'weight': enc(w), 'bias': enc(b), 'output': enc(y)})

    for tag, shape, need in (('4d_weightgrad', [2, c, 3, 2], True), ('2d_noweightgrad', [5, c], False),
                             ('3d_weightgrad', [2, c, 4], True)):
        x = (f32(shape, gen) * 1.5 + 0.3).to(torch.float32)
        dy = f32(shape, gen)
        mean = f32([c], gen) * 0.5
        invstd = f32([c], gen, 'pos', 0.5, 2.0)
        cs = chan_shape(c, len(shape))
        dims = [0] + list(range(2, len(shape)))
        sum_dy = dy.double().sum(dims)
        sum_dy_xmu = (dy.double() * (x.double() - mean.double().view(cs))).sum(dims)
        prim['backwardReduce'].append({
            'name': f'batchNormBackwardReduce/{tag}', 'dy': enc(dy), 'x': enc(x), 'mean': enc(mean),
            'invstd': enc(invstd), 'needWeightGrad': need, 'sums': enc(torch.cat([sum_dy, sum_dy_xmu])),
            'gradWeight': enc(sum_dy_xmu * invstd.double()) if need else None,
            'gradBias': enc(sum_dy) if need else None})

    for tag, shape, affine, count in (('4d_affine_count24', [2, c, 3, 2], True, 24.0),
                                      ('2d_noaffine_count11', [5, c], False, 11.0)):
        x = (f32(shape, gen) * 1.5 + 0.3).to(torch.float32)
        dy = f32(shape, gen)
        mean = f32([c], gen) * 0.5
        invstd = f32([c], gen, 'pos', 0.5, 2.0)
        w = f32([c], gen, 'pos', 0.5, 1.5) if affine else None
        sums = f32([2 * c], gen) * 3
        cs = chan_shape(c, len(shape))
        s_dy, s_dyxmu = sums[:c].double().view(cs), sums[c:].double().view(cs)
        iv = invstd.double().view(cs)
        scale = iv * (w.double().view(cs) if affine else 1.0)
        dx = (dy.double() - s_dy / count - (x.double() - mean.double().view(cs)) * iv * iv * s_dyxmu / count) * scale
        prim['backwardElemt'].append({
            'name': f'batchNormBackwardElemt/{tag}', 'dy': enc(dy), 'x': enc(x), 'mean': enc(mean),
            'invstd': enc(invstd), 'weight': enc(w), 'sums': enc(sums), 'count': count, 'gradInput': enc(dx)})

    # The whole SyncBatchNorm recipe over 3 "ranks", checked against plain BatchNorm on the concatenation.
    for tag, sizes in (('ranks_3_0_2', [3, 0, 2]), ('ranks_1_1_2', [1, 1, 2])):
        eps = 1e-5
        xs = [(f32([n, c, 2, 2], gen) * 1.2 + 0.7).to(torch.float32) for n in sizes]
        gs = [f32([n, c, 2, 2], gen) for n in sizes]
        w = f32([c], gen, 'pos', 0.5, 1.5)
        b = f32([c], gen)
        xa = torch.cat(xs).double().requires_grad_(True)
        wi = w.double().requires_grad_(True)
        bi = b.double().requires_grad_(True)
        y = F.batch_norm(xa, None, None, wi, bi, training=True, eps=eps)
        (y * torch.cat(gs).double()).sum().backward()
        ys = torch.split(y.detach(), sizes)
        dxs = torch.split(xa.grad, sizes)
        prim['syncEmulation'].append({
            'name': f'syncEmulation/{tag}', 'eps': eps, 'weight': enc(w), 'bias': enc(b),
            'rankInputs': [enc(x) for x in xs], 'rankGradOutputs': [enc(g) for g in gs],
            'rankOutputs': [enc(v) for v in ys], 'rankGradInputs': [enc(v) for v in dxs],
            'gradWeight': enc(wi.grad), 'gradBias': enc(bi.grad)})

    # Self-check: each merge case's merged stats equal the stats of the concatenated batch.
    for case in prim['merge']:
        rows = torch.tensor(case['stats']['data'], dtype=torch.float64).view(case['stats']['shape'])
        nr = rows[:, 2 * c:2 * c + 1]
        tot = float(nr.sum())
        mean = (rows[:, :c] * nr).sum(0) / tot
        m2 = (rows[:, c:2 * c] * nr + nr * (rows[:, :c] - mean) ** 2).sum(0)
        assert torch.allclose(mean.float(), torch.tensor(case['mean']['data']), rtol=1e-6, atol=1e-7)
        inv = (1 / torch.sqrt(m2 / tot + case['eps'])).float()
        assert torch.allclose(inv, torch.tensor(case['invstd']['data']), rtol=1e-6)
    return prim


def gen_batchnorm():
    gen = torch.Generator().manual_seed(4321)
    modules, worst = bn_module_cases(gen)
    functional = bn_functional_cases(gen)
    prim = bn_primitives(gen)
    counts = {'modules': len(modules), 'functional': len(functional),
              **{k: len(v) for k, v in prim.items()}}
    out = header(counts)
    out['modules'] = modules
    out['functional'] = functional
    out['primitives'] = prim
    out['torch32Worst'] = worst
    dump('batchnorm.json', out)
    print(f'batchnorm: {counts}; torch32 worst ratio {worst:.3g}')


# ---------------------------------------------------------------- train-cnn.json

def make_cnn():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(16, 10))


def core_key(k):
    """PyTorch state-dict name -> core's camelCase name ('1.running_mean' -> '1.runningMean')."""
    head, _, last = k.rpartition('.')
    parts = last.split('_')
    last = parts[0] + ''.join(p[:1].upper() + p[1:] for p in parts[1:])
    return f'{head}.{last}' if head else last


def train(model, x, target, dt, steps, opt_cfg):
    model = model.to(dt)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=opt_cfg['lr'], momentum=opt_cfg['momentum'],
                          weight_decay=opt_cfg['weightDecay'], dampening=opt_cfg['dampening'],
                          nesterov=opt_cfg['nesterov'])
    crit = nn.CrossEntropyLoss()
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = crit(model(x.to(dt)), target)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses, model.state_dict()


def enc_state(sd):
    out = {}
    for k, v in sd.items():
        if k.endswith('num_batches_tracked'):
            # an integer count; stored as a 0-dim float tensor (exact for small counts)
            out[core_key(k)] = {'shape': [], 'data': [float(int(v))]}
        else:
            out[core_key(k)] = enc(v)
    return out


def gen_train():
    torch.manual_seed(2024)  # the model's default init draws from the global generator
    model = make_cnn()
    gen = torch.Generator().manual_seed(99)
    x = torch.randn([16, 3, 12, 12], generator=gen, dtype=torch.float32)
    target = torch.randint(0, 10, [16], generator=gen)
    opt_cfg = {'type': 'SGD', 'lr': 0.05, 'momentum': 0.9, 'weightDecay': 1e-4, 'dampening': 0.0, 'nesterov': False}
    steps = 20
    init_sd = {k: v.clone() for k, v in model.state_dict().items()}

    m64 = make_cnn()
    m64.load_state_dict(init_sd)
    losses64, sd64 = train(m64, x, target, torch.float64, steps, opt_cfg)
    m32 = make_cnn()
    m32.load_state_dict(init_sd)
    losses32, sd32 = train(m32, x, target, torch.float32, steps, opt_cfg)

    loss_drift = max(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(losses32, losses64))
    state_drift = max(float(((sd32[k].double() - sd64[k].double()).abs()).max())
                      for k in sd64 if not k.endswith('num_batches_tracked'))
    out = header({'steps': steps, 'stateKeys': len(init_sd)})
    out.update({
        'model': 'Sequential(Conv2d(3,8,3,padding=1), BatchNorm2d(8), ReLU, MaxPool2d(2), '
                 'Conv2d(8,16,3,padding=1), BatchNorm2d(16), ReLU, AdaptiveAvgPool2d(1), Flatten, Linear(16,10))',
        'loss': 'CrossEntropyLoss', 'optimizer': opt_cfg, 'steps': steps,
        'input': enc(x), 'target': enc(target.to(torch.int32)),
        'initialState': enc_state(init_sd),
        'losses': [float(torch.tensor(v, dtype=torch.float32)) for v in losses64],
        'finalState': enc_state(sd64),
        'torch32Drift': {'lossRel': loss_drift, 'stateAbs': state_drift},
    })
    dump('train-cnn.json', out)
    print(f'train: losses {losses64[0]:.4f} -> {losses64[-1]:.4f}; torch32 drift loss rel {loss_drift:.3g}, '
          f'state abs {state_drift:.3g}')


if __name__ == '__main__':
    which = sys.argv[1:] or ['ops', 'batchnorm', 'train']
    if 'ops' in which:
        gen_ops()
    if 'batchnorm' in which:
        gen_batchnorm()
    if 'train' in which:
        gen_train()
