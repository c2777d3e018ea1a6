#!/usr/bin/python3
"""PyTorch's answers for core's data module: fixtures/sampler.json.

DistributedSampler (torch 1.13) with shuffle=False, for dataset lengths 0-17
and 1-4 replicas, with and without drop_last: every rank's indices and
len(sampler). The shuffled orders are not recorded: core's permutation is
not torch.randperm's (different generator), only the rules are the same.
Also DataLoader batch sizes (batch_size, drop_last) over a range dataset.
Run with Debian's /usr/bin/python3 (python3-torch).
"""
import json
import os

import torch
from torch.utils.data import DataLoader, DistributedSampler

LENGTHS = [0, 1, 2, 3, 4, 5, 7, 8, 10, 13, 16, 17]


def main():
    sampler_cases = []
    for n in LENGTHS:
        for replicas in range(1, 5):
            for drop_last in (False, True):
                ranks = []
                for rank in range(replicas):
                    s = DistributedSampler(list(range(n)), num_replicas=replicas, rank=rank,
                                           shuffle=False, drop_last=drop_last)
                    ranks.append({'length': len(s), 'indices': list(iter(s))})
                sampler_cases.append({'n': n, 'numReplicas': replicas, 'dropLast': drop_last,
                                      'totalSize': ranks[0]['length'] * replicas, 'ranks': ranks})
    loader_cases = []
    for n in (0, 1, 5, 10, 13):
        for batch in (1, 3, 5, 16):
            for drop_last in (False, True):
                batches = [b.tolist() for b in DataLoader(list(range(n)), batch_size=batch, drop_last=drop_last)]
                loader_cases.append({'n': n, 'batchSize': batch, 'dropLast': drop_last, 'batches': batches})
    out = {'torch': torch.__version__, 'sampler': sampler_cases, 'loader': loader_cases}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures', 'sampler.json')
    with open(path, 'w') as f:
        json.dump(out, f, separators=(',', ':'))
        f.write('\n')
    print(f'wrote {path}: {len(sampler_cases)} sampler cases, {len(loader_cases)} loader cases')


if __name__ == '__main__':
    main()
