/**
 * The CUDA library without a GPU: it is built by `pnpm build:cuda` (nvcc), it exports the
 * whole C ABI, and a missing library, driver, device or cuBLAS gives an error
 * that says what is missing and where it was looked for. These run everywhere.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, realpathSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { getBackend, hasBackend, zeros } from '@bagua/core';
import {
  CUDA_LIBRARY, CudaBackend, KERNEL_NAMES, libraryCandidates, loadCudaLibrary, probeCuda,
} from '../src/index.js';
import { cublasBeforeWheels, findCublasInPython, prepareCublasSearch } from '../src/cuda-native.js';
import { cudaOrSkip, required } from './cuda-helpers.js';

const nvcc = spawnSync('nvcc', ['--version'], { encoding: 'utf8' });
const haveNvcc = nvcc.status === 0;
const libPath = libraryCandidates(CUDA_LIBRARY).find((p) => existsSync(p));

/**
 * The real CUDA library is built by `pnpm build:cuda` (not by `pnpm build`: the CPU
 * demo never loads it). Without it these tests skip loudly, or fail where the build is
 * required: BAGUA_REQUIRE containing 'cuda-build' (.ci/run) or 'cuda' (a GPU machine).
 */
function needLibrary(t: import('ava').ExecutionContext): boolean {
  if (libPath) return true;
  const why = haveNvcc
    ? 'nvcc is present but the library is not built (run `pnpm build:cuda`)'
    : 'nvcc is not on PATH, so the CUDA library is not built here';
  if (required('cuda-build') || required('cuda')) {
    t.fail(`${why}; BAGUA_REQUIRE=${process.env['BAGUA_REQUIRE']}; tried ${libraryCandidates(CUDA_LIBRARY).join(', ')}`);
    return false;
  }
  t.log(`SKIPPED (cuda build missing): ${why}`);
  console.warn(`[${t.title}] SKIPPED (cuda build missing): ${why}`);
  t.pass();
  return false;
}

test('cuda library: built by pnpm build:cuda, links the CUDA runtime statically', (t) => {
  if (!needLibrary(t)) return;
  t.truthy(libPath);
  // links the CUDA runtime statically: only the driver is needed at run time
  const ldd = spawnSync('ldd', [libPath!], { encoding: 'utf8' });
  if (ldd.status === 0) {
    t.notRegex(ldd.stdout, /libcudart/, 'the CUDA runtime is linked statically');
    t.notRegex(ldd.stdout, /libcublas/, 'cuBLAS is loaded at run time, not linked');
  }
});

test('cuda library: exports every kernel of bagua_kernels.h and the CUDA runtime functions', (t) => {
  if (!needLibrary(t)) return;
  // declaring a function koffi cannot find throws: loading declares all of them
  const k = loadCudaLibrary();
  t.is(Object.keys(k.fn).length, KERNEL_NAMES.length);
  t.true(Object.keys(k.rt).length >= 19);
  t.is(k.library.path, libPath!);
});

const haveMake = spawnSync('make', ['--version'], { encoding: 'utf8' }).status === 0;

/**
 * `make -C native/cuda check` without make (a GPU machine may lack it): the Makefile's
 * check target spelled out, nvcc called directly. Returns the combined output and status.
 */
function checkWithoutMake(dir: string): { status: number | null; out: string } {
  const cpuLib = fileURLToPath(new URL('../../native/build/libbagua_kernels_cpu.so', import.meta.url));
  if (!existsSync(cpuLib)) return { status: 1, out: `${cpuLib} is missing: build the CPU library first` };
  const bin = mkdtempSync(join(tmpdir(), 'bagua-cuda-check-'));
  const common = ['-std=c++17', '-O2', '--expt-relaxed-constexpr', '-I../include', '-I.'];
  const steps: [string, string[]][] = [
    ['nvcc', [...common, '-o', join(bin, 'test_walk'), 'test_walk.cu']],
    ['nvcc', [...common, '-o', join(bin, 'test_host'), 'test_host.cu', `-Xlinker`, `-rpath=${join(cpuLib, '..')}`, cpuLib]],
    [join(bin, 'test_walk'), []],
    [join(bin, 'test_host'), []],
  ];
  let out = '';
  for (const [cmd, args] of steps) {
    out += `$ ${cmd} ${args.join(' ')}\n`;
    const r = spawnSync(cmd, args, { cwd: dir, encoding: 'utf8', timeout: 110_000 });
    out += `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`;
    if (r.status !== 0) return { status: r.status ?? 1, out };
  }
  return { status: 0, out };
}

