// Where the native libraries are looked for: native/build of a source checkout, then the
// platform package (@bagua/kernels-<platform>), and what the error says when neither fits.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import {
  CPU_LIBRARY, currentPlatform, libraryCandidates, platformPackage, prebuiltNote, PREBUILT_PLATFORMS, type PlatformInfo,
} from '../src/load-library.js';

test('this machine is named as the platform packages are (linux-x64-gnu here)', (t) => {
  const p = currentPlatform();
  t.is(p.platform, process.platform);
  t.is(p.arch, process.arch);
  t.is(p.tag, `${p.platform}-${p.arch}${p.libc === 'glibc' ? '-gnu' : p.libc === 'musl' ? '-musl' : ''}`);
  if (process.platform === 'linux') t.true(p.libc === 'glibc' || p.libc === 'musl');
  else t.is(p.libc, null);
});

test('candidates: native/build first (a fresh local build), then the platform package lib/', (t) => {
  const c = libraryCandidates(CPU_LIBRARY, {});
  t.regex(c[0]!, /packages\/kernels\/native\/build\/libbagua_kernels_cpu\.so$/);
  const pkg = platformPackage();
  if (!PREBUILT_PLATFORMS.includes(currentPlatform().tag)) {
    t.is(pkg.dir, null);
    return;
  }
  // in the workspace the platform package is linked as kernels' optional dependency
  t.truthy(pkg.dir, `${pkg.name} is not linked`);
  t.true(existsSync(join(pkg.dir!, 'package.json')));
  t.is(c[c.length - 1], join(pkg.dir!, 'lib', 'libbagua_kernels_cpu.so'));
  // an explicit path stays the only candidate
  t.deepEqual(libraryCandidates(CPU_LIBRARY, { BAGUA_KERNELS_CPU_LIB: '/x/y.so' }), ['/x/y.so']);
});

test('not-found note: another platform is named with the ones that have prebuilt packages', (t) => {
  const arm: PlatformInfo = { platform: 'linux', arch: 'arm64', libc: 'musl', tag: 'linux-arm64-musl' };
  const note = prebuiltNote(CPU_LIBRARY, arm);
  t.is(note, 'this machine is linux-arm64-musl (process.platform linux, arch arm64, libc musl); ' +
    'prebuilt libraries exist for linux-x64-gnu only, so build it from source');
  const mac: PlatformInfo = { platform: 'darwin', arch: 'arm64', libc: null, tag: 'darwin-arm64' };
  t.regex(prebuiltNote(CPU_LIBRARY, mac), /^this machine is darwin-arm64 \(process\.platform darwin, arch arm64\); prebuilt/);
});
