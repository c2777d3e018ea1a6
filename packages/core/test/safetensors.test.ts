/**
 * core's safetensors reader/writer (serialize/), PyTorch's state-dict names, and
 * the flattening of nested (optimizer) state. Interoperation with PyTorch itself is
 * tested in packages/bagua/test/checkpoint.test.ts.
 */
import test from 'ava';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { useReferenceBackend } from './helpers/reference-backend.js';
import { nn, serialize, tensor, type Tensor } from '../src/index.js';

useReferenceBackend();

const sample = () => ({
  'a.f32': { data: Float32Array.of(1.5, -2, 3.25, 0), shape: [2, 2], dtype: 'float32' as const },
  'b.i64': { data: BigInt64Array.of(7n, -9007199254740993n), shape: [2], dtype: 'int64' as const },
  'c.u8': { data: Uint8Array.of(1, 2, 3), shape: [3, 1], dtype: 'uint8' as const },
  'd.i32': { data: Int32Array.of(-5), shape: [], dtype: 'int32' as const },
  'e.f16': { data: Uint16Array.of(0x3c00, 0xc000), shape: [2], dtype: 'float16' as const },
  'f.bf16': { data: Uint16Array.of(0x3f80), shape: [1], dtype: 'bfloat16' as const },
  'g.empty': { data: new Float32Array(0), shape: [0, 3], dtype: 'float32' as const },
});

/** The header length and JSON of a file. */
function headerOf(bytes: Buffer): { n: number; text: string; json: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> } {
  const n = Number(bytes.readBigUInt64LE(0));
  const text = bytes.subarray(8, 8 + n).toString('utf8');
  return { n, text, json: JSON.parse(text) };
}

/** A file with the given header object and data bytes (the header unpadded). */
function file(header: unknown, data: number[] | Buffer = [], rawHeader?: string): Buffer {
  const json = Buffer.from(rawHeader ?? JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, Buffer.from(data)]);
}

test('every dtype, a scalar and an empty tensor survive a round trip, with metadata', (t) => {
  const bytes = serialize.serialize(sample(), { format: 'pt', note: 'ü' });
  const back = serialize.deserialize(bytes);
  t.deepEqual(back.metadata, { format: 'pt', note: 'ü' });
  for (const [k, v] of Object.entries(sample())) {
    t.deepEqual(back.tensors[k].shape, v.shape, k);
    t.is(back.tensors[k].dtype, v.dtype, k);
    t.deepEqual(Array.from(back.tensors[k].data as ArrayLike<number | bigint>), Array.from(v.data as ArrayLike<number | bigint>), k);
  }
});

test('the layout is the Rust implementation\'s: header padded with spaces to 8 bytes, tensors by decreasing alignment then name, tiling the data', (t) => {
  const bytes = serialize.serialize(sample());
  const { n, text, json } = headerOf(bytes);
  t.is(n % 8, 0, 'header length is a multiple of 8');
  t.regex(text, /^\{.*\} *$/, 'padded with spaces');
  t.is(text.trimEnd().length + ((8 - (text.trimEnd().length % 8)) % 8), n, 'no more padding than needed');
  const order = Object.entries(json).sort(([, a], [, b]) => a.data_offsets[0] - b.data_offsets[0] || a.data_offsets[1] - b.data_offsets[1]).map(([k]) => k);
  t.deepEqual(order, ['b.i64', 'a.f32', 'd.i32', 'g.empty', 'e.f16', 'f.bf16', 'c.u8']);
  for (const [k, e] of Object.entries(json)) {
    const size = { I64: 8, F32: 4, I32: 4, F16: 2, BF16: 2, U8: 1 }[e.dtype]!;
    t.is((8 + n + e.data_offsets[0]) % size, 0, `${k} is aligned in the file`);
  }
  t.is(json['b.i64'].dtype, 'I64');
  t.deepEqual(json['a.f32'], { dtype: 'F32', shape: [2, 2], data_offsets: [16, 32] });
  t.is(bytes.length, 8 + n + 16 + 16 + 4 + 0 + 4 + 2 + 3);
});

