#!/usr/bin/python3
"""float16 / bfloat16 fixtures for bagua-ts, generated with PyTorch 1.13 (Debian's python3-torch, CPU).

Run from anywhere:  /usr/bin/python3 tools/gen-dtype-fixtures.py
Writes, at the repository root:
  fixtures/half-conversions.json  PyTorch's conversions between float32 and float16 /
                                  bfloat16, exhaustive over the 16-bit patterns;
  fixtures/batchnorm-dtypes.json  batch norm on bfloat16 and float16 inputs.
Deterministic (fixed seeds, one thread): rerunning gives identical files.

half-conversions.json
---------------------
The inputs are not stored: both sides form them by the same rule, from integers.
  "f16ToF32", "bf16ToF32": every 16-bit pattern p = 0..65535 as float16 / bfloat16,
      converted by torch to float32: the float32 bit patterns, in order of p.
  "f32ToBf16": float32 inputs with bit patterns (p << 16) | o for p = 0..65535 and
      o in BF16_OFFSETS (o = 0x8000 is the exact tie between two bfloat16 values,
      0x7fff / 0x8001 the floats just below / above it), p-major: the bfloat16 patterns.
  "f32ToF16": float32 inputs with bit patterns (s << 31) | (e << 23) | (k << 13) | o for
      s = 0, 1; e = 101..143 (2^-26 .. 2^16: through the subnormal range and past
      overflow); k = 0..1023; o in F16_OFFSETS (0x1000: the tie between two normal
      float16 values), in that nesting order: the float16 patterns.
  Each array is the little-endian bytes of its uint32 / uint16 values, zlib-compressed,
  base64 ("encoding": "zlib-base64-le").
  NaN: torch's tensor cast writes bfloat16 NaN as 0xFFFF (its vectorised path) while
  c10::BFloat16 writes 0x7FC0; both are NaN, and the tests accept any NaN where torch
  has a NaN (every other output must match bit for bit).

ops-dtypes.json
---------------
"cases": [ {"name", "dtype", "op" (the @bagua/core op), "inputs": {name: Tensor} (float inputs in
the dtype; class targets int32), "attrs", "output", "gradOutput" (the output's dtype),
"grads": {name: Tensor} (every float input's gradient), "reference"} ]: bfloat16 computed by
torch's own CPU kernels ("torch") where it has them, float16 (and bfloat16 ops torch 1.13's CPU
lacks, mse_loss) by float64 on the rounded inputs ("float64", rounded to float32); torch's
bfloat16 cases also carry that float64 reference ("float64": {"output", "grads"}), as torch's
kernels round partial results to bfloat16.

batchnorm-dtypes.json
---------------------
Tensor: {"shape": [...], "dtype": "float32" | "float16" | "bfloat16", "b64": base64 of the
little-endian raw bits (float32 or the 16-bit patterns)}.
"modules": [ {
   "name", "dtype": the input's dtype, "module": "BatchNorm1d" | "BatchNorm2d" | "BatchNorm3d",
   "numFeatures", "options": {"eps", "momentum" (number | null), "affine", "trackRunningStats"},
   "paramDtype": "float32" (PyTorch's mixed rule: float32 weight, bias, running statistics)
                 or the input's dtype (same-dtype modules),
   "reference": "torch" (bfloat16: PyTorch 1.13's own CPU kernels computed it, outputs in
                 bfloat16) or "float64" (float16, which PyTorch's CPU lacks: the same module in
                 float64 on the float16 inputs as given, float64 parameters from the float16 /
                 float32 ones, results rounded to float32, running statistics of a float16
                 module rounded to float16 after every step, as its storage would),
   "initial": {"weight", "bias", "runningMean", "runningVar": Tensor | null},
   "torchHalfPath": true where torch's bfloat16 kernels ran their all-bfloat16 path (no float32
                 parameter or buffer), which rounds intermediates to bfloat16,
   "steps": [ {"training", "input" (the dtype), "gradOutput" (the dtype), "output", "gradInput",
               "gradWeight" | null, "gradBias" | null, "runningMean" | null, "runningVar" | null,
               "float64": {"output", "gradInput", "gradWeight", "gradBias"} (torchHalfPath only:
               the float64 reference, as for float16)} ]
 } ]   2 training steps, then 1 eval step (fresh inputs each).
Shapes cover both CPU work layouts (planes of >= 64 elements, rows) with vector bodies
and scalar tails: 2D [16, 20] (CUDA: 4-vectors along channels), 4D [2, 2, 8, 8], 5D [2, 2, 2, 3, 4].
"""
import base64
import json
import os
import zlib

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
BF16_OFFSETS = [0x0000, 0x7FFF, 0x8000, 0x8001, 0xFFFF]
F16_OFFSETS = [0x0000, 0x0FFF, 0x1000, 0x1001, 0x1FFF]


