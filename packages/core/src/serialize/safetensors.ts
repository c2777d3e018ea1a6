/**
 * The safetensors format (huggingface/safetensors), read and written here:
 * no npm package for it is kept up (the one named `safetensors` is a single
 * 0.0.1 release with no repository).
 *
 *   [8 bytes: N, unsigned little-endian] [N bytes: JSON header] [data]
 *
 * The header maps each tensor name to {dtype, shape, data_offsets: [begin,
 * end)} (offsets into the data, which follows the header), plus an optional
 * "__metadata__" map of strings. As the Rust implementation does, the header
 * is padded with spaces to a multiple of 8 bytes, tensors are laid out by
 * decreasing alignment then name (so each is aligned in the file), and a
 * reader demands the offsets tile the data exactly, in order.
 */
import { bytesPerElement, hostArray, type DType } from '../dtype.js';
import { endianness } from 'node:os';
import { fmt, numelOf } from '../shape.js';
import { Tensor } from '../tensor.js';
import type { HostTensor } from '../data/sample.js';

/** The Rust implementation's limit on the header (HeaderTooLarge). */
export const MAX_HEADER_BYTES = 100_000_000;

const TO_FILE: Record<DType, string> = {
  float32: 'F32', float16: 'F16', bfloat16: 'BF16', int32: 'I32', int64: 'I64', uint8: 'U8',
};
const FROM_FILE: Record<string, DType> = Object.fromEntries(Object.entries(TO_FILE).map(([k, v]) => [v, k as DType]));
/** The format's other dtypes: named in the error that refuses them. */
const KNOWN_UNSUPPORTED = ['BOOL', 'I8', 'I16', 'U16', 'U32', 'U64', 'F64', 'F8_E4M3', 'F8_E5M2'];

export interface Contents {
  tensors: Record<string, HostTensor>;
  metadata: Record<string, string>;
}

function hostOf(name: string, t: Tensor | HostTensor): HostTensor {
  if (t instanceof Tensor) return { data: t.toArray(), shape: t.shape, dtype: t.dtype };
  if (t.data.length !== numelOf(t.shape)) throw new Error(`safetensors: '${name}' has ${t.data.length} values for shape ${fmt(t.shape)}`);
  return t;
}

