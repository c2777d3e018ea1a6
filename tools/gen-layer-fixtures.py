#!/usr/bin/python3
"""Golden fixtures for bagua-ts's nn layers beyond batch norm, generated with PyTorch 1.13 (CPU).

Run from anywhere:  /usr/bin/python3 tools/gen-layer-fixtures.py [layers] [resnet]
Writes fixtures/layers.json, and fixtures/resnet20.json + fixtures/resnet20.bin. Deterministic
(fixed seeds, one thread), as tools/gen-fixtures.py, whose conventions this follows:

How expected values are made
----------------------------
Inputs and parameters are drawn in float32 and stored as such; expected outputs and
gradients are computed by PyTorch in float64 from those exact values, then rounded to
float32. The same computation in float32 PyTorch is compared with that reference and
its worst ratio to the default tolerance (rtol 1e-5, atol 1e-6) is recorded per case
("torch32Worst"): the error budget of an honest float32 implementation. Gradients are
those of  L = sum(output * g)  for a fixed random g ("gradOutput").
Tensors are encoded as in tools/gen-fixtures.py: {"shape": [...], "data": [...]}.

fixtures/layers.json
  {"format": 1, "generator", "torch", "reference", "expectedCounts": {"cases", "byLayer"},
   "cases": [ {
     "name":    unique, e.g. "GroupNorm/g3_c6_4d",
     "layer":   the @bagua/core nn class: LayerNorm GroupNorm Conv1d Conv3d AvgPool1d AvgPool3d
                Dropout Identity,
     "args":    constructor arguments before the options, in core's order (LayerNorm:
                [normalizedShape]; GroupNorm: [numGroups, numChannels]; Conv1d/Conv3d:
                [inChannels, outChannels, kernelSize]; AvgPool1d/3d: [kernelSize]; Dropout: [p]),
     "options": core's camelCase options (eps, elementwiseAffine, affine, stride, padding,
                dilation, groups, bias, countIncludePad),
     "training": bool (the module's mode; only Dropout reads it),
     "params":  {"weight"?: Tensor, "bias"?: Tensor} the values loaded into the layer,
     "input":   Tensor x, "output": Tensor, "gradOutput": Tensor g,
     "grads":   {"input": Tensor, "weight"?: Tensor, "bias"?: Tensor},
     "gradScales": (convolutions and poolings) the same gradients of sum(|output| * |g|)
                with |inputs| and |parameters|: each gradient's sum of |terms|, the scale a
                float32 sum in another order may lose to cancellation (as batchnorm.json's) } ],
   "torch32Worst": {caseName: ratio} }
  Dropout's mask comes from each library's own generator, so its cases are the
  deterministic ones: eval (identity), p = 0 (identity) and p = 1 (zeros); the random
  mask is tested for its statistics and its gradient in the test files.

fixtures/resnet20.json + fixtures/resnet20.bin
  The CIFAR ResNet-20 of He et al. (2016), option-A shortcuts (stride-2 subsampling
  and zero-padded channels), in_channels 1, 10 classes, built here in PyTorch with
  kaiming-normal conv init and BatchNorm running statistics made non-trivial by 3
  training-mode forwards; its state is stored in the .bin (float32 little-endian,
  concatenated in state-dict order). JSON: {"format": 1, "generator", "torch",
  "arch": {"name": "resnet20", "inChannels": 1, "numClasses": 10, "shortcut": "A"},
  "tensors": [ {"key": core's state-dict key (camelCase: runningMean,
  numBatchesTracked; "fc" is PyTorch's "linear"), "shape", "offset" (float32 elements
  into the .bin), "numel"} ], "input": Tensor [4,1,32,32],
  "evalLogits": Tensor [4,10], "trainLogits": Tensor [4,10] (batch statistics),
  "torch32Worst": {"eval", "train"} }  (numBatchesTracked stored as a float count).
"""
import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'fixtures')
RTOL, ATOL = 1e-5, 1e-6
GENERATOR = 'tools/gen-layer-fixtures.py'


