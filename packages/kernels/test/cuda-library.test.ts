/**
 * The CUDA library without a GPU: it is built wherever nvcc is, it exports the
 * whole C ABI, and a missing library, driver, device or cuBLAS gives an error
 * that says what is missing and where it was looked for. These run everywhere.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { getBackend, hasBackend, zeros } from '@bagua/core';
import {
  CUDA_LIBRARY, CudaBackend, KERNEL_NAMES, libraryCandidates, loadCudaLibrary, probeCuda,
} from '../src/index.js';
import { cudaOrSkip, required } from './cuda-helpers.js';

const nvcc = spawnSync('nvcc', ['--version'], { encoding: 'utf8' });
const haveNvcc = nvcc.status === 0;
const libPath = libraryCandidates(CUDA_LIBRARY).find((p) => existsSync(p));

function needLibrary(t: import('ava').ExecutionContext): boolean {
  if (libPath) return true;
  const why = haveNvcc
    ? 'nvcc is present but the library is not built'
    : 'nvcc is not on PATH, so the CUDA library is not built here';
  if (haveNvcc || required('cuda')) {
    t.fail(`${why}; tried ${libraryCandidates(CUDA_LIBRARY).join(', ')}`);
    return false;
  }
  t.log(`SKIPPED (cuda missing): ${why}`);
  console.warn(`[${t.title}] SKIPPED (cuda missing): ${why}`);
  t.pass();
  return false;
}

test('cuda library: built as part of the native build wherever nvcc is', (t) => {
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
  const r = spawnSync('make', ['-s', '-C', dir, 'check'], { encoding: 'utf8', timeout: 110_000 });
  const out = `${r.stdout}${r.stderr}`;
  t.is(r.status, 0, out.split('\n').slice(-15).join('\n'));
  t.regex(out, /test_walk: \d+ launch geometries, every element visited once/);
  t.regex(out, /test_host: \d+ comparisons .* all match/);
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
    : /pnpm --filter @bagua\/kernels native/);
  // the failure is remembered, not retried on every call
  t.throws(() => b.alloc('float32', 4, 0), { message: /was not found/ });
});

test('cuda: a missing cuBLAS is reported with every path tried', (t) => {
  if (!needLibrary(t)) return;
  // The cuBLAS search reads the process environment once: run it in a child process.
  const script = `
    import { loadCudaLibrary } from ${JSON.stringify(new URL('../src/index.js', import.meta.url).href)};
    const k = loadCudaLibrary();
    const buf = new Uint8Array(4096);
    const rc = k.rt.bk_cuda_cublas_info(buf, buf.length);
    console.log(JSON.stringify({ rc, msg: rc ? k.library.lastError() : Buffer.from(buf).toString().replace(/\\0.*$/s, '') }));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: { ...process.env, BAGUA_CUBLAS_LIB: '/nonexistent/cublas-dir', LD_LIBRARY_PATH: '/nonexistent/ld-path' },
    cwd: fileURLToPath(new URL('.', import.meta.url)),
  });
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { rc: number; msg: string };
  if (out.rc === 0) {
    t.log(`cuBLAS found anyway (elsewhere): ${out.msg}`);
    t.regex(out.msg, /libcublas\.so/);
    return;
  }
  t.regex(out.msg, /cuBLAS \(libcublas\.so\.13 or \.12\) was not found/);
  t.regex(out.msg, /\/nonexistent\/cublas-dir\/libcublas\.so\.13 \(absent\)/, 'BAGUA_CUBLAS_LIB first');
  t.regex(out.msg, /\/nonexistent\/ld-path\/libcublas\.so\.12 \(absent\)/, 'then LD_LIBRARY_PATH');
  t.regex(out.msg, /\/usr\/local\/cuda\/lib64\/libcublas\.so\.13/, 'then the CUDA toolkit');
  t.regex(out.msg, /BAGUA_CUBLAS_LIB/, 'says how to fix it');
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