/** The bytes of a safetensors file holding `tensors` (copied to the host) and `metadata`. */
export function serialize(tensors: Readonly<Record<string, Tensor | HostTensor>>, metadata?: Readonly<Record<string, string>>): Buffer {
  littleEndian();
  const entries = Object.entries(tensors).map(([name, t]) => {
    if (name === '__metadata__') throw new Error("safetensors: '__metadata__' is reserved and cannot name a tensor");
    return [name, hostOf(name, t)] as const;
  });
  // decreasing alignment, then name: every tensor starts aligned to its element size
  entries.sort(([a, x], [b, y]) => bytesPerElement(y.dtype) - bytesPerElement(x.dtype) || (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new Error(`safetensors: metadata '${k}' must be a string, got ${typeof v}`);
    }
    header['__metadata__'] = metadata;
  }
  let offset = 0;
  for (const [name, t] of entries) {
    const bytes = t.data.length * bytesPerElement(t.dtype);
    header[name] = { dtype: TO_FILE[t.dtype], shape: [...t.shape], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  if (json.length > MAX_HEADER_BYTES) throw new Error(`safetensors: header of ${json.length} bytes exceeds ${MAX_HEADER_BYTES}`);
  const out = Buffer.alloc(8 + json.length + offset);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  let at = 8 + json.length;
  for (const [, t] of entries) {
    const src = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    src.copy(out, at);
    at += src.length;
  }
  return out;
}

/** The format is little-endian and the data is copied as the host holds it. */
function littleEndian(): void {
  if (endianness() !== 'LE') throw new Error('safetensors: this host is big-endian; the format is little-endian and no byte swap is implemented');
}

function fail(source: string, why: string): never {
  throw new Error(`safetensors: ${source}: ${why}`);
}

/** Parses a safetensors file's bytes; every malformation is an error naming it. Tensor data is copied out. */
export function deserialize(bytes: Uint8Array, source = 'input'): Contents {
  littleEndian();
  if (bytes.length < 8) fail(source, `${bytes.length} bytes is too short for the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES)) fail(source, `header length ${n} exceeds the limit of ${MAX_HEADER_BYTES} bytes`);
  const headerBytes = Number(n);
  if (8 + headerBytes > bytes.length) fail(source, `header length ${headerBytes} runs past the end of the ${bytes.length}-byte file`);
  const text = new TextDecoder('utf-8', { fatal: true });
  let header: unknown;
  try {
    const s = text.decode(bytes.subarray(8, 8 + headerBytes));
    if (!s.startsWith('{')) fail(source, 'the header does not start with \'{\'');
    header = JSON.parse(s);
  } catch (e) {
    if (e instanceof Error && e.message.startsWith('safetensors:')) throw e;
    fail(source, `the header is not valid UTF-8 JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail(source, 'the header is not a JSON object');
  const dataStart = 8 + headerBytes;
  const dataLength = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const infos: { name: string; dtype: DType; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, info] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof info !== 'object' || info === null || Array.isArray(info)) fail(source, '__metadata__ is not an object');
      for (const [k, v] of Object.entries(info as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(source, `__metadata__ '${k}' is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const t = info as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof t !== 'object' || t === null) fail(source, `'${name}' is not a tensor entry`);
    if (typeof t.dtype !== 'string') fail(source, `'${name}' has no dtype`);
    const dtype = FROM_FILE[t.dtype];
    if (!dtype) {
      fail(source, KNOWN_UNSUPPORTED.includes(t.dtype)
        ? `'${name}' has dtype ${t.dtype}, which this library does not hold (it holds ${Object.keys(FROM_FILE).join(', ')})`
        : `'${name}' has an unknown dtype '${t.dtype}'`);
    }
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(source, `'${name}' has a bad shape ${JSON.stringify(t.shape)}`);
    }
    const off = t.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(source, `'${name}' has bad data_offsets ${JSON.stringify(off)}`);
    }
    const [begin, end] = off as [number, number];
    if (end < begin) fail(source, `'${name}' has data_offsets [${begin}, ${end}] that end before they begin`);
    if (end > dataLength) fail(source, `'${name}' has data_offsets [${begin}, ${end}] out of range: the data holds ${dataLength} bytes`);
    const shape = t.shape as number[];
    const want = numelOf(shape) * bytesPerElement(dtype);
    if (end - begin !== want) {
      fail(source, `'${name}' (${t.dtype} ${fmt(shape)}) needs ${want} bytes but its data_offsets [${begin}, ${end}] hold ${end - begin}`);
    }
    infos.push({ name, dtype, shape, begin, end });
  }
  // the Rust reader's rule: the tensors tile the data exactly, in offset order
  const byOffset = [...infos].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const t of byOffset) {
    if (t.begin < at) {
      const other = byOffset.find((o) => o !== t && o.begin < t.end && t.begin < o.end)?.name ?? 'another tensor';
      fail(source, `'${t.name}' [${t.begin}, ${t.end}) overlaps '${other}'`);
    }
    if (t.begin > at) fail(source, `the data has a gap at bytes [${at}, ${t.begin}) before '${t.name}'`);
    at = t.end;
  }
  if (at !== dataLength) fail(source, `the tensors cover ${at} of the ${dataLength} data bytes`);
  const tensors: Record<string, HostTensor> = {};
  for (const t of infos) {
    const data = hostArray(t.dtype, numelOf(t.shape));
    // a copy: the file's offsets need not be aligned for this dtype
    new Uint8Array(data.buffer, data.byteOffset, data.byteLength).set(bytes.subarray(dataStart + t.begin, dataStart + t.end));
    tensors[t.name] = { data, shape: t.shape, dtype: t.dtype };
  }
  return { tensors, metadata };
}