def packed(arr):
    return base64.b64encode(zlib.compress(arr.astype(arr.dtype.newbyteorder('<')).tobytes(), 9)).decode()


def conversion_inputs():
    p = np.arange(65536, dtype=np.uint32)
    bf = ((p[:, None] << 16) | np.array(BF16_OFFSETS, dtype=np.uint32)[None, :]).reshape(-1)
    s = np.arange(2, dtype=np.uint32)[:, None, None, None]
    e = np.arange(101, 144, dtype=np.uint32)[None, :, None, None]
    k = np.arange(1024, dtype=np.uint32)[None, None, :, None]
    o = np.array(F16_OFFSETS, dtype=np.uint32)[None, None, None, :]
    f16 = ((s << 31) | (e << 23) | (k << 13) | o).reshape(-1)
    return bf, f16


def write_conversions():
    p16 = np.arange(65536, dtype=np.uint16)
    as_f16 = torch.from_numpy(p16.view(np.int16).copy()).view(torch.float16)
    as_bf16 = torch.from_numpy(p16.view(np.int16).copy()).view(torch.bfloat16)
    f16_to_f32 = as_f16.float().view(torch.int32).numpy().view(np.uint32)
    bf16_to_f32 = as_bf16.float().view(torch.int32).numpy().view(np.uint32)
    bf_in, f16_in = conversion_inputs()
    to_bf16 = torch.from_numpy(bf_in.view(np.int32).copy()).view(torch.float32).bfloat16()
    to_f16 = torch.from_numpy(f16_in.view(np.int32).copy()).view(torch.float32).half()
    out = {
        'format': 1, 'generator': 'tools/gen-dtype-fixtures.py', 'torch': torch.__version__,
        'encoding': 'zlib-base64-le', 'bf16Offsets': BF16_OFFSETS, 'f16Offsets': F16_OFFSETS,
        'f16Exponents': [101, 143],
        'f16ToF32': packed(f16_to_f32), 'bf16ToF32': packed(bf16_to_f32),
        'f32ToBf16': packed(to_bf16.view(torch.int16).numpy().view(np.uint16)),
        'f32ToF16': packed(to_f16.view(torch.int16).numpy().view(np.uint16)),
        'counts': {'f16ToF32': 65536, 'bf16ToF32': 65536, 'f32ToBf16': int(bf_in.size), 'f32ToF16': int(f16_in.size)},
    }
    path = os.path.join(ROOT, 'fixtures', 'half-conversions.json')
    with open(path, 'w') as f:
        json.dump(out, f)
        f.write('\n')
    print(f'wrote {path} ({os.path.getsize(path)} bytes)')


def t_json(t):
    t = t.detach().contiguous()
    if t.dtype in (torch.float16, torch.bfloat16):
        raw = t.view(torch.int16).numpy().view(np.uint16).astype('<u2').tobytes()
        dt = 'float16' if t.dtype == torch.float16 else 'bfloat16'
    else:
        raw = t.float().numpy().astype('<f4').tobytes()
        dt = 'float32'
    return {'shape': list(t.shape), 'dtype': dt, 'b64': base64.b64encode(raw).decode()}


def t_opt(t):
    return None if t is None else t_json(t)


SHAPES = {'BatchNorm1d': (16, 20), 'BatchNorm2d': (2, 2, 8, 8), 'BatchNorm3d': (2, 2, 2, 3, 4)}
TORCH_DT = {'bfloat16': torch.bfloat16, 'float16': torch.float16}


