/**
 * Locating and loading the native kernel libraries (CPU and CUDA) with koffi.
 * Generic over the library: each backend describes its file name, the
 * environment variable that overrides the location, and how to build it.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import koffi, { type LibraryHandle } from 'koffi';

/**
 * The C ABI version this package is written against: BK_ABI_VERSION of bagua_kernels.h
 * (test/kernel-table.test.ts reads the header and fails when the two differ).
 */
export const BK_ABI_VERSION = 5;

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

/**
 * Paths to try, in order. An explicit environment variable is the only
 * candidate when set: a wrong override should fail loudly rather than
 * silently pick up another build.
 * Otherwise native/build of this package, found from the compiled module
 * (dist/src/load-library.js) and, for runs from source, from src/.
 */
export function libraryCandidates(spec: NativeLibrarySpec, env: NodeJS.ProcessEnv = process.env): string[] {
  const override = env[spec.envVar];
  if (override !== undefined && override !== '') return [override];
  const paths = [
    fileURLToPath(new URL(`../../native/build/${spec.fileName}`, import.meta.url)),
    fileURLToPath(new URL(`../native/build/${spec.fileName}`, import.meta.url)),
  ];
  return [...new Set(paths)];
}

/** The first existing path among `candidates`; otherwise an Error listing all of them. */
export function locateLibrary(spec: NativeLibrarySpec, candidates: readonly string[] = libraryCandidates(spec)): string {
  for (const p of candidates) if (existsSync(p)) return p;
  const fromEnv = process.env[spec.envVar];
  const how = fromEnv !== undefined && fromEnv !== ''
    ? `${spec.envVar} is set to a path that does not exist; unset it or point it at a built library`
    : `build it with \`${spec.buildHint}\`, or set ${spec.envVar} to its path`;
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