test('malformed files are refused with an error naming the fault', (t) => {
  const bad = (bytes: Buffer, why: RegExp) => t.throws(() => serialize.deserialize(bytes, 'x.safetensors'), { message: why });
  const f32 = (off: [number, number], shape = [1]) => ({ dtype: 'F32', shape, data_offsets: off });
  bad(Buffer.alloc(5), /x\.safetensors: 5 bytes is too short/);
  const huge = Buffer.alloc(16);
  huge.writeBigUInt64LE(200_000_000n);
  bad(huge, /header length 200000000 exceeds the limit of 100000000 bytes/);
  const past = Buffer.alloc(16);
  past.writeBigUInt64LE(64n);
  bad(past, /header length 64 runs past the end of the 16-byte file/);
  bad(file(null, [], '  {}'), /does not start with '\{'/);
  bad(file(null, [], '{"a": '), /not valid UTF-8 JSON/);
  bad(file(null, [], '[1]'), /does not start with/);
  bad(file({ w: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }, Array(8).fill(0)), /'w' has dtype F64, which this library does not hold/);
  bad(file({ w: { dtype: 'Q7', shape: [1], data_offsets: [0, 4] } }, [0, 0, 0, 0]), /'w' has an unknown dtype 'Q7'/);
  bad(file({ w: { shape: [1], data_offsets: [0, 4] } }, [0, 0, 0, 0]), /'w' has no dtype/);
  bad(file({ w: f32([0, 4], [-1]) }, [0, 0, 0, 0]), /'w' has a bad shape \[-1\]/);
  bad(file({ w: { dtype: 'F32', shape: [1], data_offsets: [0] } }, [0, 0, 0, 0]), /'w' has bad data_offsets \[0\]/);
  bad(file({ w: f32([0, 8]) }, [0, 0, 0, 0]), /'w' has data_offsets \[0, 8\] out of range: the data holds 4 bytes/);
  bad(file({ w: f32([4, 0]) }, [0, 0, 0, 0]), /end before they begin/);
  bad(file({ w: f32([0, 8], [1]) }, Array(8).fill(0)), /'w' \(F32 \[1\]\) needs 4 bytes but its data_offsets \[0, 8\] hold 8/);
  bad(file({ v: f32([0, 8], [2]), w: f32([4, 8]) }, Array(8).fill(0)), /'w' \[4, 8\) overlaps 'v'/);
  bad(file({ w: f32([4, 8]) }, Array(8).fill(0)), /a gap at bytes \[0, 4\) before 'w'/);
  bad(file({ w: f32([0, 4]) }, Array(8).fill(0)), /the tensors cover 4 of the 8 data bytes/);
  bad(file({ __metadata__: { n: 1 } }), /__metadata__ 'n' is not a string/);
  t.throws(() => serialize.serialize({ __metadata__: { data: new Float32Array(1), shape: [1], dtype: 'float32' } }), { message: /reserved/ });
  t.throws(() => serialize.serialize({ w: { data: new Float32Array(3), shape: [2], dtype: 'float32' } }), { message: /'w' has 3 values for shape \[2\]/ });
  // a well-formed file the Rust layout allows with an unpadded header, read as is
  t.deepEqual(Array.from(serialize.deserialize(file({ w: f32([0, 4]) }, Buffer.from(Float32Array.of(2.5).buffer))).tensors.w.data as Float32Array), [2.5]);
});

class Net extends nn.Module {
  constructor() {
    super();
    this.addModule('conv', new nn.Conv2d(1, 2, 3));
    this.addModule('bn', new nn.BatchNorm2d(2));
    this.addModule('fc', new nn.Sequential(new nn.Linear(2, 2)));
  }
  forward(x: Tensor): Tensor { return x; }
}

