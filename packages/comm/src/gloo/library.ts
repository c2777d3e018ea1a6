/**
 * Locating and loading libbagua_gloo.so (packages/comm/native, built by
 * `pnpm --filter @bagua/comm native` where Debian's libgloo-dev is installed).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { familySync, GLIBC } from 'detect-libc';
import koffi, { type LibraryHandle } from 'koffi';

/** Status codes of the C ABI (native/gloo/bagua_gloo.h). */
export const enum GlooStatus {
  OK = 0,
  TIMEOUT = 1,
  IO = 2,
  INVALID = 3,
  INTERNAL = 4,
}

export const GLOO_DTYPE = { float32: 0, float64: 1, int32: 2, int64: 3, uint8: 4 } as const;
export const GLOO_OP = { sum: 0, avg: 1, max: 2, min: 3, product: 4 } as const;
/** ABI 4: started all-reduces on a communication thread per context (allreduce_start, test, wait). */
export const GLOO_ABI_VERSION = 4;

type Fn = ReturnType<LibraryHandle['func']>;

export interface GlooLibrary {
  readonly path: string;
  readonly create: Fn;
  readonly destroy: Fn;
  readonly allreduce: Fn;
  readonly allgather: Fn;
  readonly broadcast: Fn;
  readonly barrier: Fn;
  readonly allreduceStart: Fn;
  readonly test: Fn;
  readonly wait: Fn;
  lastError(): string;
  /** The group ranks at fault in the last failed call on this thread (peers that did not answer, or broke the connection). */
  lastErrorRanks(): number[];
}

/** Thrown when the shim cannot be found or loaded; says where it looked and how to build it. */
export class GlooUnavailableError extends Error {
  constructor(
    detail: string,
    readonly tried: readonly string[],
  ) {
    super(
      `the gloo backend is unavailable: ${detail}\n` +
        `  looked for libbagua_gloo.so at:\n${tried.map((p) => `    ${p}`).join('\n')}\n` +
        `  ${prebuiltGlooNote()}\n` +
        `  build it with \`apt-get install libgloo-dev && pnpm --filter @bagua/comm native\` (in a checkout of the ` +
        `bagua-ts sources), or point BAGUA_GLOO_LIB at a built copy`,
    );
    this.name = 'GlooUnavailableError';
  }
}

const here = dirname(fileURLToPath(import.meta.url));

/** Platforms with a prebuilt shim, @bagua/comm-<tag> (packages/comm-<tag>). */
export const GLOO_PREBUILT_PLATFORMS: readonly string[] = ['linux-x64-gnu'];

/** This machine's platform package name, as esbuild names them: @bagua/comm-linux-x64-gnu, -musl, darwin-arm64. */
export function glooPlatformPackage(): { name: string; dir: string | null; tag: string } {
  let tag = `${process.platform}-${process.arch}`;
  const libc = familySync(); // detect-libc: null off Linux
  if (libc) tag += libc === GLIBC ? '-gnu' : '-musl';
  const name = `@bagua/comm-${tag}`;
  let dir: string | null = null;
  try {
    dir = dirname(createRequire(import.meta.url).resolve(`${name}/package.json`));
  } catch {
    // not installed: optional, or no such platform
  }
  return { name, dir, tag };
}

function prebuiltGlooNote(): string {
  const p = glooPlatformPackage();
  const where = `this machine is ${p.tag} (process.platform ${process.platform}, arch ${process.arch})`;
  if (!GLOO_PREBUILT_PLATFORMS.includes(p.tag)) return `${where}: a prebuilt shim exists for ${GLOO_PREBUILT_PLATFORMS.join(', ')} only`;
  if (p.dir === null) return `${where}: its prebuilt package ${p.name} is not installed (an optional dependency: --omit=optional?)`;
  return `${where}: ${p.name} (${p.dir}) was packed without libbagua_gloo.so`;
}

/**
 * Where the shim is looked for, in order: $BAGUA_GLOO_LIB, the package's native/build (a
 * source checkout: its fresh build before a prebuilt copy), then the platform package's lib/.
 */
