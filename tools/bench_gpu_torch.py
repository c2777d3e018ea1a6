#!/usr/bin/env python3
"""PyTorch's side of packages/kernels/bench/bench-gpu.ts, on the same card in the same run.

For each shape (float32, training): F.batch_norm forward, and forward + autograd
backward; the SyncBatchNorm primitives forward (batch_norm_stats,
batch_norm_gather_stats_with_counts over one rank, batch_norm_elemt) and forward +
backward (+ batch_norm_backward_reduce, batch_norm_backward_elemt); each primitive
alone; and a device-to-device copy. Times: CUDA events around a loop of
back-to-back calls, median of 5 loops, in milliseconds per call. Prints one JSON
line last (read by bench-gpu.ts).

  python3 tools/bench_gpu_torch.py [--shapes '[[64,256,56,56],...]'] [--seconds 0.2]

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


def bench_shape(shape, seconds, dev):
    c = shape[1]
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.rand(shape, device=dev, generator=g) - 0.5
    dy = torch.rand(shape, device=dev, generator=g) - 0.5
    w = torch.rand(c, device=dev, generator=g)
    b = torch.rand(c, device=dev, generator=g)
    rm = torch.zeros(c, device=dev)
    rv = torch.ones(c, device=dev)
    eps, momentum = 1e-5, 0.1
    tmp = torch.empty_like(x)
    times = {}

    copy_ms = time_it(lambda: tmp.copy_(x), seconds)

    with torch.no_grad():
        times["F.batch_norm fwd"] = time_it(
            lambda: F.batch_norm(x, rm, rv, w, b, training=True, momentum=momentum, eps=eps), seconds)
    xg = x.clone().requires_grad_()
    wg = w.clone().requires_grad_()
    bg = b.clone().requires_grad_()

    def fwd_bwd():
        xg.grad = None
        wg.grad = None
        bg.grad = None
        F.batch_norm(xg, rm, rv, wg, bg, training=True, momentum=momentum, eps=eps).backward(dy)

    times["F.batch_norm fwd+bwd"] = time_it(fwd_bwd, seconds)

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
        times["syncbn fwd"] = time_it(sync_fwd, seconds)
        times["syncbn fwd+bwd"] = time_it(sync_fwd_bwd, seconds)
        mean, invstd = torch.batch_norm_stats(x, eps)
        sum_dy, sum_dy_xmu, _, _ = torch.batch_norm_backward_reduce(dy, x, mean, invstd, w, True, True, True)
        times["batch_norm_stats"] = time_it(lambda: torch.batch_norm_stats(x, eps), seconds)
        times["batch_norm_elemt"] = time_it(lambda: torch.batch_norm_elemt(x, w, b, mean, invstd, eps), seconds)
        times["batch_norm_backward_reduce"] = time_it(
            lambda: torch.batch_norm_backward_reduce(dy, x, mean, invstd, w, True, True, True), seconds)
        times["batch_norm_backward_elemt"] = time_it(
            lambda: torch.batch_norm_backward_elemt(dy, x, mean, invstd, w, sum_dy, sum_dy_xmu, count_i), seconds)
    return {"shape": shape, "copy_ms": copy_ms, "times": times}


def main():
    ap = argparse.ArgumentParser()
    # several times the L2 cache (50-60 MB on H100/H200): HBM bandwidth, as in bench-gpu.ts
    ap.add_argument("--shapes", default="[[64,256,56,56],[128,64,112,112],[16384,4096]]")
    ap.add_argument("--seconds", type=float, default=0.2)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("torch.cuda.is_available() is False")
    dev = torch.device("cuda:0")
    torch.backends.cudnn.benchmark = True
    results = [bench_shape(s, args.seconds, dev) for s in json.loads(args.shapes)]
    print(json.dumps({
        "version": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(dev),
        "results": results,
    }))


if __name__ == "__main__":
    main()