def enc(t):
    """Tensor -> JSON; float values forced through float32 so they are exact f32s."""
    if t is None:
        return None
    t = t.detach().cpu()
    data = t.to(torch.float32).reshape(-1).tolist()
    for v in data:
        if not math.isfinite(v):
            raise ValueError('non-finite value in fixture')
    return {'shape': list(t.shape), 'data': data}


def f32(shape, gen, scale=1.0, shift=0.0):
    return (torch.randn(shape, generator=gen, dtype=torch.float32) * scale + shift).to(torch.float32)


def worst_ratio(got, ref):
    got = got.detach().double()
    ref = ref.detach().float().double()
    if got.numel() == 0:
        return 0.0
    return float(((got - ref).abs() / (ATOL + RTOL * ref.abs())).max())


def dump(name, obj):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name)
    with open(path, 'w') as fh:
        json.dump(obj, fh, allow_nan=False, separators=(',', ':'))
        fh.write('\n')
    print(f'wrote {path}: {os.path.getsize(path)} bytes')


# ---------------------------------------------------------------- layers.json

def tup(v):
    return tuple(v) if isinstance(v, list) else v


def layer_fn(layer, args, o, training):
    """The torch functional form of one core layer: fn(x, weight, bias)."""
    if layer == 'LayerNorm':
        return lambda x, w=None, b=None: F.layer_norm(x, args[0] if isinstance(args[0], list) else [args[0]], w, b, o.get('eps', 1e-5))
    if layer == 'GroupNorm':
        return lambda x, w=None, b=None: F.group_norm(x, args[0], w, b, o.get('eps', 1e-5))
    if layer in ('Conv1d', 'Conv3d'):
        f = F.conv1d if layer == 'Conv1d' else F.conv3d
        return lambda x, w, b=None: f(x, w, b, stride=tup(o.get('stride', 1)), padding=tup(o.get('padding', 0)),
                                      dilation=tup(o.get('dilation', 1)), groups=o.get('groups', 1))
    if layer in ('AvgPool1d', 'AvgPool3d'):
        f = F.avg_pool1d if layer == 'AvgPool1d' else F.avg_pool3d
        k = tup(args[0])
        return lambda x: f(x, k, stride=tup(o.get('stride', args[0])), padding=tup(o.get('padding', 0)),
                           count_include_pad=o.get('countIncludePad', True))
    if layer == 'Dropout':
        return lambda x: F.dropout(x, args[0], training)
    if layer == 'Identity':
        return lambda x: x
    raise ValueError(layer)