test('cuda library: host check of the per-element code against the CPU library (make -C native/cuda check)', (t) => {
  if (!haveNvcc) {
    if (required('cuda')) t.fail('nvcc is not on PATH');
    else {
      t.log('SKIPPED (cuda missing): nvcc is not on PATH');
      t.pass();
    }
    return;
  }
  // bn index walks; pooling, strided offsets and the whole conv2d path (with a reference
  // column-major GEMM in place of cuBLAS) run on the CPU and compared with the CPU library
  const dir = fileURLToPath(new URL('../../native/cuda', import.meta.url));
  let r: { status: number | null; out: string };
  if (haveMake) {
    const m = spawnSync('make', ['-s', '-C', dir, 'check'], { encoding: 'utf8', timeout: 110_000 });
    r = { status: m.status, out: `${m.stdout}${m.stderr}` };
  } else {
    t.log('make is not on PATH: the check target run with nvcc directly');
    console.warn(`[${t.title}] make is not on PATH: the check target run with nvcc directly`);
    r = checkWithoutMake(dir);
  }
  t.is(r.status, 0, r.out.split('\n').slice(-15).join('\n'));
  t.regex(r.out, /test_walk: \d+ launch geometries, every element visited once/);
  t.regex(r.out, /test_host: \d+ comparisons .* all match/);
});

// ---- cuBLAS from Python's site-packages (PyTorch's CUDA 13 and CUDA 12 wheels) ----

/** A fake site-packages tree: `layout` 'cu13' puts libcublas.so.13 in nvidia/cu13/lib, 'cu12' .so.12 in nvidia/cublas/lib. */
function fakeSitePackages(layout: 'cu13' | 'cu12' | 'empty', contents = ''): string {
  const sp = mkdtempSync(join(tmpdir(), 'bagua-fake-site-'));
  if (layout === 'empty') return sp;
  const dir = join(sp, 'nvidia', layout === 'cu13' ? 'cu13' : 'cublas', 'lib');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, layout === 'cu13' ? 'libcublas.so.13' : 'libcublas.so.12'), contents);
  return sp;
}

test('cuBLAS search: BAGUA_PYTHON_SITE_PACKAGES directories, CUDA 13 layout then CUDA 12, every path tried listed', (t) => {
  const empty = fakeSitePackages('empty'), cu12 = fakeSitePackages('cu12'), cu13 = fakeSitePackages('cu13');
  const none = findCublasInPython({ BAGUA_PYTHON_SITE_PACKAGES: empty, PATH: '' }, false);
  t.is(none.found, null);
  t.deepEqual(none.sitePackages.sources, ['BAGUA_PYTHON_SITE_PACKAGES']);
  t.deepEqual(none.tried, [
    join(empty, 'nvidia/cu13/lib/libcublas.so.13'), join(empty, 'nvidia/cu13/lib/libcublas.so.12'),
    join(empty, 'nvidia/cublas/lib/libcublas.so.13'), join(empty, 'nvidia/cublas/lib/libcublas.so.12'),
  ]);
  const old = findCublasInPython({ BAGUA_PYTHON_SITE_PACKAGES: `${empty}:${cu12}`, PATH: '' }, false);
  t.is(old.found, join(cu12, 'nvidia/cublas/lib/libcublas.so.12'), 'the CUDA 12 wheel layout');
  const both = findCublasInPython({ BAGUA_PYTHON_SITE_PACKAGES: `${cu12}:${cu13}`, PATH: '' }, false);
  t.is(both.found, join(cu13, 'nvidia/cu13/lib/libcublas.so.13'), 'the CUDA 13 layout first');
  // VIRTUAL_ENV's lib/python3.X/site-packages
  const venv = mkdtempSync(join(tmpdir(), 'bagua-fake-venv-'));
  const vsp = join(venv, 'lib', 'python3.12', 'site-packages', 'nvidia', 'cu13', 'lib');
  mkdirSync(vsp, { recursive: true });
  writeFileSync(join(vsp, 'libcublas.so.13'), '');
  t.is(findCublasInPython({ VIRTUAL_ENV: venv, PATH: '' }, false).found, join(vsp, 'libcublas.so.13'));
});

