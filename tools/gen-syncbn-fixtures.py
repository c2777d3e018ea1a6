#!/usr/bin/python3
"""SyncBatchNorm fixtures: plain PyTorch BatchNorm on the concatenated global batch.

Run: /usr/bin/python3 tools/gen-syncbn-fixtures.py   (writes fixtures/syncbn.json and
     fixtures/syncbn-largemean.json)

SyncBatchNorm on R ranks, rank r holding rows [offset_r, offset_r + sizes[r]) of
the global batch, must give exactly what BatchNorm gives on the whole batch. The
reference is computed as in tools/gen-fixtures.py (float64 from float32 inputs,
rounded to float32) with the same JSON tensor encoding.

fixtures/syncbn.json
  "cases": [ {
     "name", "worldSize", "sizes": [per-rank batch sizes; some are 0],
     "module": "BatchNorm1d" | "BatchNorm2d" | "BatchNorm3d", "numFeatures",
     "options": {"eps", "momentum" (number | null), "affine", "trackRunningStats"},
     "initial": {"weight" | null, "bias" | null},
     "steps": [ {"input" (global), "gradOutput" (global), "output", "gradInput",
                 "gradWeight" | null, "gradBias" | null  (of the global loss sum(output * g);
                 the GradientAllReduce average over R ranks is this divided by R),
                 "runningMean" | null, "runningVar" | null, "numBatchesTracked" | null} x 3 ] } ]

fixtures/syncbn-largemean.json: the same format, inputs with |mean| / std = 1e4 per channel
(means of either sign and several magnitudes, drifting by a few std per step), for the
statistics exchanges' precision. Each step also has "tolerance": {"output", "gradInput", "gradWeight" (affine)}:
absolute errors that float32 cannot avoid there, 2 x the larger of PyTorch's own float32
BatchNorm error against the float64 reference and half an ulp of the float32 mean (times
invstd * |weight|, which carries it into y; times invstd * |sum dy| into gradWeight). runningVar (momentum 1: the batch's unbiased
variance itself) is held to the plain float32 tolerance.
"""
import importlib.util
import os

import torch
import torch.nn as nn

_spec = importlib.util.spec_from_file_location('gen_fixtures', os.path.join(os.path.dirname(__file__), 'gen-fixtures.py'))
gf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gf)

SIZES = {1: [5], 2: [4, 1], 3: [2, 0, 3], 4: [1, 3, 0, 2]}
SPATIAL = {2: ('BatchNorm1d', []), 3: ('BatchNorm1d', [4]), 4: ('BatchNorm2d', [3, 2]), 5: ('BatchNorm3d', [2, 2, 2])}
FLAGS = [  # (affine, trackRunningStats, momentum), rotated so every combination appears
    (True, True, 0.1), (False, True, None), (True, False, 0.1), (False, False, None),
    (True, True, None), (False, True, 0.1), (True, False, None), (False, False, 0.1),
]


def gen():
    gen_ = torch.Generator().manual_seed(4)
    cases = []
    k = 0
    for ws, sizes in SIZES.items():
        for ndim, (mod_name, spatial) in SPATIAL.items():
            for _ in range(2):
                affine, track, momentum = FLAGS[k % len(FLAGS)]
                k += 1
                c = 3
                m = getattr(nn, mod_name)(c, eps=1e-5, momentum=momentum, affine=affine,
                                          track_running_stats=track).double()
                initial = {'weight': None, 'bias': None}
                if affine:
                    with torch.no_grad():
                        m.weight.copy_(gf.f32([c], gen_, 'pos', 0.5, 1.5).double())
                        m.bias.copy_(gf.f32([c], gen_).double())
                    initial = {'weight': gf.enc(m.weight), 'bias': gf.enc(m.bias)}
                steps = []
                for _step in range(3):
                    shape = [sum(sizes), c, *spatial]
                    x = (gf.f32(shape, gen_) * 1.3 + 0.4).to(torch.float32)
                    g = gf.f32(shape, gen_)
                    m.zero_grad(set_to_none=True)
                    xi = x.double().clone().requires_grad_(True)
                    y = m(xi)
                    (y * g.double()).sum().backward()
                    steps.append({
                        'input': gf.enc(x), 'gradOutput': gf.enc(g), 'output': gf.enc(y), 'gradInput': gf.enc(xi.grad),
                        'gradWeight': gf.enc(m.weight.grad) if affine else None,
                        'gradBias': gf.enc(m.bias.grad) if affine else None,
                        'runningMean': gf.enc(m.running_mean) if track else None,
                        'runningVar': gf.enc(m.running_var) if track else None,
                        'numBatchesTracked': int(m.num_batches_tracked) if track else None,
                    })
                mom = 'None' if momentum is None else str(momentum)
                cases.append({
                    'name': f'ws={ws}/{ndim}d/affine={affine}/track={track}/momentum={mom}',
                    'worldSize': ws, 'sizes': sizes, 'module': mod_name, 'numFeatures': c,
                    'options': {'eps': 1e-5, 'momentum': momentum, 'affine': affine, 'trackRunningStats': track},
                    'initial': initial, 'steps': steps})
    dump_cases('syncbn.json', cases)



