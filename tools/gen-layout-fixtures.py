#!/usr/bin/python3
"""Channels-last (NHWC / NDHWC) golden fixtures for bagua-ts, from PyTorch 1.13 on the CPU.

Run from anywhere:  /usr/bin/python3 tools/gen-layout-fixtures.py
Writes fixtures/channels-last.json. Deterministic (fixed seed, one thread).

PyTorch computes every case itself on channels-last input (its CPU batch norm,
convolution and pooling have channels-last paths): expected values come from
that computation in float64 on the float32 inputs, rounded to float32 (the
correctly rounded answer, as tools/gen-fixtures.py does); the same computation in
float32 is run too, and the memory format of ITS outputs and gradients is what
the fixture records ("channelsLast" flags: torch's is_contiguous(memory_format=
channels_last)), so the tests check our outputs keep the format where PyTorch's do.
"torch32Worst" is the float32 run's worst error against the reference in units of
the default tolerance (atol 1e-6 + rtol 1e-5 |ref|), the budget a float32
implementation needs.

Tensors are encoded as in tools/gen-fixtures.py: logical (NCHW) row-major order,
whatever the memory format; the tests convert inputs with contiguous('channelsLast').

JSON
----
{"format": 1, "generator", "torch", "reference", "expectedCounts", "torch32Worst",
 "batchnorm": [ {name, module: BatchNorm2d|BatchNorm3d, numFeatures, options {eps, momentum|null,
                 affine, trackRunningStats}, initial {weight|null, bias|null, runningMean|null,
                 runningVar|null, numBatchesTracked|null},
                 steps: [ {training, input, output, gradOutput, gradInput, gradWeight|null,
                           gradBias|null, runningMean|null, runningVar|null,
                           numBatchesTracked|null, outputChannelsLast, gradInputChannelsLast} x 4 ]} ],
     3 training steps then 1 eval step, as batchnorm.json, on channels-last inputs.
 "conv":  [ {name, x, w, b|null, attrs {stride, padding, dilation, groups}, output, gradOutput,
             grads {x, w, b?}, outputChannelsLast, gradInputChannelsLast} ]
 "pool":  [ {name, op: maxPool2d|avgPool2d|adaptiveAvgPool2d, x, attrs, output, gradOutput,
             gradInput, outputChannelsLast, gradInputChannelsLast} ]
 "elementwise": [ {name, op: add|sub|mul|relu|mulScalar, a, aChannelsLast, b|null, bChannelsLast,
             output, outputChannelsLast, outputContiguous} ]   (the format rule of binary ops)
 "sync":  [ {name, worldSize, numFeatures, eps, momentum, weight, bias, runningMean, runningVar,
             rankInputs [T], rankGradOutputs [T], rankOutputs [T], rankGradInputs [T],
             gradWeight, gradBias, runningMeanAfter, runningVarAfter} ]
     one training step of BatchNorm2d over the concatenation of the ranks' channels-last
     batches (different batch sizes per rank): what SyncBatchNorm must give on every rank.
}
"""
import importlib.util
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location('gen_fixtures', os.path.join(HERE, 'gen-fixtures.py'))
gf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gf)  # shares its encoding (enc), random inputs (f32), dump and tolerance ratio
enc, f32, dump, worst_ratio = gf.enc, gf.f32, gf.dump, gf.worst_ratio

torch.set_num_threads(1)
CL = torch.channels_last
CL3 = torch.channels_last_3d


def cl(t):
    return t.contiguous(memory_format=CL if t.dim() == 4 else CL3)


def is_cl(t):
    return bool(t.is_contiguous(memory_format=CL if t.dim() == 4 else CL3))


class Worst:
    def __init__(self):
        self.by = {}

    def add(self, section, got, ref):
        if got is None:
            return
        self.by[section] = max(self.by.get(section, 0.0), worst_ratio(got, ref))


W = Worst()

BN_SHAPES = (('BatchNorm2d', '4d', (3, 4, 2, 5)), ('BatchNorm3d', '5d', (2, 3, 2, 2, 3)))


