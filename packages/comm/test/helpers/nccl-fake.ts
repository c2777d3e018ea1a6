/**
 * The NCCL/cudart stand-in of fixtures/nccl-fake.c for the nccl tests: built once per test
 * process with the system's cc, pointed at by BAGUA_NCCL_LIB / BAGUA_CUDART_LIB; device
 * buffers in its fake device memory, and an in-memory store for the unique id.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import koffi, { type LibraryHandle } from 'koffi';
import { skipOrFail } from '@bagua/testing';
import type { DeviceBuffer, HostBuffer } from '../../src/process-group.js';
import { resetNcclLoaderForTests } from '../../src/nccl/library.js';
import type { NcclStore } from '../../src/nccl/process-group.js';

const source = resolve(dirname(fileURLToPath(import.meta.url)), '../../../test/fixtures/nccl-fake.c'); // dist/test/helpers -> package

/** The built stand-in: its folder and library, with the fake device memory's malloc and memcpy. */
export interface FakeLibrary {
  readonly dir: string;
  readonly lib: LibraryHandle;
  malloc(bytes: number): bigint;
  memcpy(dst: unknown, src: unknown, bytes: number): void;
}

let built: FakeLibrary | null | undefined;

/** Builds the stand-in once (null without a C compiler). */
export function buildFakeNccl(): FakeLibrary | null {
  if (built !== undefined) return built;
  const dir = mkdtempSync(join(tmpdir(), 'bagua-nccl-fake-'));
  try {
    execFileSync('cc', ['-O1', '-shared', '-fPIC', '-o', join(dir, 'libnccl.so.2'), source], { stdio: 'pipe' });
  } catch {
    built = null;
    return null;
  }
  const lib = koffi.load(join(dir, 'libnccl.so.2'));
  const malloc = lib.func('int cudaMalloc(_Out_ void **p, size_t n)');
  const memcpy = lib.func('int cudaMemcpy(void *dst, void *src, size_t n, int kind)');
  built = {
    dir,
    lib,
    malloc: (bytes) => {
      const p: unknown[] = [null];
      malloc(p, bytes);
      return BigInt(p[0] as bigint);
    },
    memcpy: (d, s, n) => memcpy(d, s, n, 0),
  };
  return built;
}

/** The stand-in, loaded as NCCL and cudart from now on; a loud skip (a failure under BAGUA_REQUIRE=cc) without a compiler. */
export function useFakeNccl(t: Parameters<typeof skipOrFail>[0]): FakeLibrary | null {
  const f = buildFakeNccl();
  if (!f) {
    skipOrFail(t, 'cc', 'no C compiler (cc) to build the stand-in NCCL');
    return null;
  }
  process.env.BAGUA_NCCL_LIB = join(f.dir, 'libnccl.so.2');
  process.env.BAGUA_CUDART_LIB = join(f.dir, 'libnccl.so.2');
  resetNcclLoaderForTests();
  return f;
}

/** Device memory of the stand-in, on a stream of the test's choosing (an opaque handle there). */
export class FakeDeviceBuffer implements DeviceBuffer {
  readonly device = 'cuda:0';
  readonly ptr: bigint;
  constructor(
    private readonly f: FakeLibrary,
    readonly dtype: 'float32' | 'int32' | 'float64',
    readonly length: number,
    readonly stream = 0n,
  ) {
    this.ptr = f.malloc(length * (dtype === 'float64' ? 8 : 4));
  }
  toHost(): HostBuffer {
    const h = this.dtype === 'float32' ? new Float32Array(this.length)
      : this.dtype === 'int32' ? new Int32Array(this.length) : new Float64Array(this.length);
    this.f.memcpy(h, this.ptr, h.byteLength);
    return h;
  }
  fromHost(src: HostBuffer): void {
    this.f.memcpy(this.ptr, src, src.byteLength);
  }
}

/** A store in memory: the unique id's way from rank 0 to the others, within one process. */
export class MemoryStore implements NcclStore {
  readonly kv = new Map<string, Uint8Array>();
  async set(key: string, value: Uint8Array): Promise<void> {
    this.kv.set(key, new Uint8Array(value));
  }
  async get(key: string): Promise<Uint8Array | null> {
    return this.kv.get(key) ?? null;
  }
  async wait(keys: string | readonly string[], timeoutMs = 1000): Promise<void> {
    const list = typeof keys === 'string' ? [keys] : keys;
    const end = Date.now() + timeoutMs;
    while (!list.every((k) => this.kv.has(k))) {
      if (Date.now() > end) throw new Error(`missing keys: ${list.filter((k) => !this.kv.has(k)).join(', ')}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  async check(keys: string | readonly string[]): Promise<boolean> {
    return (typeof keys === 'string' ? [keys] : keys).every((k) => this.kv.has(k));
  }
}
