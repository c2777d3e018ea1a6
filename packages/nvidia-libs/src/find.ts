/**
 * Finding NVIDIA's shared libraries (libnccl.so.2, libcudart.so.*, libcublas.so.*) at
 * run time: an env override, then LD_LIBRARY_PATH, the usual system and CUDA
 * directories, conda/venv prefixes, and the `nvidia-*` Python wheels
 * (site-packages/nvidia/<pkg>/lib) that PyTorch installs: the CUDA 12 layout
 * (nvidia/cuda_runtime/lib, nvidia/nccl/lib) and CUDA 13's, where the runtime and the
 * math libraries share nvidia/cu13/lib. Python is asked for its site-packages only
 * when nothing was found without running anything.
 */
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { askFirstPython, pythonSitePackages, sortedChildren, type PythonSitePackages } from './python.js';

/** The directories under site-packages/nvidia/ that hold a wheel's libraries: CUDA 12's, then CUDA 13's. */
export const WHEEL_DIRS: Readonly<Record<string, readonly string[]>> = {
  cuda_runtime: ['cuda_runtime', 'cu13'],
  cublas: ['cublas', 'cu13'],
  nccl: ['nccl'],
};

/** WHEEL_DIRS[wheel], or the wheel's own name for a wheel not listed there. */
export function wheelDirs(wheel: string): readonly string[] {
  return WHEEL_DIRS[wheel] ?? [wheel];
}

export interface LibrarySearch {
  /** Files that exist, in the order they should be tried. */
  found: string[];
  /** Every place looked at, for error messages (files and globs). */
  tried: string[];
}

export interface FindLibraryOptions {
  /** e.g. 'BAGUA_NCCL_LIB': a file, or a directory holding one of `names`. */
  envVar: string;
  /** File names in order of preference, e.g. ['libnccl.so.2', 'libnccl.so']. */
  names: readonly string[];
  /**
   * The wheel package under site-packages/nvidia/ (e.g. 'nccl', 'cuda_runtime'); its
   * CUDA 13 home is searched too (WHEEL_DIRS: cuda_runtime and cublas live in nvidia/cu13).
   */
  wheel: string;
  /** Prefix for versioned names to glob in each directory (e.g. 'libcudart.so.'). */
  versionedPrefix?: string;
  env?: NodeJS.ProcessEnv;
  /** Whether to ask python3 where site-packages are (best effort, ~50 ms). Default true. */
  askPython?: boolean;
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** Every existing candidate for a library, in the order a loader should try them, and every place looked at. */
export function findLibrary(opts: FindLibraryOptions): LibrarySearch {
  const env = opts.env ?? process.env;
  const tried: string[] = [];
  const found: string[] = [];
  const add = (p: string) => {
    const r = resolve(p);
    if (tried.includes(r)) return;
    tried.push(r);
    if (isFile(r)) found.push(r);
  };
  const scanDir = (dir: string) => {
    for (const n of opts.names) add(join(dir, n));
    if (opts.versionedPrefix && isDir(dir)) {
      for (const f of sortedChildren(dir, new RegExp('^' + opts.versionedPrefix.replace(/\./g, '\\.') + '\\d+(\\.\\d+)*$'))) add(f);
    }
  };

  const override = env[opts.envVar];
  if (override) {
    if (isDir(override)) scanDir(override);
    else add(override);
  }
  for (const d of (env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean)) scanDir(d);
  for (const d of [
    '/usr/lib/x86_64-linux-gnu',
    '/usr/lib/aarch64-linux-gnu',
    '/usr/lib64',
    '/usr/lib',
    '/usr/local/lib',
    '/usr/local/cuda/lib64',
    '/usr/local/cuda/targets/x86_64-linux/lib',
    ...sortedChildren('/usr/local', /^cuda-\d+(\.\d+)?$/).map((d) => join(d, 'lib64')),
    '/usr/local/nccl/lib',
    '/opt/nccl/lib',
    ...(env.CONDA_PREFIX ? [join(env.CONDA_PREFIX, 'lib')] : []),
  ]) {
    scanDir(d);
  }
  // A wheel directory that does not exist is listed once, as a directory, not file by file.
  const scanWheels = (sitePackages: readonly string[]) => {
    for (const sub of wheelDirs(opts.wheel)) {
      for (const sp of sitePackages) {
        const d = resolve(join(sp, 'nvidia', sub, 'lib'));
        if (existsSync(d)) scanDir(d);
        else if (!tried.includes(d)) tried.push(d);
      }
    }
  };
  scanWheels(pythonSitePackages(env, { askPython: false, systemPrefixes: true }).dirs);
  if (found.length === 0 && opts.askPython !== false) scanWheels(askFirstPython(env)?.dirs ?? []);
  if (found.length === 0) tried.push(`the dynamic loader's own search (ldconfig cache) for ${opts.names[0]}`);
  return { found, tried };
}

export interface WheelSearchOptions {
  /** Directories under site-packages/nvidia/, in order of preference (e.g. ['cu13', 'cublas']). */
  dirs: readonly string[];
  /** File names in order of preference (e.g. ['libcublas.so.13', 'libcublas.so.12']). */
  names: readonly string[];
  env?: NodeJS.ProcessEnv;
  /** Whether to ask python3 where site-packages are (pythonSitePackages). Default true. */
  askPython?: boolean;
}

export interface WheelSearch {
  /** The first file found, or null. */
  found: string | null;
  /** Every file looked at, in order, up to the one found. */
  tried: string[];
  /** The site-packages searched and where they came from. */
  sitePackages: PythonSitePackages;
}

/**
 * Looks for a library only in Python's wheels (pythonSitePackages, without the system
 * prefixes): for each wheel directory, each site-packages, each name.
 */
export function findInWheels(opts: WheelSearchOptions): WheelSearch {
  const sitePackages = pythonSitePackages(opts.env ?? process.env, { askPython: opts.askPython });
  const tried: string[] = [];
  for (const sub of opts.dirs) {
    for (const sp of sitePackages.dirs) {
      for (const name of opts.names) {
        const p = join(sp, 'nvidia', sub, 'lib', name);
        tried.push(p);
        if (existsSync(p)) return { found: p, tried, sitePackages };
      }
    }
  }
  return { found: null, tried, sitePackages };
}
