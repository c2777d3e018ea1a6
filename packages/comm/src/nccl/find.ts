/**
 * Finding NVIDIA's shared libraries (libnccl.so.2, libcudart.so.*) at run
 * time: an env override, then LD_LIBRARY_PATH, the usual system and CUDA
 * directories, conda/venv prefixes, and the `nvidia-*` Python wheels
 * (site-packages/nvidia/<pkg>/lib) that PyTorch installs.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';

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
  /** The wheel package under site-packages/nvidia/ (e.g. 'nccl', 'cuda_runtime'). */
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

function globDirs(parent: string, pattern: RegExp): string[] {
  try {
    return readdirSync(parent)
      .filter((n) => pattern.test(n))
      .sort()
      .reverse()
      .map((n) => join(parent, n));
  } catch {
    return [];
  }
}

/** site-packages / dist-packages directories worth looking in, without running anything. */
export function sitePackagesDirs(env: NodeJS.ProcessEnv): string[] {
  const roots = [
    env.VIRTUAL_ENV,
    env.CONDA_PREFIX,
    '/usr/local',
    '/usr',
    '/opt/conda',
    join(homedir(), '.local'),
  ].filter((x): x is string => !!x);
  const out: string[] = [];
  for (const root of roots) {
    for (const libdir of ['lib', 'lib64']) {
      for (const py of globDirs(join(root, libdir), /^python3(\.\d+)?$/)) {
        for (const sp of ['site-packages', 'dist-packages']) out.push(join(py, sp));
      }
    }
  }
  return out;
}

const pythonCache = new Map<string, string[]>();

/** Asks python3 where `nvidia.<pkg>` lives (import-free: importlib's finder only). */
export function pythonWheelDirs(pkg: string, env: NodeJS.ProcessEnv): string[] {
  const cached = pythonCache.get(pkg);
  if (cached) return cached;
  const code =
    'import importlib.util, sys\n' +
    'try:\n' +
    `    s = importlib.util.find_spec("nvidia.${pkg}")\n` +
    '    print("\\n".join(list(s.submodule_search_locations or []) if s else []))\n' +
    'except Exception:\n' +
    '    pass\n';
  let dirs: string[] = [];
  for (const py of [env.PYTHON, 'python3', '/usr/bin/python3'].filter((x): x is string => !!x)) {
    try {
      const out = execFileSync(py, ['-c', code], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] });
      dirs = out
        .split('\n')
        .map((s) => s.trim())
        .filter(Boolean)
        .map((d) => join(d, 'lib'));
      break;
    } catch {
      /* next interpreter */
    }
  }
  pythonCache.set(pkg, dirs);
  return dirs;
}

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
      for (const f of globDirs(dir, new RegExp('^' + opts.versionedPrefix.replace(/\./g, '\\.') + '\\d+(\\.\\d+)*$'))) add(f);
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
    ...globDirs('/usr/local', /^cuda-\d+(\.\d+)?$/).map((d) => join(d, 'lib64')),
    '/usr/local/nccl/lib',
    '/opt/nccl/lib',
    ...(env.CONDA_PREFIX ? [join(env.CONDA_PREFIX, 'lib')] : []),
  ]) {
    scanDir(d);
  }
  for (const sp of sitePackagesDirs(env)) {
    const d = join(sp, 'nvidia', opts.wheel, 'lib');
    if (existsSync(d)) scanDir(d);
    else tried.push(d);
  }
  if (found.length === 0 && opts.askPython !== false) {
    for (const d of pythonWheelDirs(opts.wheel, env)) scanDir(d);
  }
  if (found.length === 0) tried.push(`the dynamic loader's own search (ldconfig cache) for ${opts.names[0]}`);
  return { found, tried };
}
