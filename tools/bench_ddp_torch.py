#!/usr/bin/env python3
"""PyTorch's side of packages/bagua/bench/bench-ddp.ts (pnpm bench:ddp), in the same run.

The CIFAR-style step of bench:step (conv3x3 3-32-32-64-64, each with BatchNorm2d and
ReLU, max pool after the second, global average pool, Linear(64, 10); cross-entropy,
SGD lr 0.01 momentum 0.9) on a batch of [B, 3, 32, 32] per rank.

  --mode ddp     --world-size P ranks, started with torch.multiprocessing (spawn), each
                 one thread (torch.set_num_threads(1), OMP_NUM_THREADS=1), gloo over
                 127.0.0.1; the model wrapped in DistributedDataParallel with its
                 defaults (25 MiB buckets, all-reduce overlapped with backward by its
                 hooks, broadcast_buffers=True); a barrier before each step, so a step is
                 timed as the slowest rank sees it.
  --mode single  one process, no group, no wrapper: the compute floor.
  --bn syncbn    nn.SyncBatchNorm.convert_sync_batchnorm first. PyTorch 1.13 refuses CPU
                 modules there (DDP's constructor; the layer's forward too); the job then reports {"unsupported": <its message>}
                 instead of times, so the caller prints n/a (nothing is substituted).

Prints one JSON line: {"version", "mode", "world", "bn", "threads": [per rank],
"ms": [per step, slowest rank]} or {"unsupported": msg, ...}.

  /usr/bin/python3 tools/bench_ddp_torch.py --mode ddp --world-size 2 [--bn bn] [--batch 16] [--warmup 5] [--steps 20]
"""
import argparse
import json
import os
import socket
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported, here and in spawned ranks

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
import torch.nn as nn  # noqa: E402


def make_model():
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(
        *block(3, 32), *block(32, 32), nn.MaxPool2d(2),
        *block(32, 64), *block(64, 64),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )


def run(rank, world, args, port, queue):
    torch.set_num_threads(1)
    distributed = args.mode == "ddp"
    if distributed:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    unsupported = None
    times = []
    try:
        torch.manual_seed(0)
        model = make_model().train()
        if args.bn == "syncbn":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if distributed:
            model = nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        torch.manual_seed(100 + rank)
        x = torch.randn(args.batch, 3, 32, 32)
        target = (torch.arange(args.batch) + rank) % 10

        def step():
            loss = loss_fn(model(x), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        for i in range(args.warmup + args.steps):
            if distributed:
                dist.barrier()
            t0 = time.perf_counter()
            step()
            if i >= args.warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    except (ValueError, RuntimeError) as e:
        # SyncBatchNorm on CPU: every rank fails the same way (DDP's constructor or the first forward).
        unsupported = str(e).split("\n")[0]
    out = {"version": torch.__version__, "mode": args.mode, "world": world, "bn": args.bn}
    if unsupported is not None:
        out["unsupported"] = unsupported
    else:
        mine = torch.tensor(times + [float(torch.get_num_threads())], dtype=torch.float64)
        rows = [torch.zeros_like(mine) for _ in range(world)]
        if distributed:
            dist.all_gather(rows, mine)
        else:
            rows = [mine]
        out["threads"] = [int(r[-1]) for r in rows]
        out["ms"] = [max(float(r[s]) for r in rows) for s in range(args.steps)]
    if distributed and unsupported is None:
        dist.barrier()
    if rank == 0:
        queue.put(out)
    if distributed:
        # Leave without tearing the group down: ProcessGroupGloo's destructor (run when the DDP
        # Reducer goes) joins a gloo thread that waits for the GIL this thread holds, and at 4
        # ranks that hung a rank for good. The result is already in the queue's pipe.
        sys.stdout.flush()
        os._exit(0)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["ddp", "single"], default="ddp")
    ap.add_argument("--world-size", type=int, default=2)
    ap.add_argument("--bn", choices=["bn", "syncbn"], default="bn")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    if args.mode == "single":
        run(0, 1, args, 0, queue)
    else:
        mp.spawn(run, args=(args.world_size, args, free_port(), queue), nprocs=args.world_size, join=True)
    print(json.dumps(queue.get()), flush=True)


if __name__ == "__main__":
    sys.exit(main())