def bn_cases(gen):
    cases = []
    for mod_name, tag, shape in BN_SHAPES:
        for affine in (True, False):
            for track in (True, False):
                for momentum in (0.1, None):
                    c = shape[1]
                    m64 = getattr(nn, mod_name)(c, eps=1e-5, momentum=momentum, affine=affine,
                                                track_running_stats=track).double()
                    with torch.no_grad():
                        if affine:
                            m64.weight.copy_(f32([c], gen, 'pos', 0.5, 1.5).double())
                            m64.bias.copy_(f32([c], gen).double())
                        if track:
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
                        x = (f32(list(shape), gen) * 1.7 + 0.6).to(torch.float32)
                        g = f32(list(shape), gen)
                        rec = {}
                        for m, dt in ((m64, torch.float64), (m32, torch.float32)):
                            m.train(training)
                            m.zero_grad(set_to_none=True)
                            xi = cl(x.to(dt)).requires_grad_(True)
                            y = m(xi)
                            (y * cl(g.to(dt))).sum().backward()
                            rec[dt] = (y, xi.grad, m.weight.grad if affine else None, m.bias.grad if affine else None)
                        y, gx, gw, gb = rec[torch.float64]
                        y3, gx3, gw3, gb3 = rec[torch.float32]
                        for a, b in ((y3, y), (gx3, gx), (gw3, gw), (gb3, gb)):
                            W.add('batchnorm', a, b)
                        steps.append({
                            'training': training, 'input': enc(x), 'output': enc(y), 'gradOutput': enc(g),
                            'gradInput': enc(gx), 'gradWeight': enc(gw), 'gradBias': enc(gb),
                            'runningMean': enc(m64.running_mean) if track else None,
                            'runningVar': enc(m64.running_var) if track else None,
                            'numBatchesTracked': int(m64.num_batches_tracked) if track else None,
                            'outputChannelsLast': is_cl(y3), 'gradInputChannelsLast': is_cl(gx3),
                        })
                    mom = 'None' if momentum is None else str(momentum)
                    cases.append({
                        'name': f'{mod_name}/{tag}/affine={affine}/track={track}/momentum={mom}',
                        'module': mod_name, 'numFeatures': c,
                        'options': {'eps': 1e-5, 'momentum': momentum, 'affine': affine, 'trackRunningStats': track},
                        'initial': initial, 'steps': steps})
    return cases


CONV = (
    # name, x shape, w shape, bias, stride, padding, dilation, groups
    ('3x3_pad1', (2, 6, 7, 9), (8, 6, 3, 3), True, 1, 1, 1, 1),
    ('3x3_stride2_dil2', (2, 4, 11, 10), (5, 4, 3, 3), True, 2, 0, 2, 1),
    ('groups2_nobias', (3, 6, 6, 5), (4, 3, 3, 2), False, (1, 2), (1, 0), 1, 2),
    ('1x1', (2, 16, 5, 5), (12, 16, 1, 1), True, 1, 0, 1, 1),
)


def conv_cases(gen):
    cases = []
    for name, xs, ws, has_b, stride, padding, dilation, groups in CONV:
        x = f32(list(xs), gen)
        w = f32(list(ws), gen) * 0.3
        b = f32([ws[0]], gen) if has_b else None
        out = {}
        for dt in (torch.float64, torch.float32):
            xi = cl(x.to(dt)).requires_grad_(True)
            wi = w.to(dt).requires_grad_(True)
            bi = b.to(dt).requires_grad_(True) if has_b else None
            y = F.conv2d(xi, wi, bi, stride=stride, padding=padding, dilation=dilation, groups=groups)
            out[dt] = (xi, wi, bi, y)
        g = f32(list(out[torch.float64][3].shape), gen)
        for dt in out:
            xi, wi, bi, y = out[dt]
            (y * g.to(dt)).sum().backward()
        x64, w64, b64, y64 = out[torch.float64]
        x32, w32, b32, y32 = out[torch.float32]
        for a, r in ((y32, y64), (x32.grad, x64.grad), (w32.grad, w64.grad)):
            W.add('conv', a, r)
        pair = lambda v: list(v) if isinstance(v, tuple) else [v, v]  # noqa: E731
        grads = {'x': enc(x64.grad), 'w': enc(w64.grad)}
        if has_b:
            grads['b'] = enc(b64.grad)
        cases.append({'name': f'conv2d/{name}', 'x': enc(x), 'w': enc(w), 'b': enc(b),
                      'attrs': {'stride': pair(stride), 'padding': pair(padding), 'dilation': pair(dilation),
                                'groups': groups},
                      'output': enc(y64), 'gradOutput': enc(g), 'grads': grads,
                      'outputChannelsLast': is_cl(y32), 'gradInputChannelsLast': is_cl(x32.grad)})
    return cases