test('state dicts with PyTorch\'s names: snake_case entries, dotted paths; loadStateDict takes either naming', (t) => {
  t.is(serialize.torchStateName('layer1.0.bn1.runningMean'), 'layer1.0.bn1.running_mean');
  t.is(serialize.torchStateName('numBatchesTracked'), 'num_batches_tracked');
  t.is(serialize.torchStateName('myBlock.weight'), 'myBlock.weight', 'module paths are kept as named');
  const net = new Net();
  t.deepEqual(Object.keys(net.stateDict({ torchNames: true })), ['conv.weight', 'conv.bias', 'bn.weight', 'bn.bias',
    'bn.running_mean', 'bn.running_var', 'bn.num_batches_tracked', 'fc.0.weight', 'fc.0.bias']);
  t.is(net.stateDict({ torchNames: true })['bn.num_batches_tracked'].dtype, 'int64');
  const other = new Net();
  const state = net.stateDict({ torchNames: true });
  state['bn.running_mean'] = tensor([4, 5]);
  state['bn.num_batches_tracked'] = tensor([3], { dtype: 'int64' });
  other.loadStateDict(state);
  t.deepEqual(Array.from((other as unknown as { bn: nn.BatchNorm2d }).bn.runningMean!.toArray() as Float32Array), [4, 5]);
  t.is((other as unknown as { bn: nn.BatchNorm2d }).bn.numBatchesTracked, 3);
  t.deepEqual(Array.from(other.stateDict()['conv.weight'].toArray() as Float32Array), Array.from(net.stateDict()['conv.weight'].toArray() as Float32Array));
  t.throws(() => other.loadStateDict({ ...state, 'bn.runningMean': tensor([1, 1]) }), { message: /both 'bn.runningMean' and PyTorch's name for it, 'bn.running_mean'/ });
  const { ['bn.running_var']: _gone, ...partial } = state;
  t.throws(() => other.loadStateDict(partial), { message: /missing keys \[bn.runningVar\]/ });
});

test('save and load a state dict through a file; the write leaves no temporary file', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'st-'));
  const net = new Net();
  const path = join(dir, 'net.safetensors');
  serialize.save(path, net.stateDict({ torchNames: true }), { format: 'pt' });
  t.deepEqual(readdirSync(dir), ['net.safetensors']);
  const loaded = serialize.load(path);
  t.is(loaded['bn.num_batches_tracked'].dtype, 'int64');
  const other = new Net();
  other.loadStateDict(loaded);
  for (const [k, v] of Object.entries(net.stateDict())) {
    t.deepEqual(Array.from(other.stateDict()[k].toArray() as ArrayLike<number | bigint>), Array.from(v.toArray() as ArrayLike<number | bigint>), k);
  }
  t.deepEqual(serialize.loadFile(path).metadata, { format: 'pt' });
  t.throws(() => serialize.load(join(dir, 'missing.safetensors')), { message: /ENOENT/ });
});

test('nested state (an optimizer\'s) flattens to named tensors plus JSON, and back', (t) => {
  const a = tensor([1, 2]);
  const b = tensor([3]);
  const state = { state: { 0: { exp_avg: a, step: 3 }, 2: { momentum_buffer: b } },
    param_groups: [{ lr: 0.1, betas: [0.9, 0.999], maximize: false, params: [0, 1, 2], eps: Infinity, foreach: null }] };
  const flat = serialize.flattenState(state);
  t.deepEqual(Object.keys(flat.tensors), ['state.0.exp_avg', 'state.2.momentum_buffer']);
  const back = serialize.unflattenState(flat.json, flat.tensors) as typeof state;
  t.is(back.state[0].exp_avg, a);
  t.is(back.state[2].momentum_buffer, b);
  t.deepEqual(back.param_groups, state.param_groups);
  t.is(back.state[0].step, 3);
  t.throws(() => serialize.unflattenState(flat.json, { 'state.0.exp_avg': a }), { message: /names tensor 'state.2.momentum_buffer', which is missing/ });
  t.throws(() => serialize.unflattenState(flat.json, { ...flat.tensors, extra: a }), { message: /tensors \[extra\] are not named/ });
  t.throws(() => serialize.flattenState({ f: () => 1 }), { message: /'f' is a function/ });
});