def bn_case(gen, dtype, kind, affine, momentum, track, same_dtype):
    shape = SHAPES[kind]
    c = shape[1]
    dt = TORCH_DT[dtype]
    cls = getattr(torch.nn, kind)
    opts = dict(eps=1e-5, momentum=momentum, affine=affine, track_running_stats=track)
    m = cls(c, **opts)
    with torch.no_grad():
        if affine:
            m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(c, generator=gen) * 0.5)
        if track:
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
    if same_dtype:
        m = m.to(dt)  # parameters and running statistics rounded to the dtype
    initial = {
        'weight': t_opt(m.weight), 'bias': t_opt(m.bias),
        'runningMean': t_opt(m.running_mean), 'runningVar': t_opt(m.running_var),
    }
    # torch's bfloat16 CPU path keeps its intermediates in bfloat16 when no parameter or
    # buffer is float32 (no affine and no running statistics, or a same-dtype module): there
    # a float64 reference is stored too ("float64" in each step)
    torch_half_path = dtype == 'bfloat16' and (same_dtype or not (affine or track))
    ref64 = None
    if dtype == 'float16' or torch_half_path:
        ref64 = cls(c, **opts).double()
        with torch.no_grad():
            for name in ('weight', 'bias', 'running_mean', 'running_var'):
                src = getattr(m, name)
                if src is not None:
                    getattr(ref64, name).copy_(src.double())
    steps = []
    for step in range(3):
        training = step < 2
        # inputs with a mean offset per channel, so (x - mean) matters
        x32 = torch.randn(shape, generator=gen) * 1.5 + 0.75
        g32 = torch.randn(shape, generator=gen)
        x = x32.to(dt)
        g = g32.to(dt)
        extra = None
        if ref64 is not None:
            ref64.train(training)
            ref64.zero_grad()
            xi = x.double().requires_grad_()
            y = ref64(xi)
            y.backward(g.double())
            extra = {
                'output': t_json(y.float()), 'gradInput': t_json(xi.grad.float()),
                'gradWeight': None if ref64.weight is None else t_json(ref64.weight.grad.float()),
                'gradBias': None if ref64.bias is None else t_json(ref64.bias.grad.float()),
            }
            if same_dtype and track:
                with torch.no_grad():  # a 16-bit buffer holds the update rounded
                    ref64.running_mean.copy_(ref64.running_mean.to(dt).double())
                    ref64.running_var.copy_(ref64.running_var.to(dt).double())
        if dtype == 'bfloat16':
            m.train(training)
            m.zero_grad()
            xi = x.clone().requires_grad_()
            y = m(xi)
            y.backward(g)
            out, gin = y, xi.grad
            gw = None if m.weight is None else m.weight.grad
            gb = None if m.bias is None else m.bias.grad
            rm, rv = m.running_mean, m.running_var
        else:
            out, gin = extra['output'], extra['gradInput']
            gw, gb = extra['gradWeight'], extra['gradBias']
            extra = None
            rm = None if ref64.running_mean is None else ref64.running_mean.to(dt if same_dtype else torch.float32)
            rv = None if ref64.running_var is None else ref64.running_var.to(dt if same_dtype else torch.float32)
        js = lambda v: v if v is None or isinstance(v, dict) else t_json(v)
        step_out = {
            'training': training, 'input': t_json(x), 'gradOutput': t_json(g),
            'output': js(out), 'gradInput': js(gin),
            'gradWeight': js(gw), 'gradBias': js(gb),
            'runningMean': t_opt(rm), 'runningVar': t_opt(rv),
        }
        if extra is not None:
            step_out['float64'] = extra
        steps.append(step_out)
    mom = 'None' if momentum is None else momentum
    name = f'{dtype}/{kind}/affine={affine}/track={track}/momentum={mom}' + ('/same-dtype' if same_dtype else '')
    return {
        'name': name, 'dtype': dtype, 'module': kind, 'numFeatures': c,
        'options': {'eps': 1e-5, 'momentum': momentum, 'affine': affine, 'trackRunningStats': track},
        'paramDtype': dtype if same_dtype else 'float32',
        'reference': 'torch' if dtype == 'bfloat16' else 'float64', 'torchHalfPath': torch_half_path,
        'initial': initial, 'steps': steps,
    }


def write_batchnorm():
    gen = torch.Generator().manual_seed(1313)
    cases = []
    for dtype in ('bfloat16', 'float16'):
        for kind in ('BatchNorm1d', 'BatchNorm2d', 'BatchNorm3d'):
            for affine in (True, False):
                for track in (True, False):
                    for momentum in (0.1, None):
                        cases.append(bn_case(gen, dtype, kind, affine, momentum, track, False))
        for kind in ('BatchNorm1d', 'BatchNorm2d'):
            for momentum in (0.1, None):
                cases.append(bn_case(gen, dtype, kind, True, momentum, True, True))
    out = {'format': 1, 'generator': 'tools/gen-dtype-fixtures.py', 'torch': torch.__version__,
           'expectedCounts': {'modules': len(cases)}, 'modules': cases}
    path = os.path.join(ROOT, 'fixtures', 'batchnorm-dtypes.json')
    with open(path, 'w') as f:
        json.dump(out, f)
        f.write('\n')
    print(f'wrote {path} ({os.path.getsize(path)} bytes, {len(cases)} modules)')


