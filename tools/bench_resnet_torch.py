#!/usr/bin/python3
"""PyTorch's single-process training throughput for examples/resnet's network, to set
beside `pnpm --filter resnet-example train` (4 thread ranks): the same net (ResNet-20,
He et al.'s CIFAR version with option-A shortcuts, 1 input channel, 10 classes, from
tools/gen-layer-fixtures.py), the same global batch, AdamW, cross-entropy, on [B, 1, 32, 32]
inputs, with torch.set_num_threads(--threads).

  /usr/bin/python3 tools/bench_resnet_torch.py --batch 128 --threads 2 [--steps 30] [--arch resnet18]

Prints one JSON line: {"torch", "arch", "batch", "threads", "steps", "imagesPerSecond", "msPerStep"}.
"""
import argparse
import importlib.util
import json
import os
import time

import torch
import torch.nn.functional as F


def resnet20():
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'gen-layer-fixtures.py')
    spec = importlib.util.spec_from_file_location('gen_layer_fixtures', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.ResNet20(in_channels=1, num_classes=10)


def resnet18():
    import torchvision  # noqa: F401  (Debian's python3-torchvision, when installed)
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = torch.nn.Conv2d(1, 64, 3, 1, 1, bias=False)
    net.maxpool = torch.nn.Identity()
    return net


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--arch', default='resnet20', choices=['resnet20', 'resnet18'])
    ap.add_argument('--batch', type=int, default=128)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--steps', type=int, default=30)
    ap.add_argument('--warmup', type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = resnet20() if a.arch == 'resnet20' else resnet18()
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=0.002, weight_decay=0.0005)
    x = torch.randn(a.batch, 1, 32, 32)
    y = torch.randint(0, 10, (a.batch,))
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    total = sum(times)
    print(json.dumps({'torch': torch.__version__, 'arch': a.arch, 'batch': a.batch, 'threads': a.threads, 'steps': a.steps,
                      'imagesPerSecond': round(a.batch * a.steps / total, 1), 'msPerStep': round(1000 * total / a.steps, 2)}))


if __name__ == '__main__':
    main()