def param_shapes(layer, args, o, x_shape):
    if layer == 'LayerNorm':
        shape = args[0] if isinstance(args[0], list) else [args[0]]
        return {'weight': shape, 'bias': shape} if o.get('elementwiseAffine', True) else {}
    if layer == 'GroupNorm':
        return {'weight': [args[1]], 'bias': [args[1]]} if o.get('affine', True) else {}
    if layer in ('Conv1d', 'Conv3d'):
        cin, cout, k = args
        ks = [k] if layer == 'Conv1d' else (k if isinstance(k, list) else [k] * 3)
        p = {'weight': [cout, cin // o.get('groups', 1)] + ks}
        if o.get('bias', True):
            p['bias'] = [cout]
        return p
    return {}


# Layers linear in the input and in each parameter: their gradients are plain sums of products.
LINEAR_LAYERS = ('Conv1d', 'Conv3d', 'AvgPool1d', 'AvgPool3d')


def run_layer_case(name, layer, args, options, x, gen, training=True):
    fn = layer_fn(layer, args, options, training)
    params = {k: f32(s, gen, 0.5, 1.0 if k == 'weight' and layer in ('LayerNorm', 'GroupNorm') else 0.0)
              for k, s in param_shapes(layer, args, options, list(x.shape)).items()}
    g = None
    results = {}
    for dt in (torch.float64, torch.float32):
        xs = x.to(dt).clone().requires_grad_(True)
        ps = {k: v.to(dt).clone().requires_grad_(True) for k, v in params.items()}
        out = fn(xs, *[ps[k] for k in ('weight', 'bias') if k in ps])
        if g is None:
            g = f32(list(out.shape), gen)
        (out * g.to(dt)).sum().backward()
        grads = {'input': xs.grad if xs.grad is not None else torch.zeros_like(xs)}
        grads.update({k: v.grad for k, v in ps.items()})
        results[dt] = (out, grads)
    out64, grads64 = results[torch.float64]
    out32, grads32 = results[torch.float32]
    worst = max([worst_ratio(out32, out64)] + [worst_ratio(grads32[k], grads64[k]) for k in grads64])
    case = {'name': name, 'layer': layer, 'args': args, 'options': options, 'training': training,
            'params': {k: enc(v) for k, v in params.items()}, 'input': enc(x), 'output': enc(out64),
            'gradOutput': enc(g), 'grads': {k: enc(v) for k, v in grads64.items()}}
    if layer in LINEAR_LAYERS:
        # The same sums over |terms|: how much a float32 sum in another order may cancel.
        xs = x.double().abs().requires_grad_(True)
        ps = {k: v.double().abs().requires_grad_(True) for k, v in params.items()}
        out = fn(xs, *[ps[k] for k in ('weight', 'bias') if k in ps])
        (out * g.double().abs()).sum().backward()
        case['gradScales'] = {'input': enc(xs.grad), **{k: enc(v.grad) for k, v in ps.items()}}
    return case, worst


def gen_layers():
    gen = torch.Generator().manual_seed(4321)
    specs = []  # (name, layer, args, options, x, training)
    specs += [
        ('LayerNorm/d8_2d', 'LayerNorm', [8], {}, f32([4, 8], gen), True),
        ('LayerNorm/d3x5_4d', 'LayerNorm', [[3, 5]], {}, f32([2, 4, 3, 5], gen), True),
        ('LayerNorm/eps1e-3_3d', 'LayerNorm', [6], {'eps': 1e-3}, f32([2, 3, 6], gen), True),
        ('LayerNorm/no_affine', 'LayerNorm', [[4, 4]], {'elementwiseAffine': False}, f32([3, 4, 4], gen), True),
        # a large mean against a unit spread: two-pass/Welford statistics keep it, E[x^2]-E[x]^2 would not
        ('LayerNorm/mean100', 'LayerNorm', [16], {}, f32([4, 16], gen, 1.0, 100.0), True),
        ('LayerNorm/d1', 'LayerNorm', [1], {}, f32([5, 1], gen), True),
        ('GroupNorm/g2_c6_3d', 'GroupNorm', [2, 6], {}, f32([3, 6, 5], gen), True),
        ('GroupNorm/g3_c6_4d', 'GroupNorm', [3, 6], {}, f32([2, 6, 4, 4], gen), True),
        ('GroupNorm/g1_c4_layer', 'GroupNorm', [1, 4], {}, f32([2, 4, 3, 3], gen), True),
        ('GroupNorm/g4_c4_instance', 'GroupNorm', [4, 4], {}, f32([2, 4, 3, 3], gen), True),
        ('GroupNorm/no_affine', 'GroupNorm', [2, 4], {'affine': False}, f32([2, 4, 5], gen), True),
        ('GroupNorm/eps1e-2_2d', 'GroupNorm', [3, 6], {'eps': 1e-2}, f32([4, 6], gen), True),
        ('GroupNorm/5d', 'GroupNorm', [2, 4], {}, f32([2, 4, 2, 3, 3], gen), True),
        ('GroupNorm/mean50', 'GroupNorm', [2, 4], {}, f32([2, 4, 8], gen, 1.0, 50.0), True),
    ]
    conv1d = [  # (tag, cin, cout, k, options, L)
        ('k3_bias', 4, 6, 3, {}, 10),
        ('k3_s2_p1', 4, 6, 3, {'stride': 2, 'padding': 1}, 11),
        ('k3_d2_p2', 4, 6, 3, {'dilation': 2, 'padding': 2}, 10),
        ('k3_g2_nobias', 4, 6, 3, {'groups': 2, 'bias': False}, 9),
        ('k1_pointwise', 3, 5, 1, {}, 7),
    ]
    for tag, cin, cout, k, o, length in conv1d:
        specs.append((f'Conv1d/{tag}', 'Conv1d', [cin, cout, k], o, f32([2, cin, length], gen), True))
    conv3d = [  # (tag, cin, cout, k, options, [D, H, W])
        ('k3_p1_bias', 3, 4, 3, {'padding': 1}, [4, 5, 5]),
        ('k3_s2', 3, 4, 3, {'stride': 2}, [5, 6, 7]),
        ('k_1x3x3', 2, 4, [1, 3, 3], {'padding': [0, 1, 1]}, [3, 5, 5]),
        ('k_3x1x1_s2x1x1', 2, 4, [3, 1, 1], {'stride': [2, 1, 1], 'padding': [1, 0, 0]}, [5, 4, 4]),
        ('k3_stride_1x2x2_pad_1x0x1', 2, 4, 3, {'stride': [1, 2, 2], 'padding': [1, 0, 1]}, [4, 6, 6]),
        ('k2_dil_2x1x1', 2, 3, 2, {'dilation': [2, 1, 1]}, [5, 4, 4]),
        ('k3_g2_nobias', 4, 6, 3, {'groups': 2, 'bias': False, 'padding': 1}, [3, 4, 4]),
        ('k3_pad2_dil2', 2, 3, 3, {'padding': 2, 'dilation': 2}, [4, 5, 5]),
    ]
    for tag, cin, cout, k, o, dhw in conv3d:
        specs.append((f'Conv3d/{tag}', 'Conv3d', [cin, cout, k], o, f32([2, cin] + dhw, gen), True))
    specs += [
        ('AvgPool1d/k3', 'AvgPool1d', [3], {}, f32([2, 3, 9], gen), True),
        ('AvgPool1d/k3_s2_p1', 'AvgPool1d', [3], {'stride': 2, 'padding': 1}, f32([2, 3, 10], gen), True),
        ('AvgPool1d/k4_s2_p2_exclude_pad', 'AvgPool1d', [4], {'stride': 2, 'padding': 2, 'countIncludePad': False},
         f32([2, 3, 9], gen), True),
        ('AvgPool1d/2d_input', 'AvgPool1d', [2], {}, f32([3, 8], gen), True),
        ('AvgPool3d/k2', 'AvgPool3d', [2], {}, f32([2, 3, 4, 4, 4], gen), True),
        ('AvgPool3d/k3_s2_p1', 'AvgPool3d', [3], {'stride': 2, 'padding': 1}, f32([2, 2, 5, 6, 5], gen), True),
        ('AvgPool3d/k3_s2_p1_exclude_pad', 'AvgPool3d', [3], {'stride': 2, 'padding': 1, 'countIncludePad': False},
         f32([2, 2, 5, 6, 5], gen), True),
        ('AvgPool3d/k_1x2x2', 'AvgPool3d', [[1, 2, 2]], {}, f32([1, 2, 3, 4, 4], gen), True),
        ('AvgPool3d/k_3x2x2_s_1x2x2_4d', 'AvgPool3d', [[3, 2, 2]], {'stride': [1, 2, 2], 'padding': [1, 0, 0]},
         f32([3, 4, 4, 6], gen), True),
        ('Dropout/eval', 'Dropout', [0.5], {}, f32([4, 5], gen), False),
        ('Dropout/p0_train', 'Dropout', [0.0], {}, f32([4, 5], gen), True),
        ('Dropout/p1_train', 'Dropout', [1.0], {}, f32([3, 4], gen), True),
        ('Identity/3d', 'Identity', [], {}, f32([2, 3, 4], gen), True),
    ]
    cases, worst, by_layer = [], {}, {}
    for name, layer, args, o, x, training in specs:
        case, w = run_layer_case(name, layer, args, o, x, gen, training)
        cases.append(case)
        worst[name] = w
        by_layer[layer] = by_layer.get(layer, 0) + 1
    names = [c['name'] for c in cases]
    assert len(set(names)) == len(names)
    out = {'format': 1, 'generator': GENERATOR, 'torch': torch.__version__,
           'reference': 'float64 rounded to float32',
           'expectedCounts': {'cases': len(cases), 'byLayer': by_layer}, 'cases': cases, 'torch32Worst': worst}
    dump('layers.json', out)
    bad = {k: v for k, v in worst.items() if v > 1}
    print(f'layers: {len(cases)} cases; torch32 worst ratio {max(worst.values()):.3g}; over 1: {bad}')


# ---------------------------------------------------------------- resnet20.json / .bin

class ShortcutA(nn.Module):
    """He et al.'s option A: subsample by the stride, zero-pad planes/4 channels on each side."""

    def __init__(self, planes, stride):
        super().__init__()
        self.pad, self.stride = planes // 4, stride

    def forward(self, x):
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = ShortcutA(planes, stride) if stride != 1 or in_planes != planes else None

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (self.downsample(x) if self.downsample is not None else x))


class ResNet20(nn.Module):
    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for i, planes in enumerate((16, 32, 64)):
            blocks = []
            for b in range(3):
                blocks.append(BasicBlock(in_planes, planes, 2 if b == 0 and i > 0 else 1))
                in_planes = planes
            setattr(self, f'layer{i + 1}', nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.layer3(self.layer2(self.layer1(h)))
        return self.fc(self.avgpool(h).flatten(1))


def core_key(k):
    for a, b in (('running_mean', 'runningMean'), ('running_var', 'runningVar'),
                 ('num_batches_tracked', 'numBatchesTracked')):
        if k.endswith('.' + a):
            return k[:-len(a)] + b
    return k


def gen_resnet():
    torch.manual_seed(2016)
    gen = torch.Generator().manual_seed(20)
    model = ResNet20(1, 10)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight)
        if isinstance(m, nn.BatchNorm2d):  # away from 1 and 0, so a mix-up of weight and bias shows
            with torch.no_grad():
                m.weight.copy_(f32([m.num_features], gen, 0.2, 1.0))
                m.bias.copy_(f32([m.num_features], gen, 0.1))
    model.train()
    with torch.no_grad():
        for _ in range(3):  # running statistics that are not the initial 0 / 1
            model(f32([8, 1, 32, 32], gen, 1.0, 0.5))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    x = f32([4, 1, 32, 32], gen)
    logits = {}
    for dt in (torch.float64, torch.float32):
        m = ResNet20(1, 10)
        m.load_state_dict(state)
        m = m.to(dt)
        with torch.no_grad():
            m.eval()
            ev = m(x.to(dt))
            m.train()
            tr = m(x.to(dt))
        logits[dt] = (ev, tr)
    tensors, blob, offset = [], bytearray(), 0
    for k, v in state.items():
        flat = v.to(torch.float32).reshape(-1).tolist()
        blob += struct.pack(f'<{len(flat)}f', *flat)
        tensors.append({'key': core_key(k), 'shape': list(v.shape), 'offset': offset, 'numel': len(flat)})
        offset += len(flat)
    params = sum(v.numel() for k, v in model.named_parameters())
    out = {'format': 1, 'generator': GENERATOR, 'torch': torch.__version__, 'reference': 'float64 rounded to float32',
           'arch': {'name': 'resnet20', 'inChannels': 1, 'numClasses': 10, 'shortcut': 'A', 'parameters': params},
           'tensors': tensors, 'input': enc(x), 'evalLogits': enc(logits[torch.float64][0]),
           'trainLogits': enc(logits[torch.float64][1]),
           'torch32Worst': {'eval': worst_ratio(logits[torch.float32][0], logits[torch.float64][0]),
                            'train': worst_ratio(logits[torch.float32][1], logits[torch.float64][1])}}
    with open(os.path.join(OUT, 'resnet20.bin'), 'wb') as fh:
        fh.write(bytes(blob))
    print(f'wrote fixtures/resnet20.bin: {len(blob)} bytes')
    dump('resnet20.json', out)
    print(f'resnet20: {params} parameters, {len(tensors)} tensors; torch32 worst {out["torch32Worst"]}')


if __name__ == '__main__':
    which = sys.argv[1:] or ['layers', 'resnet']
    if 'layers' in which:
        gen_layers()
    if 'resnet' in which:
        gen_resnet()