def op_case(gen, dtype, name, op, inputs, attrs, fn):
    """inputs: {name: float32 tensor (rounded to dtype here) | int tensor}; fn(**tensors) -> output."""
    dt = TORCH_DT[dtype]
    rounded = {k: (v.to(dt) if v.is_floating_point() else v) for k, v in inputs.items()}
    # bfloat16 by torch's own kernels where its CPU has them (1.13 lacks e.g. mse_loss)
    by_torch = dtype == 'bfloat16'
    if by_torch:
        try:
            fn(**rounded)
        except RuntimeError:
            by_torch = False
    if by_torch:
        args = {k: (v.clone().requires_grad_() if v.is_floating_point() else v) for k, v in rounded.items()}
    else:
        args = {k: (v.double().requires_grad_() if v.is_floating_point() else v) for k, v in rounded.items()}
    y = fn(**args)
    g = torch.randn(y.shape, generator=gen).to(dt)
    y.backward(g if by_torch else g.double())
    out = y if by_torch else y.float()
    grads = {k: (a.grad if by_torch else a.grad.float()) for k, a in args.items() if v_float(a)}
    extra = None
    if by_torch:  # torch's bfloat16 kernels round partial results: a float64 reference too
        a64 = {k: (v.double().requires_grad_() if v.is_floating_point() else v) for k, v in rounded.items()}
        y64 = fn(**a64)
        y64.backward(g.double())
        extra = {'output': t_json(y64.float()),
                 'grads': {k: t_json(a.grad.float()) for k, a in a64.items() if v_float(a)}}

    def enc(k, v):
        if v.is_floating_point():
            return t_json(v)
        return {'shape': list(v.shape), 'dtype': 'int32', 'data': v.int().flatten().tolist()}
    return {'name': f'{dtype}/{name}', 'dtype': dtype, 'op': op,
            'inputs': {k: enc(k, v) for k, v in rounded.items()}, 'attrs': attrs,
            'output': t_json(out), 'gradOutput': t_json(g), 'grads': {k: t_json(v) for k, v in grads.items()},
            'reference': 'torch' if by_torch else 'float64', **({'float64': extra} if extra else {})}


def v_float(a):
    return a.is_floating_point()


def write_ops():
    import torch.nn.functional as F
    gen = torch.Generator().manual_seed(2727)
    r = lambda *s: torch.randn(*s, generator=gen)
    cases = []
    for dtype in ('bfloat16', 'float16'):
        cases += [
            op_case(gen, dtype, 'add/broadcast', 'add', {'a': r(3, 4), 'b': r(1, 4)}, {}, lambda a, b: a + b),
            op_case(gen, dtype, 'sub', 'sub', {'a': r(5, 6), 'b': r(5, 6)}, {}, lambda a, b: a - b),
            op_case(gen, dtype, 'mul/broadcast', 'mul', {'a': r(4, 1), 'b': r(4, 5)}, {}, lambda a, b: a * b),
            op_case(gen, dtype, 'div', 'div', {'a': r(4, 5), 'b': r(4, 5).abs() + 0.5}, {}, lambda a, b: a / b),
            op_case(gen, dtype, 'neg', 'neg', {'x': r(7, 3)}, {}, lambda x: -x),
            op_case(gen, dtype, 'relu', 'relu', {'x': r(40)}, {}, lambda x: torch.relu(x)),
            op_case(gen, dtype, 'sum/all', 'sum', {'x': r(6, 50) + 1.0}, {'dims': None, 'keepDim': False}, lambda x: x.sum()),
            op_case(gen, dtype, 'sum/dim1', 'sum', {'x': r(4, 300)}, {'dims': [1], 'keepDim': False}, lambda x: x.sum(1)),
            op_case(gen, dtype, 'mean/dim0', 'mean', {'x': r(64, 5) + 2.0}, {'dims': [0], 'keepDim': True}, lambda x: x.mean(0, keepdim=True)),
            op_case(gen, dtype, 'matmul', 'matmul', {'a': r(6, 33), 'b': r(33, 7)}, {}, lambda a, b: a @ b),
            op_case(gen, dtype, 'linear', 'linear', {'x': r(5, 20), 'w': r(8, 20), 'b': r(8)}, {}, lambda x, w, b: F.linear(x, w, b)),
            op_case(gen, dtype, 'conv2d', 'conv2d', {'x': r(2, 3, 7, 7), 'w': r(4, 3, 3, 3), 'b': r(4)},
                    {'stride': 1, 'padding': 1}, lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=1)),
            op_case(gen, dtype, 'mseLoss', 'mseLoss', {'input': r(6, 5), 'target': r(6, 5)}, {'reduction': 'mean'},
                    lambda input, target: F.mse_loss(input, target)),
            op_case(gen, dtype, 'crossEntropy', 'crossEntropy', {'input': r(8, 10) * 2, 'target': torch.randint(0, 10, (8,), generator=gen)},
                    {'reduction': 'mean'}, lambda input, target: F.cross_entropy(input, target)),
        ]
    out = {'format': 1, 'generator': 'tools/gen-dtype-fixtures.py', 'torch': torch.__version__,
           'expectedCounts': {'cases': len(cases)}, 'cases': cases}
    path = os.path.join(ROOT, 'fixtures', 'ops-dtypes.json')
    with open(path, 'w') as f:
        json.dump(out, f)
        f.write('\n')
    print(f'wrote {path} ({os.path.getsize(path)} bytes, {len(cases)} cases)')


def main():
    torch.set_num_threads(1)
    write_conversions()
    write_batchnorm()
    write_ops()


if __name__ == '__main__':
    main()
