/**
 * Python's site-packages: the env variables, VIRTUAL_ENV/CONDA_PREFIX layouts, the
 * system prefixes, and the interpreters asked ($PYTHON, $BAGUA_PYTHON, python3), with
 * where each directory came from.
 */
import test from 'ava';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  askFirstPython, askPythonSitePackages, prefixSitePackages, pythonCandidates, pythonSitePackages, whichExecutable,
} from '../src/index.js';

/** An executable shell script `name` in a fresh directory that prints `lines`; returns the directory. */
function fakeExecutable(name: string, ...lines: string[]): string {
  const bin = mkdtempSync(join(tmpdir(), 'bagua-fake-python-'));
  writeFileSync(join(bin, name), `#!/bin/sh\n${lines.map((l) => `echo ${l}\n`).join('')}`);
  chmodSync(join(bin, name), 0o755);
  return bin;
}

test('whichExecutable: PATH lookup, a path with a slash taken as is, non-executables skipped', (t) => {
  const bin = fakeExecutable('bagua-which-test');
  t.is(whichExecutable('bagua-which-test', { PATH: `/nonexistent:${bin}` }), join(bin, 'bagua-which-test'));
  t.is(whichExecutable(join(bin, 'bagua-which-test'), { PATH: '' }), join(bin, 'bagua-which-test'));
  t.is(whichExecutable('bagua-which-test', { PATH: '' }), null);
  writeFileSync(join(bin, 'not-executable'), '');
  t.is(whichExecutable('not-executable', { PATH: bin }), null);
  t.is(whichExecutable(bin, { PATH: '' }), null, 'a directory is not an executable');
});

test('site-packages: BAGUA_PYTHON_SITE_PACKAGES, then VIRTUAL_ENV and CONDA_PREFIX, each source named', (t) => {
  const a = mkdtempSync(join(tmpdir(), 'bagua-sp-a-'));
  const venv = mkdtempSync(join(tmpdir(), 'bagua-fake-venv-'));
  mkdirSync(join(venv, 'lib', 'python3.12'), { recursive: true });
  mkdirSync(join(venv, 'lib', 'python3.10'), { recursive: true });
  const conda = mkdtempSync(join(tmpdir(), 'bagua-fake-conda-'));
  mkdirSync(join(conda, 'lib64', 'python3'), { recursive: true });
  t.deepEqual(prefixSitePackages(venv), [
    join(venv, 'lib/python3.12/site-packages'), join(venv, 'lib/python3.12/dist-packages'),
    join(venv, 'lib/python3.10/site-packages'), join(venv, 'lib/python3.10/dist-packages'),
  ], 'newest Python first');
  const r = pythonSitePackages({ BAGUA_PYTHON_SITE_PACKAGES: `${a}::${a}`, VIRTUAL_ENV: venv, CONDA_PREFIX: conda, PATH: '' });
  t.deepEqual(r.dirs, [a, ...prefixSitePackages(venv), join(conda, 'lib64/python3/site-packages'),
    join(conda, 'lib64/python3/dist-packages')]);
  t.deepEqual(r.sources, ['BAGUA_PYTHON_SITE_PACKAGES', 'VIRTUAL_ENV', 'CONDA_PREFIX']);
  t.deepEqual(pythonSitePackages({ PATH: '' }), { dirs: [], sources: [] });
  // the system prefixes only on request, after the environment's own
  const sys = pythonSitePackages({ BAGUA_PYTHON_SITE_PACKAGES: a, PATH: '' }, { systemPrefixes: true });
  t.is(sys.dirs[0], a);
  t.true(sys.sources.every((s) => s === 'BAGUA_PYTHON_SITE_PACKAGES' || s.startsWith('/')), sys.sources.join(', '));
});

test('site-packages: python3 on PATH is asked (absolute directories only, cached), and nothing runs without one', (t) => {
  const sp = mkdtempSync(join(tmpdir(), 'bagua-fake-site-'));
  // a python3 that answers the site-packages question as a virtual environment's would
  const bin = fakeExecutable('python3', sp, 'relative/ignored', sp);
  const asked = pythonSitePackages({ PATH: bin });
  t.deepEqual(asked.dirs, [sp]);
  t.deepEqual(asked.sources, ['python3 (asked)']);
  t.deepEqual(askPythonSitePackages('python3', { PATH: bin }), [sp], 'duplicates removed');
  // asked once per interpreter: a changed answer is not seen
  writeFileSync(join(bin, 'python3'), '#!/bin/sh\necho /changed\n');
  t.deepEqual(askPythonSitePackages('python3', { PATH: bin }), [sp]);
  t.deepEqual(pythonSitePackages({ PATH: bin }, { askPython: false }), { dirs: [], sources: [] });
  const noPython = pythonSitePackages({ PATH: mkdtempSync(join(tmpdir(), 'bagua-no-python-')) });
  t.deepEqual(noPython, { dirs: [], sources: [] });
  t.deepEqual(askPythonSitePackages('python3', { PATH: '/nonexistent/bin' }), []);
  // a failing interpreter counts as no answer
  const failing = mkdtempSync(join(tmpdir(), 'bagua-fake-python-'));
  writeFileSync(join(failing, 'python3'), '#!/bin/sh\necho /x\nexit 1\n');
  chmodSync(join(failing, 'python3'), 0o755);
  t.deepEqual(askPythonSitePackages('python3', { PATH: failing }), []);
  // the real python3 here, if any: a list of absolute directories, quickly
  const t0 = performance.now();
  const real = pythonSitePackages(process.env);
  t.log(`python3 here: ${real.dirs.join(', ') || 'none'} (${(performance.now() - t0).toFixed(0)} ms)`);
  t.true(real.dirs.every((d) => d.startsWith('/')));
});

test('site-packages: $PYTHON, then $BAGUA_PYTHON, then python3; the first that answers is the one reported', (t) => {
  const spA = mkdtempSync(join(tmpdir(), 'bagua-fake-site-'));
  const spB = mkdtempSync(join(tmpdir(), 'bagua-fake-site-'));
  const pyA = join(fakeExecutable('py-a', spA), 'py-a');
  const pyB = join(fakeExecutable('py-b', spB), 'py-b');
  const silent = join(fakeExecutable('py-silent'), 'py-silent');
  t.deepEqual(pythonCandidates({ PYTHON: pyA, BAGUA_PYTHON: pyB }), [pyA, pyB, 'python3']);
  t.deepEqual(pythonCandidates({}), ['python3']);
  t.deepEqual(askFirstPython({ PYTHON: pyA, BAGUA_PYTHON: pyB, PATH: '' }), { python: pyA, dirs: [spA] });
  // one that exists but names no site-packages is passed over
  t.deepEqual(askFirstPython({ PYTHON: silent, BAGUA_PYTHON: pyB, PATH: '' }), { python: pyB, dirs: [spB] });
  const r = pythonSitePackages({ PYTHON: '/nonexistent/python', BAGUA_PYTHON: pyB, PATH: '' });
  t.deepEqual(r, { dirs: [spB], sources: [`${pyB} (asked)`] });
  t.is(askFirstPython({ PYTHON: silent, PATH: '' }), null);
});
