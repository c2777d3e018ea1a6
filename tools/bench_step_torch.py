#!/usr/bin/env python3
"""PyTorch's side of packages/kernels/bench/bench-step.ts (pnpm bench:step), in the same run.

The CIFAR-style training step: Conv2d 3-32-32-64-64 (3x3, padding 1), each followed
by BatchNorm2d and ReLU, MaxPool2d(2) after the second, global average pool,
Linear(64, 10); a batch of [B, 3, 32, 32] with int64 class targets, cross-entropy,
SGD(lr 0.01, momentum 0.9); the plain synchronous loop: forward, loss, zero_grad,
backward, step. Same model and loop as the TypeScript side.

Protocol (bench-step.ts keeps one process running): the first stdout line is
{"version", "threads"}; then one JSON request per stdin line,
{"threads": N, "warmup": W, "steps": S}, answered by one line {"ms": [S step times],
"cpuMs": [S step CPU times of the whole process, all threads], "threads": N}.
torch.set_num_threads(N) applies to the steps of that request.

  /usr/bin/python3 tools/bench_step_torch.py [--batch 32]
  echo '{"threads": 1, "warmup": 3, "steps": 20}' | /usr/bin/python3 tools/bench_step_torch.py
"""
import argparse
import json
import sys
import time

import torch
import torch.nn as nn


def make_model():
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(
        *block(3, 32), *block(32, 32), nn.MaxPool2d(2),
        *block(32, 64), *block(64, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--batch', type=int, default=32)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = make_model().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(args.batch, 3, 32, 32)
    target = torch.arange(args.batch) % 10

    def step():
        loss = loss_fn(model(x), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    print(json.dumps({"version": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        threads = int(req.get("threads", 1))
        torch.set_num_threads(threads)
        for _ in range(int(req.get("warmup", 3))):
            step()
        times, cpu = [], []
        for _ in range(int(req.get("steps", 20))):
            c0 = time.process_time()
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
            cpu.append((time.process_time() - c0) * 1e3)
        print(json.dumps({"ms": times, "cpuMs": cpu, "threads": torch.get_num_threads()}), flush=True)


if __name__ == '__main__':
    main()