test('cuBLAS search: without BAGUA_PYTHON_SITE_PACKAGES, python3 on PATH is asked', (t) => {
  // (the site-packages search itself, with its sources and no-python case: @bagua/nvidia-libs' tests)
  const sp = fakeSitePackages('cu13');
  const bin = mkdtempSync(join(tmpdir(), 'bagua-fake-python-'));
  // a python3 that answers the site-packages question as a virtual environment's would
  writeFileSync(join(bin, 'python3'), `#!/bin/sh\necho ${sp}\necho relative/ignored\n`);
  chmodSync(join(bin, 'python3'), 0o755);
  const s = findCublasInPython({ PATH: bin });
  t.is(s.found, join(sp, 'nvidia/cu13/lib/libcublas.so.13'));
  t.deepEqual(s.sitePackages.sources, ['python3 (asked)']);
  t.is(findCublasInPython({ PATH: bin }, false).found, null, 'askPython false asks nothing');
});

test('cuBLAS search: the wheel is handed over only when nothing comes before it, and never over BAGUA_CUBLAS_LIB', (t) => {
  const sp = fakeSitePackages('cu13');
  const lib = join(sp, 'nvidia/cu13/lib/libcublas.so.13');
  const env = { BAGUA_PYTHON_SITE_PACKAGES: sp, PATH: '' };
  const p = prepareCublasSearch(env, []);
  t.is(p.set, lib);
  t.regex(p.note, /Python site-packages, via BAGUA_CUBLAS_LIB/);
  t.is((env as NodeJS.ProcessEnv).BAGUA_CUBLAS_LIB, undefined, 'a test env object is not modified');
  t.is(prepareCublasSearch({ ...env, BAGUA_CUBLAS_LIB: '/x/libcublas.so.12' }, []).set, null);
  const sys = fakeSitePackages('cu12');
  const sysDir = join(sys, 'nvidia/cublas/lib');
  t.is(cublasBeforeWheels(env, [sysDir]), join(sysDir, 'libcublas.so.12'));
  const q = prepareCublasSearch(env, [sysDir]);
  t.is(q.set, null, 'a cuBLAS on LD_LIBRARY_PATH or in the CUDA toolkit comes first');
  t.regex(q.note, /ahead of any Python wheel/);
});

