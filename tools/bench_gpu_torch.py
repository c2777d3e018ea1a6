#!/usr/bin/env python3
"""PyTorch's side of packages/kernels/bench/bench-gpu.ts, on the same card in the same run.

For each case (shape, dtype, memory format; training): F.batch_norm forward, and
forward + autograd backward; the SyncBatchNorm primitives forward (batch_norm_stats,
batch_norm_gather_stats_with_counts over one rank, batch_norm_elemt) and forward +
backward (+ batch_norm_backward_reduce, batch_norm_backward_elemt); for float32
NCHW also each primitive alone; and a device-to-device copy of x. Times: CUDA
events around a loop of back-to-back calls, median of 5 loops, in milliseconds per
call. Prints one JSON line last (read by bench-gpu.ts).

bfloat16 / float16 cases: x and dy in that dtype, weight, bias and running statistics
float32 (PyTorch's mixed rule, as torch.autocast leaves a BatchNorm after a half conv);
channelsLast: x and dy in torch.channels_last (or channels_last_3d), as ours stores them.
A path PyTorch refuses for a case is left out of `times` and named in `errors`.

  python3 tools/bench_gpu_torch.py [--cases '[[[64,256,56,56],"bfloat16","channelsLast"],...]'] [--seconds 0.2]
  python3 tools/bench_gpu_torch.py [--shapes '[[64,256,56,56],...]']   (float32 NCHW only)

Default shapes: several times the L2 cache (50-60 MB on H100/H200), the same as bench-gpu.ts.
"""
import argparse
import json
import statistics

import torch
import torch.nn.functional as F


def time_it(fn, seconds):
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    one = max(start.elapsed_time(end), 1e-3)
    iters = max(10, min(5000, int(seconds * 1e3 / one) + 1))
    loops = []
    for _ in range(5):
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        loops.append(start.elapsed_time(end) / iters)
    return statistics.median(loops)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def in_format(t, fmt):
    if fmt == "contiguous":
        return t.contiguous()
    if fmt != "channelsLast":
        raise SystemExit(f"unknown memory format {fmt!r} (contiguous | channelsLast)")
    if t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    if t.dim() == 5:
        return t.contiguous(memory_format=torch.channels_last_3d)
    raise SystemExit(f"channelsLast needs a 4D or 5D shape, got {list(t.shape)}")


def bench_shape(shape, seconds, dev, dtype="float32", fmt="contiguous"):
    if dtype not in DTYPES:
        raise SystemExit(f"unknown dtype {dtype!r} ({' | '.join(DTYPES)})")
    c = shape[1]
    base = dtype == "float32" and fmt == "contiguous"
    g = torch.Generator(device=dev).manual_seed(0)
    x = in_format((torch.rand(shape, device=dev, generator=g) - 0.5).to(DTYPES[dtype]), fmt)
    dy = in_format((torch.rand(shape, device=dev, generator=g) - 0.5).to(DTYPES[dtype]), fmt)
    w = torch.rand(c, device=dev, generator=g)
    b = torch.rand(c, device=dev, generator=g)
    rm = torch.zeros(c, device=dev)
    rv = torch.ones(c, device=dev)
    eps, momentum = 1e-5, 0.1
    tmp = torch.empty_like(x)  # same dtype and format: the copy moves the bytes of one pass
    times = {}
    errors = {}

    def measure(name, fn):
        try:
            times[name] = time_it(fn, seconds)
        except RuntimeError as e:  # this PyTorch has no kernel for the dtype / format
            errors[name] = str(e).strip().split("\n")[0][:200]

    copy_ms = time_it(lambda: tmp.copy_(x), seconds)

    with torch.no_grad():
        measure("F.batch_norm fwd",
                lambda: F.batch_norm(x, rm, rv, w, b, training=True, momentum=momentum, eps=eps))
    xg = x.clone().requires_grad_()
    wg = w.clone().requires_grad_()
    bg = b.clone().requires_grad_()

    def fwd_bwd():
        xg.grad = None
        wg.grad = None
        bg.grad = None
        F.batch_norm(xg, rm, rv, wg, bg, training=True, momentum=momentum, eps=eps).backward(dy)

    measure("F.batch_norm fwd+bwd", fwd_bwd)

    # SyncBatchNorm's primitives, world size 1 (what torch.nn.SyncBatchNorm runs per rank)
    count = torch.full((1,), x.numel() // c, dtype=torch.float32, device=dev)
    count_i = count.to(torch.int32)

    def sync_fwd():
        mean, invstd = torch.batch_norm_stats(x, eps)
        mean_all, invstd_all = mean.unsqueeze(0), invstd.unsqueeze(0)  # the all-gather of one rank
        gm, gi = torch.batch_norm_gather_stats_with_counts(x, mean_all, invstd_all, rm, rv, momentum, eps, count)
        return torch.batch_norm_elemt(x, w, b, gm, gi, eps), gm, gi

    def sync_fwd_bwd():
        _, gm, gi = sync_fwd()
        sum_dy, sum_dy_xmu, gw, gb = torch.batch_norm_backward_reduce(dy, x, gm, gi, w, True, True, True)
        return torch.batch_norm_backward_elemt(dy, x, gm, gi, w, sum_dy, sum_dy_xmu, count_i)

    with torch.no_grad():
        measure("syncbn fwd", sync_fwd)
        measure("syncbn fwd+bwd", sync_fwd_bwd)
        if not base:  # each primitive alone: float32 NCHW only, as bench-gpu.ts
            return {"shape": shape, "dtype": dtype, "format": fmt, "copy_ms": copy_ms, "times": times, "errors": errors}
        mean, invstd = torch.batch_norm_stats(x, eps)
        sum_dy, sum_dy_xmu, _, _ = torch.batch_norm_backward_reduce(dy, x, mean, invstd, w, True, True, True)
        times["batch_norm_stats"] = time_it(lambda: torch.batch_norm_stats(x, eps), seconds)
        times["batch_norm_elemt"] = time_it(lambda: torch.batch_norm_elemt(x, w, b, mean, invstd, eps), seconds)
        times["batch_norm_backward_reduce"] = time_it(
            lambda: torch.batch_norm_backward_reduce(dy, x, mean, invstd, w, True, True, True), seconds)
        times["batch_norm_backward_elemt"] = time_it(
            lambda: torch.batch_norm_backward_elemt(dy, x, mean, invstd, w, sum_dy, sum_dy_xmu, count_i), seconds)
    return {"shape": shape, "dtype": dtype, "format": fmt, "copy_ms": copy_ms, "times": times, "errors": errors}


def main():
    ap = argparse.ArgumentParser()
    # several times the L2 cache (50-60 MB on H100/H200): HBM bandwidth, as in bench-gpu.ts
    ap.add_argument("--shapes", default="[[64,256,56,56],[128,64,112,112],[16384,4096]]")
    # [[shape, dtype, format], ...]: bench-gpu.ts's cases (overrides --shapes)
    ap.add_argument("--cases", default=None)
    ap.add_argument("--seconds", type=float, default=0.2)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("torch.cuda.is_available() is False")
    dev = torch.device("cuda:0")
    torch.backends.cudnn.benchmark = True
    cases = json.loads(args.cases) if args.cases else [[s, "float32", "contiguous"] for s in json.loads(args.shapes)]
    results = [bench_shape(s, args.seconds, dev, d, f) for s, d, f in cases]
    print(json.dumps({
        "version": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(dev),
        "results": results,
    }))


if __name__ == "__main__":
    main()
