/**
 * Python's site-packages directories, where PyTorch's `nvidia-*` wheels put CUDA's
 * libraries: BAGUA_PYTHON_SITE_PACKAGES (colon-separated; tools/gpu-check exports it),
 * the site-packages under VIRTUAL_ENV and CONDA_PREFIX, optionally those under the
 * usual system prefixes, and what the interpreter itself reports when asked.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants as fsConstants, readdirSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, isAbsolute, join } from 'node:path';

/** `parent`'s entries matching `pattern`, newest version first (reverse name order), as full paths; [] when unreadable. */
export function sortedChildren(parent: string, pattern: RegExp): string[] {
  try {
    return readdirSync(parent).filter((n) => pattern.test(n)).sort().reverse().map((n) => join(parent, n));
  } catch {
    return [];
  }
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

/** One answer per interpreter path per process (thread): the library search may run several times. */
const askedPython = new Map<string, string[]>();

/**
 * Asks a Python interpreter for its site-packages directories, once per interpreter
 * (cached): only when the interpreter exists, with a 5 s timeout; [] on any failure.
 * Relative entries are dropped, duplicates removed.
 */
export function askPythonSitePackages(python: string, env: NodeJS.ProcessEnv = process.env): string[] {
  const exe = whichExecutable(python, env);
  if (!exe) return [];
  const cached = askedPython.get(exe);
  if (cached) return cached;
  let dirs: string[] = [];
  const r = spawnSync(exe, ['-c', SITE_PACKAGES_SCRIPT], {
    encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'], env,
  });
  if (r.status === 0 && typeof r.stdout === 'string') {
    dirs = [...new Set(r.stdout.split('\n').map((x) => x.trim()).filter((x) => x && isAbsolute(x)))];
  }
  askedPython.set(exe, dirs);
  return dirs;
}

/** The interpreters worth asking, in order: `$PYTHON`, `$BAGUA_PYTHON`, then `python3`. */
export function pythonCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  return [env.PYTHON, env.BAGUA_PYTHON, 'python3'].filter((x): x is string => !!x);
}

/**
 * The first of pythonCandidates that exists and names any site-packages: that name and
 * its answer; null when none does. Nothing is spawned when no interpreter exists.
 */
export function askFirstPython(env: NodeJS.ProcessEnv = process.env): { python: string; dirs: string[] } | null {
  for (const python of pythonCandidates(env)) {
    const dirs = askPythonSitePackages(python, env);
    if (dirs.length) return { python, dirs };
  }
  return null;
}

/** Prefixes whose lib/python3.X/{site,dist}-packages a system or user pip installs into. */
export function systemPythonPrefixes(): string[] {
  return ['/usr/local', '/usr', '/opt/conda', join(homedir(), '.local')];
}

/** `root`/lib{,64}/python3[.X]/{site,dist}-packages, newest Python first; only those whose python3.X exists. */
export function prefixSitePackages(root: string): string[] {
  const out: string[] = [];
  for (const libdir of ['lib', 'lib64']) {
    for (const py of sortedChildren(join(root, libdir), /^python3(\.\d+)?$/)) {
      for (const sp of ['site-packages', 'dist-packages']) out.push(join(py, sp));
    }
  }
  return out;
}

export interface PythonSitePackages {
  /** site-packages / dist-packages directories, in order, without duplicates. */
  dirs: string[];
  /**
   * Where they came from, each named once, in order: 'BAGUA_PYTHON_SITE_PACKAGES',
   * 'VIRTUAL_ENV', 'CONDA_PREFIX', a system prefix ('/usr/local', ...), '<python> (asked)'.
   */
  sources: string[];
}

export interface SitePackagesOptions {
  /** Ask `$PYTHON`, `$BAGUA_PYTHON` or `python3` (askFirstPython). Default true. */
  askPython?: boolean;
  /** Also the site-packages under systemPythonPrefixes() (without running anything). Default false. */
  systemPrefixes?: boolean;
}

/**
 * The site-packages directories of the Python that PyTorch runs under:
 * BAGUA_PYTHON_SITE_PACKAGES, then VIRTUAL_ENV's and CONDA_PREFIX's, then (with
 * `systemPrefixes`) those under the usual prefixes, then, unless `askPython` is false,
 * what the first interpreter that answers reports (asked once per process).
 */
export function pythonSitePackages(env: NodeJS.ProcessEnv = process.env, opts: SitePackagesOptions = {}): PythonSitePackages {
  const dirs: string[] = [];
  const sources: string[] = [];
  const add = (list: string[], source: string) => {
    let added = false;
    for (const d of list) {
      if (d && !dirs.includes(d)) {
        dirs.push(d);
        added = true;
      }
    }
    if (added) sources.push(source);
  };
  add((env.BAGUA_PYTHON_SITE_PACKAGES ?? '').split(':').filter(Boolean), 'BAGUA_PYTHON_SITE_PACKAGES');
  for (const v of ['VIRTUAL_ENV', 'CONDA_PREFIX'] as const) {
    const root = env[v];
    if (root) add(prefixSitePackages(root), v);
  }
  if (opts.systemPrefixes) for (const root of systemPythonPrefixes()) add(prefixSitePackages(root), root);
  if (opts.askPython !== false) {
    const asked = askFirstPython(env);
    if (asked) add(asked.dirs, `${asked.python} (asked)`);
  }
  return { dirs, sources };
}
