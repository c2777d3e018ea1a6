/**
 * findLibrary and findInWheels on fake directory trees: the override, LD_LIBRARY_PATH,
 * the wheels of BAGUA_PYTHON_SITE_PACKAGES in both CUDA layouts, and python3 asked
 * only when nothing else was found. (comm's nccl-library tests check the NCCL error
 * message built from this search; kernels' cuda-library tests the cuBLAS wrapper.)
 */
import test from 'ava';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findInWheels, findLibrary, pythonSitePackages, WHEEL_DIRS, wheelDirs } from '../src/index.js';

/** A fake site-packages with PyTorch's CUDA 13 wheels: nvidia/nccl/lib/libnccl.so.2, nvidia/cu13/lib/libcudart.so.13. */
function fakeSitePackages(): string {
  const sp = mkdtempSync(join(tmpdir(), 'bagua-fake-site-'));
  for (const [dir, file] of [['nccl', 'libnccl.so.2'], ['cu13', 'libcudart.so.13'], ['cu13', 'libcublas.so.13']]) {
    mkdirSync(join(sp, 'nvidia', dir!, 'lib'), { recursive: true });
    writeFileSync(join(sp, 'nvidia', dir!, 'lib', file!), '');
  }
  return sp;
}

/** A directory holding a `python3` that prints `lines` (the site-packages question's answer). */
function fakePython(...lines: string[]): string {
  const bin = mkdtempSync(join(tmpdir(), 'bagua-fake-python-'));
  writeFileSync(join(bin, 'python3'), `#!/bin/sh\n${lines.map((l) => `echo ${l}\n`).join('')}`);
  chmodSync(join(bin, 'python3'), 0o755);
  return bin;
}

test('wheel directories: CUDA 12 layout then CUDA 13 for the runtime and cuBLAS, NCCL in its own', (t) => {
  t.deepEqual(wheelDirs('cuda_runtime'), ['cuda_runtime', 'cu13']);
  t.deepEqual(wheelDirs('cublas'), ['cublas', 'cu13']);
  t.deepEqual(wheelDirs('nccl'), ['nccl']);
  t.deepEqual(wheelDirs('cufft'), ['cufft'], 'an unlisted wheel is its own directory');
  t.is(Object.keys(WHEEL_DIRS).length, 3);
});

test('findLibrary: the override comes first, then LD_LIBRARY_PATH; a failed search ends with the loader', (t) => {
  const empty = mkdtempSync(join(tmpdir(), 'bagua-nccl-empty-'));
  const s = findLibrary({
    envVar: 'BAGUA_NCCL_LIB', names: ['libnccl.so.2'], wheel: 'nccl', askPython: false,
    env: { BAGUA_NCCL_LIB: '/nonexistent/bagua/libnccl.so.2', LD_LIBRARY_PATH: empty, PATH: '' },
  });
  t.is(s.tried[0], '/nonexistent/bagua/libnccl.so.2', 'the override is looked at first');
  t.is(s.tried[1], join(empty, 'libnccl.so.2'), 'then LD_LIBRARY_PATH');
  t.true(s.tried.includes('/usr/local/cuda/lib64/libnccl.so.2'));
  if (s.found.length === 0) t.regex(s.tried[s.tried.length - 1]!, /dynamic loader's own search/);
});

test('findLibrary: a directory in the override variable is searched for each name', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bagua-nccl-dir-'));
  const s = findLibrary({
    envVar: 'BAGUA_NCCL_LIB',
    names: ['libnccl.so.2', 'libnccl.so'],
    wheel: 'nccl',
    env: { BAGUA_NCCL_LIB: dir },
    askPython: false,
  });
  t.deepEqual(s.tried.slice(0, 2), [join(dir, 'libnccl.so.2'), join(dir, 'libnccl.so')]);
  t.true(s.tried.some((p) => p.endsWith(join('site-packages', 'nvidia', 'nccl', 'lib')) || p.endsWith(join('dist-packages', 'nvidia', 'nccl', 'lib'))));
});

