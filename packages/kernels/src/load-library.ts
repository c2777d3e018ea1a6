/**
 * Locating and loading the native kernel libraries (CPU and CUDA) with koffi.
 * Generic over the library: each backend describes its file name, the
 * environment variable that overrides the location, and how to build it.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { familySync, GLIBC, MUSL } from 'detect-libc';
import koffi, { type LibraryHandle } from 'koffi';

/**
 * The C ABI version this package is written against: BK_ABI_VERSION of bagua_kernels.h
 * (test/kernel-table.test.ts reads the header and fails when the two differ).
 */
export const BK_ABI_VERSION = 6;

export interface NativeLibrarySpec {
  /** Human name used in messages, e.g. 'CPU kernels'. */
  readonly name: string;
  /** File name inside native/build, e.g. 'libbagua_kernels_cpu.so'. */
  readonly fileName: string;
  /** Environment variable holding an explicit path, e.g. 'BAGUA_KERNELS_CPU_LIB'. */
  readonly envVar: string;
  /** How to build the library, quoted in the not-found error. */
  readonly buildHint: string;
}

export const CPU_LIBRARY: NativeLibrarySpec = {
  name: 'CPU kernels',
  fileName: 'libbagua_kernels_cpu.so',
  envVar: 'BAGUA_KERNELS_CPU_LIB',
  buildHint: 'pnpm --filter @bagua/kernels native',
};

/** The platforms that have a prebuilt package, @bagua/kernels-<tag> (packages/kernels-<tag>). */
export const PREBUILT_PLATFORMS: readonly string[] = ['linux-x64-gnu'];

export interface PlatformInfo {
  readonly platform: NodeJS.Platform;
  readonly arch: string;
  /** Linux only: which C library Node runs on (the .so files are built against glibc). */
  readonly libc: 'glibc' | 'musl' | null;
  /** The platform packages' suffix: linux-x64-gnu, linux-arm64-musl, darwin-arm64, ... */
  readonly tag: string;
}

let platformCache: PlatformInfo | undefined;

/** This machine as the platform packages name it (esbuild's and napi-rs's naming). */
export function currentPlatform(): PlatformInfo {
  if (platformCache) return platformCache;
  // detect-libc: which C library Node runs on (Linux only; null elsewhere).
  const family = familySync();
  const libc: PlatformInfo['libc'] = family === GLIBC ? 'glibc' : family === MUSL ? 'musl' : null;
  const suffix = libc === null ? '' : libc === 'glibc' ? '-gnu' : '-musl';
  platformCache = { platform: process.platform, arch: process.arch, libc, tag: `${process.platform}-${process.arch}${suffix}` };
  return platformCache;
}

/** The prebuilt package for this platform and where it is installed (dir: null when it is not). */
export function platformPackage(platform: PlatformInfo = currentPlatform()): { name: string; dir: string | null } {
  const name = `@bagua/kernels-${platform.tag}`;
  try {
    return { name, dir: dirname(createRequire(import.meta.url).resolve(`${name}/package.json`)) };
  } catch {
    return { name, dir: null };
  }
}

/**
 * Paths to try, in order. An explicit environment variable is the only
 * candidate when set: a wrong override should fail loudly rather than
 * silently pick up another build.
 * Otherwise native/build of this package, found from the compiled module
 * (dist/src/load-library.js) and, for runs from source, from src/; then the
 * platform package's lib/ (an installed @bagua/kernels ships no native/build).
 * A local build comes before the prebuilt one, as node-gyp-build orders them: in a
 * source checkout the platform package may hold an older copy from the last pack.
 */
export function libraryCandidates(spec: NativeLibrarySpec, env: NodeJS.ProcessEnv = process.env): string[] {
  const override = env[spec.envVar];
  if (override !== undefined && override !== '') return [override];
  const paths = [
    fileURLToPath(new URL(`../../native/build/${spec.fileName}`, import.meta.url)),
    fileURLToPath(new URL(`../native/build/${spec.fileName}`, import.meta.url)),
  ];
  const prebuilt = platformPackage();
  if (prebuilt.dir !== null) paths.push(join(prebuilt.dir, 'lib', spec.fileName));
  return [...new Set(paths)];
}

/** Why no prebuilt library applies here, for the not-found error (exported for its test). */
export function prebuiltNote(spec: NativeLibrarySpec, p: PlatformInfo = currentPlatform()): string {
  const where = `this machine is ${p.tag} (process.platform ${p.platform}, arch ${p.arch}${p.libc ? `, libc ${p.libc}` : ''})`;
  const pkg = platformPackage(p);
  if (!PREBUILT_PLATFORMS.includes(p.tag)) {
    return `${where}; prebuilt libraries exist for ${PREBUILT_PLATFORMS.join(', ')} only, so build it from source`;
  }
  if (pkg.dir === null) {
    return `${where}; its prebuilt package ${pkg.name} is not installed (an optional dependency of @bagua/kernels: ` +
      'was it left out with --omit=optional or --no-optional? reinstall without that flag)';
  }
  return `${where}; ${pkg.name} at ${pkg.dir} has no ${spec.fileName}` +
    (spec.fileName.includes('cuda') ? ' (this release was packed without the CUDA library)' : '');
}

/** The first existing path among `candidates`; otherwise an Error listing all of them. */
export function locateLibrary(spec: NativeLibrarySpec, candidates: readonly string[] = libraryCandidates(spec)): string {
  for (const p of candidates) if (existsSync(p)) return p;
  const fromEnv = process.env[spec.envVar];
  const how = fromEnv !== undefined && fromEnv !== ''
    ? `${spec.envVar} is set to a path that does not exist; unset it or point it at a built library`
    : `${prebuiltNote(spec)}.\nFrom a checkout of the bagua-ts sources: pnpm install && \`${spec.buildHint}\`, ` +
      `then set ${spec.envVar} to the built ${spec.fileName} (or run from the checkout)`;
  throw new Error(
    `@bagua/kernels: the ${spec.name} library (${spec.fileName}) was not found. Tried:\n` +
      candidates.map((p) => `  - ${p}\n`).join('') + how);
}

export interface LoadedLibrary {
  readonly path: string;
  readonly lib: LibraryHandle;
  /** bk_last_error() of this library */
  readonly lastError: () => string;
}

/** Locates, loads and checks the ABI version (bk_abi_version) of a kernel library. */
export function loadKernelLibrary(spec: NativeLibrarySpec, candidates?: readonly string[]): LoadedLibrary {
  const path = locateLibrary(spec, candidates);
  let lib: LibraryHandle;
  try {
    lib = koffi.load(path);
  } catch (e) {
    throw new Error(`@bagua/kernels: could not load the ${spec.name} library ${path}: ${(e as Error).message}`);
  }
  const abi = lib.func('int32_t bk_abi_version(void)')() as number;
  if (abi !== BK_ABI_VERSION) {
    throw new Error(
      `@bagua/kernels: ${path} implements kernel ABI version ${abi}, this package needs ${BK_ABI_VERSION}; ` +
        `rebuild it with \`${spec.buildHint}\``);
  }
  const lastErrorFn = lib.func('const char *bk_last_error(void)');
  return { path, lib, lastError: () => (lastErrorFn() as string | null) ?? '' };
}
