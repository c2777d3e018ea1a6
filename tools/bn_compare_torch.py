#!/usr/bin/env python3
"""PyTorch's side of tools/bn_compare.mjs: the same batch-norm inputs through PyTorch's
CUDA batch norm, for a direct comparison with bagua-ts on the same card (tools/gpu-check).

For each shape (float32): x, dy, weight, bias, running mean and var (seeded, with per-channel
offsets so |mean| is several times the std); then F.batch_norm in training with running
statistics (momentum 0.1, eps 1e-5) on DEVICE, autograd backward of dy; and the same in
float64 on the CPU (the exact answer both float32 results are measured against).
Writes raw little-endian float32 files and meta.json into OUTDIR:

  s<i>_<name>.f32   name: x dy weight bias running_mean running_var (inputs),
                    y dx dweight dbias running_mean_after running_var_after (PyTorch on DEVICE),
                    ref64_<same six> (float64 on the CPU, rounded to float32)

  python3 tools/bn_compare_torch.py OUTDIR [--shapes '[[32,64,56,56],[8,256,14,14],[256,1024]]']
                                           [--device cuda:0 | cpu]
Without CUDA (a rehearsal), --device cpu runs PyTorch's CPU batch norm instead, and says so.
"""
import argparse
import ctypes
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

EPS = 1e-5
MOMENTUM = 0.1


def write_f32(path, t):
    t = t.detach().to("cpu", torch.float32).contiguous()
    with open(path, "wb") as f:
        f.write(ctypes.string_at(t.data_ptr(), t.numel() * 4))  # no numpy needed; little-endian hosts


def inputs(shape, seed):
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    bshape = [1, c] + [1] * (len(shape) - 2)
    offset = (torch.rand(c, generator=g) * 6 - 3).view(bshape)
    scale = (torch.rand(c, generator=g) * 2 + 0.25).view(bshape)
    x = torch.randn(shape, generator=g) * scale + offset
    dy = torch.randn(shape, generator=g)
    w = torch.rand(c, generator=g) + 0.5
    b = torch.randn(c, generator=g) * 0.1
    rm = torch.randn(c, generator=g) * 0.1
    rv = torch.rand(c, generator=g) + 0.5
    return {"x": x, "dy": dy, "weight": w, "bias": b, "running_mean": rm, "running_var": rv}


def run(inp, device, dtype):
    def fresh(k):  # a new leaf on device: the inputs themselves stay untouched
        return inp[k].detach().to(device, dtype, copy=True)

    x = fresh("x").requires_grad_()
    w = fresh("weight").requires_grad_()
    b = fresh("bias").requires_grad_()
    rm = fresh("running_mean")
    rv = fresh("running_var")
    y = F.batch_norm(x, rm, rv, w, b, training=True, momentum=MOMENTUM, eps=EPS)
    y.backward(inp["dy"].to(device, dtype))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return {"y": y, "dx": x.grad, "dweight": w.grad, "dbias": b.grad,
            "running_mean_after": rm, "running_var_after": rv}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--shapes", default="[[32,64,56,56],[8,256,14,14],[256,1024]]")
    ap.add_argument("--device", default="cuda:0")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("torch.cuda.is_available() is False: no PyTorch CUDA batch norm to compare with "
                         "(pass --device cpu to rehearse)")
    os.makedirs(args.outdir, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torchDevice": str(device),
        "cudnn": torch.backends.cudnn.is_available() and torch.backends.cudnn.enabled and device.type == "cuda",
        "eps": EPS,
        "momentum": MOMENTUM,
        "shapes": [],
    }
    for i, shape in enumerate(json.loads(args.shapes)):
        t0 = time.time()
        inp = inputs(shape, 1000 + i)
        out = run(inp, device, torch.float32)
        ref = run(inp, torch.device("cpu"), torch.float64)
        files = {}
        for name, t in list(inp.items()) + list(out.items()) + [("ref64_" + k, v) for k, v in ref.items()]:
            fname = "s%d_%s.f32" % (i, name)
            write_f32(os.path.join(args.outdir, fname), t)
            files[name] = fname
        meta["shapes"].append({"shape": shape, "files": files})
        print("shape %s: PyTorch on %s and float64 on the CPU, %.1fs" % (shape, device, time.time() - t0),
              file=sys.stderr)
    with open(os.path.join(args.outdir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(json.dumps({k: v for k, v in meta.items() if k != "shapes"}))


if __name__ == "__main__":
    main()
