#!/usr/bin/env python3
"""PyTorch gloo reference for `pnpm bench:comm` (packages/comm/bench/bench-comm.ts).

Spawns N processes on 127.0.0.1 with torch.distributed's gloo backend and
measures, exactly as bench-comm.ts does for bagua's backends:
  - latency: median over iterations of the per-op wall time on rank 0 of
    all_reduce(SUM) and all_gather of `count` float32 elements;
  - bandwidth: median time of an all_reduce of `--bw-bytes` bytes of float32,
    reported as algbw = bytes / t and busbw = algbw * 2(n-1)/n;
  - bandwidths: the same at each of `--bw-sizes` bytes (iterations and
    warm-up per size as in bench-comm-rank.ts: iters_for, warmup_for).
Prints one JSON object on stdout.

With --serve FIFO (bench-comm.ts's paired table) it serves timed blocks instead, as
bench-comm-rank.ts does with BAGUA_BENCH_FIFO: rank 0 reads `bw <bytes>` /
`quit` lines from FIFO, broadcasts them, every rank runs one bandwidth block
and rank 0 prints `BLOCK <json>` (flushed) for each.

  python3 tools/bench_torch_gloo.py --world-size 2 --counts 129,513,2049
"""
import argparse
import json
import os
import socket
import statistics
import sys
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def iters_for(args, nbytes):
    return max(args.bw_iters, min(200, (256 << 20) // nbytes))


def warmup_for(iters):
    return max(1, min(20, iters >> 3))


def serve(args, rank, n, timed):
    import torch
    import torch.distributed as dist

    fifo = open(args.serve, "r") if rank == 0 else None
    buffers = {}
    cmd = torch.zeros(2, dtype=torch.float64)  # [1 = bandwidth block | 0 = quit, bytes]
    while True:
        if rank == 0:
            line = (fifo.readline() or "quit").strip()  # EOF: the driver closed the FIFO
            parts = line.split()
            if line != "quit" and not (len(parts) == 2 and parts[0] == "bw" and parts[1].isdigit()):
                raise ValueError(f"bench_torch_gloo: unknown command {line!r}")
            cmd[0] = 0 if line == "quit" else 1
            cmd[1] = 0 if line == "quit" else int(parts[1])
        dist.broadcast(cmd, 0)
        if cmd[0] == 0:
            break
        nbytes = int(cmd[1])
        if nbytes not in buffers:
            buffers[nbytes] = torch.ones(nbytes // 4, dtype=torch.float32)
        big = buffers[nbytes]
        iters = iters_for(args, nbytes)
        t = timed(lambda: dist.all_reduce(big), iters, warmup_for(iters))
        algbw = nbytes / t / 1e9
        if rank == 0:
            r = {"bytes": nbytes, "time_us": t * 1e6, "algbw_gbs": algbw, "busbw_gbs": algbw * 2 * (n - 1) / n}
            print("BLOCK " + json.dumps(r), flush=True)
    if fifo:
        fifo.close()


def worker(rank, args, port, queue):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=args.world_size
    )
    n = args.world_size
    out = {"latency": {}, "bandwidth": None}

    def timed(fn, iters, warmup):
        for _ in range(warmup):
            fn()
        dist.barrier()
        ts = []
        for _ in range(iters):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    if args.serve:
        serve(args, rank, n, timed)
        dist.destroy_process_group()
        return

    for count in args.counts:
        x = torch.ones(count, dtype=torch.float32)
        ar = timed(lambda: dist.all_reduce(x), args.iters, args.warmup)
        outs = [torch.empty(count, dtype=torch.float32) for _ in range(n)]
        ag = timed(lambda: dist.all_gather(outs, x), args.iters, args.warmup)
        out["latency"][str(count)] = {"allreduce_us": ar * 1e6, "allgather_us": ag * 1e6}

    def bandwidth(nbytes):
        big = torch.ones(nbytes // 4, dtype=torch.float32)
        iters = iters_for(args, nbytes)
        t = timed(lambda: dist.all_reduce(big), iters, warmup_for(iters))
        algbw = nbytes / t / 1e9
        return {"bytes": nbytes, "time_us": t * 1e6, "algbw_gbs": algbw, "busbw_gbs": algbw * 2 * (n - 1) / n}

    out["bandwidths"] = [bandwidth(b) for b in args.bw_sizes if b > 0]
    if args.bw_bytes > 0:
        out["bandwidth"] = next((b for b in out["bandwidths"] if b["bytes"] == args.bw_bytes), None) or bandwidth(args.bw_bytes)
    dist.barrier()
    if rank == 0:
        queue.put(out)
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--world-size", type=int, default=2)
    p.add_argument("--counts", type=lambda s: [int(v) for v in s.split(",") if v], default=[129, 513, 2049])
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--bw-bytes", type=int, default=16 << 20)
    p.add_argument("--bw-iters", type=int, default=10)
    p.add_argument("--bw-sizes", type=lambda s: [int(v) for v in s.split(",") if v], default=[])
    p.add_argument("--serve", default="", help="serve bandwidth blocks read from this FIFO (bench-comm.ts's paired table)")
    args = p.parse_args()

    import torch
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=worker, args=(r, args, port, queue)) for r in range(args.world_size)]
    for proc in procs:
        proc.start()
    if args.serve:
        for proc in procs:
            proc.join()
        return 0 if all(proc.exitcode == 0 for proc in procs) else 1
    result = queue.get(timeout=600)
    for proc in procs:
        proc.join(60)
    result.update({"backend": "torch-gloo", "torch": torch.__version__, "world_size": args.world_size})
    print(json.dumps(result))
    return 0 if all(proc.exitcode == 0 for proc in procs) else 1


if __name__ == "__main__":
    sys.exit(main())
