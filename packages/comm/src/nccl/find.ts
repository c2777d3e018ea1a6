/**
 * Finding NVIDIA's shared libraries (libnccl.so.2, libcudart.so.*) at run
 * time: an env override, then LD_LIBRARY_PATH, the usual system and CUDA
 * directories, conda/venv prefixes, and the `nvidia-*` Python wheels
 * (site-packages/nvidia/<pkg>/lib) that PyTorch installs: the CUDA 12 layout
 * (nvidia/cuda_runtime/lib, nvidia/nccl/lib) and CUDA 13's, where the runtime and
 * the math libraries share nvidia/cu13/lib. Python's own site-packages come from
 * BAGUA_PYTHON_SITE_PACKAGES (colon-separated; tools/gpu-check exports it) and,
 * when nothing was found elsewhere, from asking python3 (once, with a timeout).
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants as fsConstants, existsSync, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, isAbsolute, join, resolve } from 'node:path';

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

/** The directories under site-packages/nvidia/ that hold a wheel's libraries: CUDA 12's, then CUDA 13's. */
export const WHEEL_DIRS: Readonly<Record<string, readonly string[]>> = {
  cuda_runtime: ['cuda_runtime', 'cu13'],
  cublas: ['cublas', 'cu13'],
  nccl: ['nccl'],
};

export function wheelDirs(wheel: string): readonly string[] {
  return WHEEL_DIRS[wheel] ?? [wheel];
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

/**
 * site-packages / dist-packages directories worth looking in, without running anything:
 * BAGUA_PYTHON_SITE_PACKAGES first, then those under the usual prefixes.
 */
export function sitePackagesDirs(env: NodeJS.ProcessEnv): string[] {
  const out: string[] = (env.BAGUA_PYTHON_SITE_PACKAGES ?? '').split(':').filter(Boolean);
  const roots = [
    env.VIRTUAL_ENV,
    env.CONDA_PREFIX,
    '/usr/local',
    '/usr',
    '/opt/conda',
    join(homedir(), '.local'),
  ].filter((x): x is string => !!x);
  for (const root of roots) {
    for (const libdir of ['lib', 'lib64']) {
      for (const py of globDirs(join(root, libdir), /^python3(\.\d+)?$/)) {
        for (const sp of ['site-packages', 'dist-packages']) out.push(join(py, sp));
      }
    }
  }
  return [...new Set(out)];
}

/** An executable's path: `name` itself when it has a slash, else the first match on PATH; null when absent. */
export function whichExecutable(name: string, env: NodeJS.ProcessEnv = process.env): string | null {
  const ok = (p: string) => {
    try {
      accessSync(p, fsConstants.X_OK);
      return statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (name.includes('/')) return ok(name) ? name : null;
  for (const d of (env.PATH ?? '').split(delimiter)) {
    if (d && ok(join(d, name))) return join(d, name);
  }
  return null;
}

// sysconfig's purelib/platlib, site's directories and sys.path's site-packages (PYTHONPATH):
// standard library only, so it answers in tens of milliseconds.
const SITE_PACKAGES_SCRIPT = [
  'import sys, sysconfig, site',
  'p = []',
  'for k in ("purelib", "platlib"):',
  '    try: p.append(sysconfig.get_paths()[k])',
  '    except Exception: pass',
  'try: p += site.getsitepackages()',
  'except Exception: pass',
  'try: p.append(site.getusersitepackages())',
  'except Exception: pass',
  'p += [x for x in sys.path if x.endswith(("site-packages", "dist-packages"))]',
  'print("\\n".join(p))',
].join('\n');

const pythonCache = new Map<string, string[]>();

/**
 * The site-packages directories of `$PYTHON`, `$BAGUA_PYTHON` or `python3`, whichever
 * exists first: asked once per interpreter (cached), 5 s timeout, [] on any failure.
 * Nothing is spawned when no interpreter exists.
 */
export function pythonSitePackages(env: NodeJS.ProcessEnv = process.env): string[] {
  for (const py of [env.PYTHON, env.BAGUA_PYTHON, 'python3'].filter((x): x is string => !!x)) {
    const exe = whichExecutable(py, env);
    if (!exe) continue;
    const cached = pythonCache.get(exe);
    if (cached) return cached;
    let dirs: string[] = [];
    const r = spawnSync(exe, ['-c', SITE_PACKAGES_SCRIPT], {
      encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'], env,
    });
    if (r.status === 0 && typeof r.stdout === 'string') {
      dirs = [...new Set(r.stdout.split('\n').map((x) => x.trim()).filter((x) => x && isAbsolute(x)))];
    }
    pythonCache.set(exe, dirs);
    return dirs;
  }
  return [];
}

/** Where python3 would have `nvidia.<pkg>`: site-packages/nvidia/<dir>/lib for each of the wheel's directories. */
export function pythonWheelDirs(pkg: string, env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  for (const sub of wheelDirs(pkg)) for (const sp of pythonSitePackages(env)) out.push(join(sp, 'nvidia', sub, 'lib'));
  return out;
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
  const scanWheel = (d: string) => {
    if (existsSync(d)) scanDir(d);
    else if (!tried.includes(resolve(d))) tried.push(resolve(d));
  };
  for (const sub of wheelDirs(opts.wheel)) {
    for (const sp of sitePackagesDirs(env)) scanWheel(join(sp, 'nvidia', sub, 'lib'));
  }
  if (found.length === 0 && opts.askPython !== false) {
    for (const d of pythonWheelDirs(opts.wheel, env)) scanWheel(d);
  }
  if (found.length === 0) tried.push(`the dynamic loader's own search (ldconfig cache) for ${opts.names[0]}`);
  return { found, tried };
}