test('cuBLAS search: the CUDA library loads the cuBLAS of Python\'s site-packages (stub library, child process)', (t) => {
  if (!needLibrary(t)) return;
  // a stub cuBLAS with the three entry points the library looks up
  const sp = fakeSitePackages('empty');
  const dir = join(sp, 'nvidia', 'cu13', 'lib');
  mkdirSync(dir, { recursive: true });
  const src = join(sp, 'stub.c');
  writeFileSync(src, 'int cublasCreate_v2(void **h) { return 0; }\n' +
    'int cublasSetStream_v2(void *h, void *s) { return 0; }\nint cublasSgemmStridedBatched(void) { return 0; }\n');
  const cc = spawnSync('cc', ['-shared', '-fPIC', '-o', join(dir, 'libcublas.so.13'), src], { encoding: 'utf8' });
  if (cc.status !== 0) {
    t.log(`SKIPPED: no C compiler to build the stub cuBLAS (${cc.error?.message ?? cc.stderr})`);
    t.pass();
    return;
  }
  const env: NodeJS.ProcessEnv = { ...process.env, BAGUA_PYTHON_SITE_PACKAGES: sp, LD_LIBRARY_PATH: '/nonexistent/ld-path' };
  for (const k of ['BAGUA_CUBLAS_LIB', 'CUDA_HOME', 'CUDA_PATH', 'VIRTUAL_ENV', 'CONDA_PREFIX']) delete env[k];
  // cuBLAS is loaded in a worker thread: its process.env is a copy, so the hand-over must reach libc's environment
  const script = `
    import { Worker } from 'node:worker_threads';
    const code = \`
      import { parentPort } from 'node:worker_threads';
      const m = await import(${JSON.stringify(new URL('../src/cuda-native.js', import.meta.url).href)});
      const k = m.loadCudaLibrary();
      const buf = new Uint8Array(4096);
      const rc = k.rt.bk_cuda_cublas_info(buf, buf.length);
      parentPort.postMessage({ rc, path: Buffer.from(buf).toString().replace(/\\\\0.*$/s, ''), msg: rc ? k.library.lastError() : '',
        note: m.cublasPreparationNote().note, workerEnv: process.env.BAGUA_CUBLAS_LIB ?? null });\`;
    const w = new Worker(code, { eval: true });
    w.on('message', (r) => { console.log(JSON.stringify({ ...r, mainEnv: process.env.BAGUA_CUBLAS_LIB ?? null })); w.terminate(); });
    w.on('error', (e) => { console.error(e); process.exit(1); });
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env, timeout: 60_000 });
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
    rc: number; path: string; msg: string; note: string; workerEnv: string | null; mainEnv: string | null;
  };
  t.log(`${out.note}; BAGUA_CUBLAS_LIB in the worker ${out.workerEnv}, in the main thread ${out.mainEnv}`);
  const ahead = cublasBeforeWheels(env);
  if (ahead) {
    t.log(`a cuBLAS comes before the wheels here (${ahead}): the hand-over is not needed`);
    t.is(out.rc, 0, out.msg);
    return;
  }
  t.is(out.rc, 0, out.msg);
  t.is(out.path, realpathSync(join(dir, 'libcublas.so.13')));
});

test('cuda: importing @bagua/kernels registers a cuda backend that loads nothing yet', (t) => {
  t.true(hasBackend('cuda'));
  t.is(getBackend('cuda').deviceType, 'cuda');
});

test('cuda: without a usable GPU, using cuda:0 fails with a clear message', (t) => {
  const p = probeCuda();
  if (p.available) {
    // a GPU is here: the error path to check is a device index that does not exist
    t.throws(() => zeros([2], { device: `cuda:${p.devices + 3}` }), { message: /does not exist \(\d+ CUDA device/ });
    return;
  }
  t.log(`probe: ${p.reason}`);
  if (libPath) {
    t.regex(p.reason, /CUDA is unavailable: (no NVIDIA driver|cudaGetDeviceCount failed|the driver reports no CUDA device)/);
    t.true(p.reason.includes(libPath!), 'names the library');
  } else {
    t.regex(p.reason, /was not found\. Tried:/);
  }
  const err = t.throws(() => zeros([2, 3], { device: 'cuda:0' }));
  t.is(err?.message, p.reason, 'allocating reports the same reason');
  if (required('cuda')) t.fail(`BAGUA_REQUIRE=cuda but: ${p.reason}`);
});

test('cuda: a missing library lists the paths tried', (t) => {
  const b = new CudaBackend(['/nonexistent/dir/libbagua_kernels_cuda.so']);
  const err = t.throws(() => b.alloc('float32', 4, 0));
  t.regex(err?.message ?? '', /CUDA kernels library \(libbagua_kernels_cuda\.so\) was not found\. Tried:\n {2}- \/nonexistent\/dir/);
  // how to fix it: build the library, or fix the override that points elsewhere
  t.regex(err?.message ?? '', process.env.BAGUA_KERNELS_CUDA_LIB
    ? /BAGUA_KERNELS_CUDA_LIB is set to a path that does not exist/
    : /pnpm build:cuda \(needs nvcc on PATH\)/);
  // the failure is remembered, not retried on every call
  t.throws(() => b.alloc('float32', 4, 0), { message: /was not found/ });
});

/**
 * bk_cuda_cublas_info in a child process with `env` (the cuBLAS search reads the
 * process environment once): the library's error message, or undefined (logged)
 * when a cuBLAS was found anyway, elsewhere.
 */
function cublasMissingMessage(t: import('ava').ExecutionContext, env: NodeJS.ProcessEnv): string | undefined {
  const script = `
    import { loadCudaLibrary } from ${JSON.stringify(new URL('../src/index.js', import.meta.url).href)};
    const k = loadCudaLibrary();
    const buf = new Uint8Array(4096);
    const rc = k.rt.bk_cuda_cublas_info(buf, buf.length);
    console.log(JSON.stringify({ rc, msg: rc ? k.library.lastError() : Buffer.from(buf).toString().replace(/\\0.*$/s, '') }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8', env, timeout: 60_000, cwd: fileURLToPath(new URL('.', import.meta.url)),
  });
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { rc: number; msg: string };
  if (out.rc === 0) {
    t.log(`cuBLAS found anyway (elsewhere): ${out.msg}`);
    t.regex(out.msg, /libcublas\.so/);
    return undefined;
  }
  t.regex(out.msg, /cuBLAS \(libcublas\.so\.13 or \.12\) was not found/);
  return out.msg;
}

test('cuda: a missing cuBLAS is reported with every path tried', (t) => {
  if (!needLibrary(t)) return;
  const msg = cublasMissingMessage(t,
    { ...process.env, BAGUA_CUBLAS_LIB: '/nonexistent/cublas-dir', LD_LIBRARY_PATH: '/nonexistent/ld-path' });
  if (msg === undefined) return;
  t.regex(msg, /\/nonexistent\/cublas-dir\/libcublas\.so\.13 \(absent\)/, 'BAGUA_CUBLAS_LIB first');
  t.regex(msg, /\/nonexistent\/ld-path\/libcublas\.so\.12 \(absent\)/, 'then LD_LIBRARY_PATH');
  t.regex(msg, /\/usr\/local\/cuda\/lib64\/libcublas\.so\.13/, 'then the CUDA toolkit');
  t.regex(msg, /BAGUA_CUBLAS_LIB/, 'says how to fix it');
});

test('cuda: a missing cuBLAS names the Python site-packages paths tried too', (t) => {
  if (!needLibrary(t)) return;
  const sp = fakeSitePackages('empty');
  const env: NodeJS.ProcessEnv = { ...process.env, BAGUA_PYTHON_SITE_PACKAGES: sp, LD_LIBRARY_PATH: '/nonexistent/ld-path' };
  for (const k of ['BAGUA_CUBLAS_LIB', 'CUDA_HOME', 'CUDA_PATH']) delete env[k];
  const msg = cublasMissingMessage(t, env);
  if (msg === undefined) return;
  t.true(msg.includes('Python site-packages (BAGUA_PYTHON_SITE_PACKAGES'), msg);
  t.true(msg.includes(join(sp, 'nvidia/cu13/lib/libcublas.so.13')), 'the CUDA 13 wheel layout');
  t.true(msg.includes(join(sp, 'nvidia/cublas/lib/libcublas.so.12')), 'the CUDA 12 wheel layout');
});

test('cuda: GPU summary (skips loudly without one)', (t) => {
  if (!cudaOrSkip(t)) return;
  const b = getBackend('cuda') as CudaBackend;
  if (!(b instanceof CudaBackend)) {
    t.pass('stand-in mode');
    return;
  }
  const info = b.deviceInfo(0);
  const v = b.versions();
  t.log(`cuda:0 ${info.name} (sm_${info.computeCapability.replace('.', '')}, ${info.smCount} SMs, ` +
    `${(info.totalBytes / 2 ** 30).toFixed(1)} GiB), driver CUDA ${v.driver}, runtime ${v.runtime}, cuBLAS ${b.cublasPath()}`);
  t.true(info.totalBytes > 0);
});
