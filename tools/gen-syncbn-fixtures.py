#!/usr/bin/python3
"""SyncBatchNorm fixtures: plain PyTorch BatchNorm on the concatenated global batch.

Run: /usr/bin/python3 tools/gen-syncbn-fixtures.py   (writes fixtures/syncbn.json)

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
    out = {'format': 1, 'generator': 'tools/gen-syncbn-fixtures.py', 'torch': torch.__version__,
           'reference': 'float64 rounded to float32', 'expectedCounts': {'cases': len(cases)}, 'cases': cases}
    gf.dump('syncbn.json', out)


if __name__ == '__main__':
    gen()
