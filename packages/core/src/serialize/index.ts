/**
 * Saving tensors to safetensors files and back: a module's state dict (with
 * PyTorch's names: `model.stateDict({ torchNames: true })`, which
 * `model.load_state_dict(safetensors.torch.load_file(path))` accepts), and
 * nested state such as an optimizer's (flattenState: the tensors in the
 * file, the rest as JSON in its metadata).
 */
import { readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Device, type DeviceLike } from '../device.js';
import { Tensor } from '../tensor.js';
import { tensorFromHost, type HostTensor } from '../data/sample.js';
import { deserialize, serialize, type Contents } from './safetensors.js';

export { serialize, deserialize, MAX_HEADER_BYTES, type Contents } from './safetensors.js';
export { torchStateName } from '../nn/module.js';

/**
 * Writes bytes to `path` atomically: a temporary file beside it, then a
 * rename, so a reader (or a crash) never sees half a file.
 */
export function writeFileAtomic(path: string, bytes: Uint8Array): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  try {
    writeFileSync(tmp, bytes);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** Saves tensors (copied to the host) and string metadata to a safetensors file, atomically. */
export function save(path: string, tensors: Readonly<Record<string, Tensor | HostTensor>>, metadata?: Readonly<Record<string, string>>): void {
  writeFileAtomic(path, serialize(tensors, metadata));
}

/** Reads a safetensors file as host arrays and its metadata. */
export function loadFile(path: string): Contents {
  return deserialize(readFileSync(path), path);
}

/** Reads a safetensors file into Tensors (on `device`, default cpu), e.g. for `model.loadStateDict`. */
export function load(path: string, opts: { device?: DeviceLike } = {}): Record<string, Tensor> {
  return toTensorRecord(loadFile(path).tensors, opts.device);
}

export function toTensorRecord(host: Readonly<Record<string, HostTensor>>, device: DeviceLike = 'cpu'): Record<string, Tensor> {
  const d = Device.parse(device);
  const out: Record<string, Tensor> = {};
  for (const [k, h] of Object.entries(host)) out[k] = tensorFromHost(h, d);
  return out;
}

/** A nested state (an optimizer's stateDict()) split into its tensors and the JSON of the rest. */
export interface FlatState {
  /** every tensor, named by its path: `state.0.exp_avg` */
  tensors: Record<string, Tensor>;
  /** the state as JSON, each tensor replaced by {"__tensor__": its name} */
  json: string;
}

/**
 * Splits a nested state into tensors and JSON. Numbers JSON cannot hold
 * (NaN, +-Infinity) and bigints are written as tagged strings.
 */
export function flattenState(state: unknown): FlatState {
  const tensors: Record<string, Tensor> = {};
  const walk = (v: unknown, path: string[]): unknown => {
    if (v instanceof Tensor) {
      const name = path.join('.');
      if (name in tensors) throw new Error(`flattenState: two tensors are named '${name}'`);
      tensors[name] = v;
      return { __tensor__: name };
    }
    if (typeof v === 'number') return Number.isFinite(v) ? v : { __number__: String(v) };
    if (typeof v === 'bigint') return { __bigint__: v.toString() };
    if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
    if (v === undefined) return null;
    if (Array.isArray(v)) return v.map((x, i) => walk(x, [...path, String(i)]));
    if (ArrayBuffer.isView(v)) throw new Error(`flattenState: '${path.join('.')}' is a typed array; make it a Tensor to save it`);
    if (typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = walk(x, [...path, k]);
      return out;
    }
    throw new Error(`flattenState: '${path.join('.')}' is a ${typeof v}, which cannot be saved`);
  };
  const json = JSON.stringify(walk(state, []));
  return { tensors, json };
}

/** The inverse of flattenState: the JSON with each tensor put back. */
export function unflattenState(json: string, tensors: Readonly<Record<string, Tensor>>): unknown {
  const used = new Set<string>();
  const out = JSON.parse(json, (_key, v: unknown) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      const keys = Object.keys(o);
      if (keys.length === 1 && typeof o['__tensor__'] === 'string') {
        const name = o['__tensor__'];
        const t = tensors[name];
        if (!t) throw new Error(`unflattenState: the state names tensor '${name}', which is missing`);
        used.add(name);
        return t;
      }
      if (keys.length === 1 && typeof o['__number__'] === 'string') return Number(o['__number__']);
      if (keys.length === 1 && typeof o['__bigint__'] === 'string') return BigInt(o['__bigint__']);
    }
    return v;
  }) as unknown;
  const unused = Object.keys(tensors).filter((k) => !used.has(k));
  if (unused.length) throw new Error(`unflattenState: tensors [${unused.join(', ')}] are not named by the state`);
  return out;
}
