#!/usr/bin/env python3
"""PyTorch's side of packages/kernels/bench/bench-conv.ts (pnpm bench:conv), in the same run.

One conv2d layer, forward and backward as training runs it: y = F.conv2d(x, w, b,
padding), then y.backward(dy) with x, w and b requiring gradients (input, weight and
bias gradients), on float32 CPU tensors in PyTorch's default (NCHW) layout.

Protocol (bench-conv.ts keeps one process running): the first stdout line is
{"version", "threads", "mkldnn"}; then one JSON request per stdin line,
{"x": [n, c, h, w], "w": [k, c, r, s], "pad": p, "threads": t, "seconds": s}, answered
by one line {"ms": median milliseconds per forward + backward, "threads": t}.
torch.set_num_threads(t) applies to that request.

  echo '{"x": [32, 3, 32, 32], "w": [32, 3, 3, 3], "pad": 1, "threads": 1, "seconds": 0.3}' \\
    | /usr/bin/python3 tools/bench_conv_torch.py
"""
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F


def measure(req):
    torch.set_num_threads(int(req["threads"]))
    torch.manual_seed(0)
    x = torch.randn(*req["x"], requires_grad=True)
    w = torch.randn(*req["w"], requires_grad=True)
    b = torch.randn(req["w"][0], requires_grad=True)
    pad = int(req["pad"])
    dy = torch.randn_like(F.conv2d(x, w, b, padding=pad))

    def step():
        # gradients set to None as zero_grad(set_to_none=True) does: fresh each time
        x.grad = w.grad = b.grad = None
        F.conv2d(x, w, b, padding=pad).backward(dy)

    for _ in range(2):
        step()
    times = []
    deadline = time.perf_counter() + float(req.get("seconds", 0.3))
    while len(times) < 5 or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"ms": statistics.median(times), "threads": torch.get_num_threads()}


def main():
    hello = {"version": torch.__version__, "threads": torch.get_num_threads(),
             "mkldnn": torch.backends.mkldnn.is_available()}
    print(json.dumps(hello), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(measure(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