export function glooLibraryCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const out: string[] = [];
  if (env.BAGUA_GLOO_LIB) out.push(resolve(env.BAGUA_GLOO_LIB));
  // this module is <package>/dist/src/gloo/library.js
  out.push(resolve(here, '../../../native/build/libbagua_gloo.so'));
  const prebuilt = glooPlatformPackage().dir;
  if (prebuilt !== null) out.push(join(prebuilt, 'lib', 'libbagua_gloo.so'));
  return out;
}

let cached: GlooLibrary | undefined;
let cachedError: GlooUnavailableError | undefined;

/** Loads the shim once per thread; throws GlooUnavailableError. */
export function loadGlooLibrary(): GlooLibrary {
  if (cached) return cached;
  if (cachedError) throw cachedError;
  const tried = glooLibraryCandidates();
  const explicit = process.env.BAGUA_GLOO_LIB ? tried[0] : undefined;
  const failures: string[] = [];
  for (const path of tried) {
    if (!existsSync(path)) {
      if (path === explicit) failures.push(`BAGUA_GLOO_LIB=${path} does not exist`);
      continue;
    }
    try {
      const lib = koffi.load(path);
      const version = lib.func('int bagua_gloo_abi_version(void)')() as number;
      if (version !== GLOO_ABI_VERSION) {
        failures.push(`${path} has ABI version ${version}, expected ${GLOO_ABI_VERSION} (rebuild it)`);
        continue;
      }
      const lastError = lib.func('const char *bagua_gloo_last_error(void)');
      const lastErrorRanks = lib.func('int bagua_gloo_last_error_ranks(int32_t *ranks, int cap)');
      const rankBuf = new Int32Array(64);
      cached = {
        path,
        create: lib.func(
          'void *bagua_gloo_context_create(int rank, int size, const char *store_host, int store_port, ' +
            'const char *token, const char *prefix, int timeout_ms, const char *iface, const char *hostname, ' +
            'int64_t small_bytes, uint8_t *err, int err_cap, int32_t *err_ranks, int err_ranks_cap, ' +
            'int32_t *err_nranks)',
        ),
        destroy: lib.func('void bagua_gloo_context_destroy(void *ctx)'),
        allreduce: lib.func(
          'int bagua_gloo_allreduce(void *ctx, void *buf, int64_t count, int dtype, int op, int timeout_ms)',
        ),
        allgather: lib.func(
          'int bagua_gloo_allgather(void *ctx, void *out, const void *in, int64_t count, int dtype, int timeout_ms)',
        ),
        broadcast: lib.func(
          'int bagua_gloo_broadcast(void *ctx, void *buf, int64_t count, int dtype, int root, int timeout_ms)',
        ),
        barrier: lib.func('int bagua_gloo_barrier(void *ctx, int timeout_ms)'),
        allreduceStart: lib.func(
          'int bagua_gloo_allreduce_start(void *ctx, void *buf, int64_t count, int dtype, int op, int timeout_ms, ' +
            '_Out_ int64_t *ticket)',
        ),
        test: lib.func('int bagua_gloo_test(void *ctx, int64_t ticket)'),
        wait: lib.func('int bagua_gloo_wait(void *ctx, int64_t ticket, int timeout_ms)'),
        lastError: () => (lastError() as string | null) ?? '',
        lastErrorRanks: () => {
          let n = lastErrorRanks(rankBuf, rankBuf.length) as number;
          if (n <= rankBuf.length) return [...rankBuf.subarray(0, n)];
          const all = new Int32Array(n);
          n = lastErrorRanks(all, n) as number;
          return [...all.subarray(0, n)];
        },
      };
      return cached;
    } catch (e) {
      failures.push(`${path}: ${(e as Error).message}`);
    }
  }
  cachedError = new GlooUnavailableError(
    failures.length ? failures.join('; ') : 'libbagua_gloo.so was not found',
    tried,
  );
  throw cachedError;
}

/** Whether the gloo backend can be used here, and why not. Never throws. */
export function glooAvailability(): { available: true; path: string } | { available: false; reason: string } {
  try {
    return { available: true, path: loadGlooLibrary().path };
  } catch (e) {
    return { available: false, reason: (e as Error).message };
  }
}
