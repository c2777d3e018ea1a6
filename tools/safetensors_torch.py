#!/usr/bin/python3
"""safetensors load/save for PyTorch, for the checkpoint round-trip test.

Debian has no python3-safetensors (and the test runs with Debian's
/usr/bin/python3 and its python3-torch, no pip), so this file reads and
writes the format itself with json + struct + torch.frombuffer, as the Rust
implementation lays it out: an 8-byte little-endian header length, a JSON
header ({name: {dtype, shape, data_offsets}}, "__metadata__": {str: str})
padded with spaces to a multiple of 8, then the tensors by decreasing
alignment and name. load_file/save_file mirror safetensors.torch's.

Commands (used by packages/bagua/test/checkpoint.test.ts):
  eval <ckpt> <input> <output>      builds Net, load_state_dict(load_file(ckpt)) (strict),
                                    eval() on input['x'], writes output['y']
  train-save <seed> <ckpt> <input> <output>
                                    builds Net (torch.manual_seed(seed)), trains 3 SGD steps on
                                    input['x'] (moving the batch-norm statistics), saves its
                                    state_dict with save_file, writes eval() output['y']
  optim <ckpt.optim> <ckpt>         loads an optimizer file (param_groups JSON in its metadata) into
                                    torch.optim.AdamW over Net's parameters and prints its state keys
"""
import json
import struct
import sys

import torch

DTYPES = {
    'F32': torch.float32, 'F16': torch.float16, 'BF16': torch.bfloat16, 'F64': torch.float64,
    'I64': torch.int64, 'I32': torch.int32, 'I16': torch.int16, 'I8': torch.int8, 'U8': torch.uint8,
    'BOOL': torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}


def save_file(tensors, path, metadata=None):
    items = sorted(tensors.items(), key=lambda kv: (-kv[1].element_size(), kv[0]))
    header = {}
    if metadata is not None:
        header['__metadata__'] = metadata
    offset = 0
    blobs = []
    for name, t in items:
        t = t.detach().contiguous().cpu()
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b''
        header[name] = {'dtype': NAMES[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(',', ':')).encode('utf-8')
    text += b' ' * ((8 - len(text) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def load_file_with_metadata(path):
    with open(path, 'rb') as f:
        raw = f.read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n].decode('utf-8'))
    metadata = header.pop('__metadata__', {})
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        begin, end = info['data_offsets']
        dtype = DTYPES[info['dtype']]
        if end > begin:
            t = torch.frombuffer(bytearray(data[begin:end]), dtype=dtype)
        else:
            t = torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info['shape'])
    return out, metadata


def load_file(path):
    return load_file_with_metadata(path)[0]


class Block(torch.nn.Module):
    """A residual block, as the test's TypeScript Net has it."""

    def __init__(self, c):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(c)
        self.conv2 = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(c)

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + x)


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
        self.layer1 = torch.nn.Sequential(Block(4))
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x):
        x = self.layer1(self.stem(x))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


def main(argv):
    torch.set_num_threads(1)
    cmd = argv[0]
    if cmd == 'eval':
        ckpt, inp, out = argv[1:]
        net = Net()
        net.load_state_dict(load_file(ckpt))  # strict: every key, PyTorch's names
        net.eval()
        with torch.no_grad():
            y = net(load_file(inp)['x'])
        save_file({'y': y}, out)
    elif cmd == 'train-save':
        seed, ckpt, inp, out = argv[1:]
        torch.manual_seed(int(seed))
        net = Net()
        x = load_file(inp)['x']
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        for _ in range(3):
            opt.zero_grad()
            net(x).square().mean().backward()
            opt.step()
        save_file(net.state_dict(), ckpt, {'format': 'pt'})
        net.eval()
        with torch.no_grad():
            save_file({'y': net(x)}, out)
    elif cmd == 'optim':
        path, ckpt = argv[1:]
        tensors, metadata = load_file_with_metadata(path)
        state = json.loads(metadata['bagua.optimizer'])

        def restore(v):
            if isinstance(v, dict) and list(v) == ['__tensor__']:
                return tensors[v['__tensor__']]
            if isinstance(v, dict):
                return {k: restore(x) for k, x in v.items()}
            if isinstance(v, list):
                return [restore(x) for x in v]
            return v
        state = restore(state)
        state['state'] = {int(k): v for k, v in state['state'].items()}
        net = Net()
        net.load_state_dict(load_file(ckpt))
        opt = torch.optim.AdamW(net.parameters(), lr=1.0)
        opt.load_state_dict(state)
        print(json.dumps({'groups': [{k: v for k, v in g.items() if k != 'params'} for g in opt.state_dict()['param_groups']],
                          'state': {str(i): sorted(s.keys()) for i, s in opt.state_dict()['state'].items()},
                          'exp_avg_sum': float(sum(s['exp_avg'].sum() for s in opt.state.values()))}))
    else:
        raise SystemExit(f'unknown command {cmd}')


if __name__ == '__main__':
    main(sys.argv[1:])