test('findLibrary: BAGUA_PYTHON_SITE_PACKAGES is searched for NCCL and for cudart in the CUDA 13 layout (nvidia/cu13/lib)', (t) => {
  const empty = mkdtempSync(join(tmpdir(), 'bagua-empty-site-'));
  const sp = fakeSitePackages();
  const env = { BAGUA_PYTHON_SITE_PACKAGES: `${empty}:${sp}`, PATH: '' };
  const noAsk = pythonSitePackages(env, { askPython: false, systemPrefixes: true });
  t.deepEqual(noAsk.dirs.slice(0, 2), [empty, sp], 'first, before the usual prefixes');
  t.is(noAsk.sources[0], 'BAGUA_PYTHON_SITE_PACKAGES');
  const nccl = findLibrary({ envVar: 'BAGUA_NCCL_LIB', names: ['libnccl.so.2', 'libnccl.so'], wheel: 'nccl', env, askPython: false });
  t.true(nccl.found.includes(join(sp, 'nvidia/nccl/lib/libnccl.so.2')), nccl.found.join(', '));
  t.true(nccl.tried.includes(join(empty, 'nvidia/nccl/lib')), 'the empty one is listed as tried');
  const cudart = findLibrary({
    envVar: 'BAGUA_CUDART_LIB', names: ['libcudart.so', 'libcudart.so.12', 'libcudart.so.13'], wheel: 'cuda_runtime',
    versionedPrefix: 'libcudart.so.', env, askPython: false,
  });
  t.true(cudart.found.includes(join(sp, 'nvidia/cu13/lib/libcudart.so.13')), cudart.found.join(', '));
  t.true(cudart.tried.includes(join(sp, 'nvidia/cuda_runtime/lib')), 'the CUDA 12 layout is tried too');
  // CUDA 12's layout comes before CUDA 13's within the wheels
  const i12 = cudart.tried.indexOf(join(empty, 'nvidia/cuda_runtime/lib'));
  const i13 = cudart.tried.indexOf(join(empty, 'nvidia/cu13/lib'));
  t.true(i12 >= 0 && i13 > i12);
});

test('findLibrary: without BAGUA_PYTHON_SITE_PACKAGES, python3 on PATH is asked where site-packages are (and not run when absent)', (t) => {
  const sp = fakeSitePackages();
  writeFileSync(join(sp, 'nvidia', 'nccl', 'lib', 'libbagua-test-only.so.1'), '');
  const bin = fakePython(sp);
  // a name no system has, so only the asked python3's site-packages can hold it
  const opts = { envVar: 'BAGUA_TEST_ONLY_LIB', names: ['libbagua-test-only.so.1'], wheel: 'nccl' };
  const s = findLibrary({ ...opts, env: { PATH: bin } });
  t.deepEqual(s.found, [join(sp, 'nvidia/nccl/lib/libbagua-test-only.so.1')]);
  t.deepEqual(findLibrary({ ...opts, env: { PATH: bin }, askPython: false }).found, [], 'askPython: false asks nothing');
  const noPy = findLibrary({ ...opts, env: { PATH: mkdtempSync(join(tmpdir(), 'bagua-no-python-')) } });
  t.deepEqual(noPy.found, []);
  t.regex(noPy.tried[noPy.tried.length - 1]!, /dynamic loader's own search/);
});

test('findInWheels: each wheel directory in the order given, each site-packages, each name; every file tried listed', (t) => {
  const empty = mkdtempSync(join(tmpdir(), 'bagua-empty-site-'));
  const sp = fakeSitePackages();
  const names = ['libcublas.so.13', 'libcublas.so.12'];
  const none = findInWheels({ dirs: ['cu13', 'cublas'], names, env: { BAGUA_PYTHON_SITE_PACKAGES: empty, PATH: '' }, askPython: false });
  t.is(none.found, null);
  t.deepEqual(none.sitePackages.sources, ['BAGUA_PYTHON_SITE_PACKAGES']);
  t.deepEqual(none.tried, [
    join(empty, 'nvidia/cu13/lib/libcublas.so.13'), join(empty, 'nvidia/cu13/lib/libcublas.so.12'),
    join(empty, 'nvidia/cublas/lib/libcublas.so.13'), join(empty, 'nvidia/cublas/lib/libcublas.so.12'),
  ]);
  const env = { BAGUA_PYTHON_SITE_PACKAGES: `${empty}:${sp}`, PATH: '' };
  const hit = findInWheels({ dirs: ['cu13', 'cublas'], names, env, askPython: false });
  t.is(hit.found, join(sp, 'nvidia/cu13/lib/libcublas.so.13'));
  t.is(hit.tried[hit.tried.length - 1], hit.found!, 'the search stops at the first file found');
  // the system prefixes are left to the native search: only the Python that PyTorch runs under
  t.false(hit.sitePackages.sources.includes('/usr'));
  // python3 is asked when allowed
  const asked = findInWheels({ dirs: ['cu13'], names, env: { PATH: fakePython(sp) } });
  t.is(asked.found, join(sp, 'nvidia/cu13/lib/libcublas.so.13'));
  t.deepEqual(asked.sitePackages.sources, ['python3 (asked)']);
});