def dump_cases(name, cases):
    """Writes a fixture file of SyncBatchNorm cases, with what made it."""
    gf.dump(name, {'format': 1, 'generator': 'tools/gen-syncbn-fixtures.py', 'torch': torch.__version__,
                   'reference': 'float64 rounded to float32', 'expectedCounts': {'cases': len(cases)},
                   'cases': cases})

LARGE = [  # (worldSize, sizes, module, spatial, momentum, affine)
    (2, [6, 3], 'BatchNorm1d', [], 1.0, True),
    (2, [4, 0], 'BatchNorm2d', [3, 3], 0.1, True),
    (3, [5, 0, 4], 'BatchNorm2d', [2, 3], 1.0, False),
    (4, [2, 5, 1, 3], 'BatchNorm1d', [4], None, True),
    (4, [3, 3, 3, 3], 'BatchNorm2d', [4, 4], 1.0, True),
]
MEANS = [1.0e4, -3.0e3, 50.0]  # std = |mean| / 1e4 per channel


def ulp32(v):
    v = torch.as_tensor(v, dtype=torch.float32).abs()
    return (torch.nextafter(v, torch.tensor(float('inf'))) - v).double()


def gen_largemean():
    gen_ = torch.Generator().manual_seed(5)
    cases = []
    c = len(MEANS)
    mean = torch.tensor(MEANS, dtype=torch.float64)
    std = mean.abs() / 1e4
    for ws, sizes, mod_name, spatial, momentum, affine in LARGE:
        m = getattr(nn, mod_name)(c, eps=1e-5, momentum=momentum, affine=affine).double()
        m32 = getattr(nn, mod_name)(c, eps=1e-5, momentum=momentum, affine=affine)
        initial = {'weight': None, 'bias': None}
        if affine:
            with torch.no_grad():
                m.weight.copy_(gf.f32([c], gen_, 'pos', 0.5, 1.5).double())
                m.bias.copy_(gf.f32([c], gen_).double())
                m32.weight.copy_(m.weight)
                m32.bias.copy_(m.bias)
            initial = {'weight': gf.enc(m.weight), 'bias': gf.enc(m.bias)}
        shape = [sum(sizes), c, *spatial]
        cshape = [1, c] + [1] * len(spatial)
        steps = []
        for step in range(3):
            drift = mean + 3.0 * step * std  # a few std per step: the shift must follow
            x = (drift.view(cshape) + std.view(cshape) * gf.f32(shape, gen_).double()).to(torch.float32)
            g = gf.f32(shape, gen_)
            m.zero_grad(set_to_none=True)
            xi = x.double().clone().requires_grad_(True)
            y = m(xi)
            (y * g.double()).sum().backward()
            m32.zero_grad(set_to_none=True)
            x32 = x.clone().requires_grad_(True)
            y32 = m32(x32)
            (y32 * g).sum().backward()
            bmean = x.double().transpose(0, 1).reshape(c, -1).mean(1)
            bvar = x.double().transpose(0, 1).reshape(c, -1).var(1, unbiased=False)
            scale = (bvar + 1e-5).rsqrt() * (m.weight.detach().abs() if affine else 1.0)
            ulp_y = float((ulp32(bmean) / 2 * scale).max())
            tol = {'output': 2 * max(float((y32.double() - y).abs().max()), ulp_y),
                   'gradInput': 2 * max(float((x32.grad.double() - xi.grad).abs().max()), ulp_y * float(g.abs().max()))}
            if affine:  # sum dy * (x - mean) * invstd: the mean's rounding times |sum dy|
                sum_dy = g.double().transpose(0, 1).reshape(c, -1).sum(1).abs()
                ulp_w = float((ulp32(bmean) / 2 * (bvar + 1e-5).rsqrt() * sum_dy).max())
                tol['gradWeight'] = 2 * max(float((m32.weight.grad.double() - m.weight.grad).abs().max()), ulp_w)
            steps.append({
                'input': gf.enc(x), 'gradOutput': gf.enc(g), 'output': gf.enc(y), 'gradInput': gf.enc(xi.grad),
                'gradWeight': gf.enc(m.weight.grad) if affine else None,
                'gradBias': gf.enc(m.bias.grad) if affine else None,
                'runningMean': gf.enc(m.running_mean), 'runningVar': gf.enc(m.running_var),
                'numBatchesTracked': int(m.num_batches_tracked), 'tolerance': tol,
                'torchFloat32RunningVarRelError': float(((m32.running_var.double() - m.running_var).abs()
                                                         / m.running_var).max()),
            })
        mom = 'None' if momentum is None else str(momentum)
        cases.append({
            'name': f'large mean: ws={ws}/{mod_name}{spatial}/momentum={mom}/affine={affine}',
            'worldSize': ws, 'sizes': sizes, 'module': mod_name, 'numFeatures': c,
            'options': {'eps': 1e-5, 'momentum': momentum, 'affine': affine, 'trackRunningStats': True},
            'initial': initial, 'steps': steps})
    dump_cases('syncbn-largemean.json', cases)


if __name__ == '__main__':
    gen()
    gen_largemean()