POOL = (
    ('maxPool2d/k3_s2_p1', 'maxPool2d', (2, 5, 9, 8), {'kernelSize': [3, 3], 'stride': [2, 2], 'padding': [1, 1]}),
    ('maxPool2d/k2', 'maxPool2d', (3, 4, 6, 6), {'kernelSize': [2, 2], 'stride': [2, 2], 'padding': [0, 0]}),
    ('avgPool2d/k3_s2_p1_exclude', 'avgPool2d', (2, 5, 9, 8),
     {'kernelSize': [3, 3], 'stride': [2, 2], 'padding': [1, 1], 'countIncludePad': False}),
    ('avgPool2d/k2', 'avgPool2d', (2, 3, 6, 4),
     {'kernelSize': [2, 2], 'stride': [2, 2], 'padding': [0, 0], 'countIncludePad': True}),
    ('adaptiveAvgPool2d/3x2', 'adaptiveAvgPool2d', (2, 6, 7, 5), {'outputSize': [3, 2]}),
    ('adaptiveAvgPool2d/1x1', 'adaptiveAvgPool2d', (2, 6, 7, 5), {'outputSize': [1, 1]}),
)


def pool_fn(op, a):
    if op == 'maxPool2d':
        return lambda x: F.max_pool2d(x, a['kernelSize'], a['stride'], a['padding'])
    if op == 'avgPool2d':
        return lambda x: F.avg_pool2d(x, a['kernelSize'], a['stride'], a['padding'],
                                      count_include_pad=a['countIncludePad'])
    return lambda x: F.adaptive_avg_pool2d(x, a['outputSize'])


def pool_cases(gen):
    cases = []
    for name, op, xs, attrs in POOL:
        # distinct values: max pooling's argmax is then unique and the gradient well defined
        x = (torch.randperm(int(torch.tensor(xs).prod()), generator=gen).to(torch.float32) * 0.01).reshape(xs)
        fn = pool_fn(op, attrs)
        out = {}
        for dt in (torch.float64, torch.float32):
            xi = cl(x.to(dt)).requires_grad_(True)
            out[dt] = (xi, fn(xi))
        g = f32(list(out[torch.float64][1].shape), gen)
        for dt in out:
            (out[dt][1] * g.to(dt)).sum().backward()
        (x64, y64), (x32, y32) = out[torch.float64], out[torch.float32]
        W.add('pool', y32, y64)
        W.add('pool', x32.grad, x64.grad)
        cases.append({'name': name, 'op': op, 'x': enc(x), 'attrs': attrs, 'output': enc(y64), 'gradOutput': enc(g),
                      'gradInput': enc(x64.grad), 'outputChannelsLast': is_cl(y32),
                      'gradInputChannelsLast': is_cl(x32.grad)})
    return cases


def elementwise_cases(gen):
    shape = [2, 3, 4, 5]
    a = f32(shape, gen)
    b = f32(shape, gen)
    bias = f32([1, 3, 1, 1], gen)
    rows = (
        ('add/cl+cl', 'add', a, True, b, True),
        ('add/cl+contiguous', 'add', a, True, b, False),
        ('sub/contiguous-cl', 'sub', a, False, b, True),
        ('mul/cl*bias', 'mul', a, True, bias, False),
        ('add/bias+cl', 'add', bias, False, a, True),
        ('relu/cl', 'relu', a, True, None, False),
        ('mulScalar/cl', 'mulScalar', a, True, None, False),
    )
    cases = []
    for name, op, x, xcl, y, ycl in rows:
        xi = cl(x) if xcl else x
        yi = (cl(y) if ycl else y) if y is not None else None
        if op == 'add':
            out = xi + yi
        elif op == 'sub':
            out = xi - yi
        elif op == 'mul':
            out = xi * yi
        elif op == 'relu':
            out = torch.relu(xi)
        else:
            out = xi * 2.5
        ref = {'add': lambda: x.double() + y.double(), 'sub': lambda: x.double() - y.double(),
               'mul': lambda: x.double() * y.double(), 'relu': lambda: torch.relu(x.double()),
               'mulScalar': lambda: x.double() * 2.5}[op]()
        cases.append({'name': name, 'op': op, 'a': enc(x), 'aChannelsLast': xcl, 'b': enc(y), 'bChannelsLast': ycl,
                      'output': enc(ref), 'outputChannelsLast': is_cl(out),
                      'outputContiguous': bool(out.is_contiguous())})
    return cases


def sync_cases(gen):
    cases = []
    c = 5
    for world in (1, 2, 3, 4):
        sizes = [2, 3, 1, 2][:world]
        rank_x = [(f32([n, c, 3, 4], gen) * 1.5 + 0.4).to(torch.float32) for n in sizes]
        rank_g = [f32([n, c, 3, 4], gen) for n in sizes]
        weight = f32([c], gen, 'pos', 0.5, 1.5)
        bias = f32([c], gen)
        rm = f32([c], gen) * 0.1
        rv = f32([c], gen, 'pos', 0.8, 1.2)
        m = nn.BatchNorm2d(c, eps=1e-5, momentum=0.1).double()
        with torch.no_grad():
            m.weight.copy_(weight.double())
            m.bias.copy_(bias.double())
            m.running_mean.copy_(rm.double())
            m.running_var.copy_(rv.double())
        x = cl(torch.cat(rank_x).double()).requires_grad_(True)
        y = m(x)
        (y * torch.cat(rank_g).double()).sum().backward()
        ys = torch.split(y.detach(), sizes)
        gxs = torch.split(x.grad, sizes)
        cases.append({
            'name': f'sync/world={world}', 'worldSize': world, 'numFeatures': c, 'eps': 1e-5, 'momentum': 0.1,
            'weight': enc(weight), 'bias': enc(bias), 'runningMean': enc(rm), 'runningVar': enc(rv),
            'rankInputs': [enc(t) for t in rank_x], 'rankGradOutputs': [enc(t) for t in rank_g],
            'rankOutputs': [enc(t) for t in ys], 'rankGradInputs': [enc(t) for t in gxs],
            'gradWeight': enc(m.weight.grad), 'gradBias': enc(m.bias.grad),
            'runningMeanAfter': enc(m.running_mean), 'runningVarAfter': enc(m.running_var)})
    return cases


def main():
    gen = torch.Generator().manual_seed(20261130)
    out = {'batchnorm': bn_cases(gen), 'conv': conv_cases(gen), 'pool': pool_cases(gen),
           'elementwise': elementwise_cases(gen), 'sync': sync_cases(gen)}
    counts = {k: len(v) for k, v in out.items()}
    doc = {'format': 1, 'generator': 'tools/gen-layout-fixtures.py', 'torch': torch.__version__,
           'reference': 'float64 rounded to float32, computed by PyTorch on channels-last inputs',
           'expectedCounts': counts, 'torch32Worst': W.by, **out}
    dump('channels-last.json', doc)
    print('cases', counts, 'torch32 worst (units of the default tolerance)', {k: round(v, 3) for k, v in W.by.items()})


if __name__ == '__main__':
    main()
