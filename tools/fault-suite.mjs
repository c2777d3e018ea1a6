// tools/fault-suite: the faults of issue 11, each staged against the public
// launcher CLI (packages/comm/bin/bagua-launch.js) and the public @bagua/comm
// API, with its time to failure measured and a PASS/FAIL verdict.
//
//   tools/fault-suite [--runs N] [--case NAME] [--budget-s S] [--list]
// Exit 0 when every run of every case passed, 1 otherwise. Rank programs are
// in tools/testing/faults/. One run of every case is bounded to about 3 minutes
// even when every case fails (each has its own deadline).

import { rmSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  ROOT, RANK, TRAIN, SLACK_MS, live, start, launcher, reap, killPid, alive, sleep, waitFor, records, tempDir, readJson, tail, rssMiB, frame, field, OP, stranger,
} from './testing/faults/harness.mjs';

// ------------------------------------------------------------------ cases

const CASES = {};

// (1) A store that accepts and never answers: initProcessGroup must give up
// within BAGUA_TIMEOUT_MS + 5 s and say which store it was waiting for.
CASES['silent-store'] = async () => {
  const sockets = [];
  const server = net.createServer((s) => sockets.push(s)); // accept, read nothing, answer nothing
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  const limit = 3000;
  const base = { MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), WORLD_SIZE: '2', RANK: '1', BAGUA_BACKEND: 'gloo', BAGUA_TIMEOUT_MS: String(limit) };
  // With and without a token: the first request differs (AUTH, SET).
  const probes = [start([RANK, 'init-probe'], { ...base, BAGUA_STORE_TOKEN: 'job-token' }), start([RANK, 'init-probe'], { ...base, BAGUA_STORE_TOKEN: '' })];
  await Promise.race([Promise.all(probes.map((p) => p.done)), sleep(limit + SLACK_MS + 5000)]);
  for (const s of sockets) s.destroy();
  server.close();
  let ok = true;
  let worst = 0;
  const rows = [];
  for (const [i, p] of probes.entries()) {
    const f = records(p, 'FAILED')[0];
    const ms = f ? f.ms : null;
    const named = !!f && f.message.includes(`127.0.0.1:${port}`);
    const good = f && ms <= limit + SLACK_MS && named && p.exit && p.exit.code !== 0;
    ok &&= !!good;
    worst = Math.max(worst, ms ?? Infinity);
    rows.push(
      `${i ? 'no token' : 'token'}: ${f ? `failed after ${ms} ms${named ? '' : ' WITHOUT naming 127.0.0.1:' + port}: ${f.message.slice(0, 200)}` : `no failure within ${limit + SLACK_MS + 5000} ms${records(p, 'INIT_OK').length ? ' (init succeeded!)' : ''}`}`,
    );
    if (!good) rows.push(tail(p, 6));
    await reap(p);
  }
  return { ok, ms: worst, detail: rows.join('\n    ') };
};

// (2) Node 0's store frozen (the launcher SIGSTOPped): ranks that rendezvous
// then, and ranks already using the store, must fail within timeout + 5 s.
CASES['frozen-store'] = async () => {
  const limit = 3000;
  const rows = [];
  let ok = true;
  let worst = 0;
  for (const mode of ['late-init', 'store-loop']) {
    const dir = tempDir();
    const p = launcher(['--nproc-per-node', '2', '--backend', 'gloo', '--timeout-ms', String(limit)], RANK, [mode], { FAULT_DIR: dir });
    const tag = mode === 'late-init' ? 'STARTED' : 'READY';
    const ready = await waitFor(() => [0, 1].every((r) => existsSync(join(dir, `${tag}-rank${r}.json`))) || p.exit, 30_000);
    if (!ready || p.exit) {
      ok = false;
      rows.push(`${mode}: the job did not start\n${tail(p)}`);
      await reap(p);
      continue;
    }
    killPid(p.pid, 'SIGSTOP');
    const tStop = performance.now();
    if (mode === 'late-init') writeFileSync(join(dir, 'go'), '');
    const bound = limit + SLACK_MS;
    await waitFor(() => [0, 1].every((r) => existsSync(join(dir, `FAILED-rank${r}.json`)) || existsSync(join(dir, `INIT_OK-rank${r}.json`))), bound + 5000);
    const t = performance.now() - tStop;
    const fails = [0, 1].map((r) => readJson(join(dir, `FAILED-rank${r}.json`)));
    for (const [r, f] of fails.entries()) {
      const good = f && f.ms <= bound;
      ok &&= !!good;
      worst = Math.max(worst, f ? f.ms : Infinity);
      const named = f && /127\.0\.0\.1:\d+|store/.test(f.message);
      rows.push(
        `${mode} rank ${r}: ${f ? `failed ${f.ms} ms into its store call${named ? '' : ' (the store is not named)'}: ${f.message.slice(0, 200)}` : `no failure ${Math.round(t)} ms after SIGSTOP`}`,
      );
    }
    killPid(p.pid, 'SIGCONT');
    await reap(p);
    rmSync(dir, { recursive: true, force: true });
  }
  return { ok, ms: worst, detail: rows.join('\n    ') };
};

// (3) A rank exits with 7 after a few steps: the launcher exits 7 naming rank 2.
CASES['rank-exits'] = async () => {
  const p = launcher(['--nproc-per-node', '4', '--backend', 'gloo', '--timeout-ms', '10000'], TRAIN, ['100000', '20', '1024'], {
    FAULT_EXIT_RANK: '2',
    FAULT_EXIT_STEP: '5',
    FAULT_EXIT_CODE: '7',
  });
  await Promise.race([p.done, sleep(20_000)]);
  const exitLine = p.lines.find((l) => /rank 2 exits with 7/.test(l.text));
  const code = p.exit?.code;
  const blame = p.lines.filter((l) => l.text.startsWith('bagua-launch:')).map((l) => l.text);
  const named = blame.some((t) => /\brank 2\b/.test(t));
  const others = blame.some((t) => /\brank [013]\b/.test(t) && !/\brank 2\b/.test(t));
  const ms = exitLine && p.exit ? Math.round(p.exit.t - exitLine.t) : null;
  const ok = code === 7 && named && !others && ms !== null;
  const detail = `launcher exit ${code ?? 'none (killed after 20 s)'}, ${ms ?? '-'} ms after rank 2 exited; launcher said: ${blame.join(' / ').slice(0, 300) || '(nothing)'}`;
  await reap(p);
  return { ok, ms: ms ?? Infinity, detail: ok ? detail : `${detail}\n${tail(p)}` };
};

// (4) A rank SIGKILLed inside a 64 MiB all-reduce: the others' errors name that
// rank and no other; the launcher exits 137.
CASES['kill-in-allreduce'] = async () => {
  const victim = 1;
  const p = launcher(['--nproc-per-node', '3', '--backend', 'gloo', '--timeout-ms', '10000'], RANK, ['big'], { FAULT_DIR: tempDir() });
  const inside = await waitFor(() => p.exit || p.lines.find((l) => l.text.includes(`BIG_START 1 rank ${victim}`)), 30_000);
  const pid = records(p, 'READY').find((r) => r.rank === victim)?.pid;
  if (!inside || p.exit || !pid) {
    await reap(p);
    return { ok: false, ms: Infinity, detail: `the job never got into its second all-reduce\n${tail(p)}` };
  }
  await sleep(30); // well inside: a 64 MiB all-reduce takes far longer
  killPid(pid, 'SIGKILL');
  const tKill = performance.now();
  await Promise.race([p.done, sleep(20_000)]);
  const fails = records(p, 'FAILED');
  const rows = [];
  let ok = p.exit?.code === 137 && fails.length > 0;
  let worst = 0;
  for (const f of fails) {
    const blamed = new Set();
    const m = /ranks not arrived: ([\d, ]+)/.exec(f.message);
    if (m) for (const x of m[1].split(/[, ]+/).filter(Boolean)) blamed.add(Number(x));
    for (const x of f.message.matchAll(/\brank (\d+)/g)) if (Number(x[1]) !== f.rank) blamed.add(Number(x[1]));
    const good = blamed.has(victim) && blamed.size === 1;
    ok &&= good;
    const ms = Math.round(f.t - tKill);
    worst = Math.max(worst, ms);
    rows.push(`rank ${f.rank}: ${good ? 'names rank 1 only' : `names [${[...blamed].join(', ')}]`}, ${ms} ms after the kill: ${f.message.slice(0, 200)}`);
  }
  const silent = [0, 1, 2].filter((r) => r !== victim && !fails.some((f) => f.rank === r));
  if (silent.length) rows.push(`ranks ${silent.join(', ')}: no error of their own (stopped by the launcher)`);
  const said = p.lines.filter((l) => l.text.startsWith('bagua-launch:')).map((l) => l.text);
  const launcherNames = said.some((t) => new RegExp(`\\brank ${victim}\\b`).test(t));
  ok &&= launcherNames;
  rows.unshift(`launcher exit ${p.exit?.code ?? 'none (killed after 20 s)'} ${p.exit ? `${Math.round(p.exit.t - tKill)} ms after the kill` : ''}; said: ${said.join(' / ').slice(0, 200)}`);
  await reap(p);
  return { ok, ms: fails.length ? worst : Infinity, detail: rows.join('\n    ') + (ok ? '' : `\n${tail(p)}`) };
};

// (5) Mismatched collectives after a warm-up: each rank fails within 2 s,
// naming both calls (with a 30 s timeout, waiting it out is not an answer).
CASES['mismatch'] = async () => {
  const rows = [];
  let ok = true;
  let worst = 0;
  // 256 floats take gloo's small path; 1 Mi floats (4 MiB) its large path.
  for (const [kind, n] of [['repeat', 256], ['root', 256], ['repeat', 1 << 20], ['root', 1 << 20]]) {
    const p = launcher(['--nproc-per-node', '2', '--backend', 'gloo', '--timeout-ms', '30000'], RANK, ['mismatch', kind, String(n)], { FAULT_DIR: tempDir() });
    // Start-up plus the 2 s allowed, with room; a hang is cut short here.
    await Promise.race([p.done, sleep(6_000)]);
    const fails = records(p, 'FAILED');
    for (const r of [0, 1]) {
      const f = fails.find((x) => x.rank === r);
      const msg = f?.message ?? '';
      const both =
        kind === 'repeat' ? /all[-_ ]?reduce/i.test(msg) && /broadcast/i.test(msg) : /broadcast/i.test(msg) && /root\D*0/i.test(msg) && /root\D*1/i.test(msg);
      const good = f && f.ms <= 2000 && both;
      ok &&= !!good;
      worst = Math.max(worst, f ? f.ms : Infinity);
      rows.push(
        `${kind} ${n * 4} B rank ${r}: ${f ? `failed after ${f.ms} ms${both ? '' : ' NOT naming both calls'}: ${msg.slice(0, 220)}` : records(p, 'NO_ERROR').some((x) => x.rank === r) ? 'NO ERROR: the mismatched call went through' : `no error within ${p.exit ? 'its run' : '6 s (hung)'}`}`,
      );
    }
    await reap(p);
  }
  return { ok, ms: worst, detail: rows.join('\n    ') };
};

// (6) A client without the job's token can neither read nor write the launcher's store.
CASES['strangers'] = async () => {
  const dir = tempDir();
  const env = { FAULT_DIR: dir, BAGUA_STORE_TOKEN: '' }; // the launcher's default, whatever it is
  const p = launcher(['--nproc-per-node', '1', '--backend', 'gloo', '--timeout-ms', '10000'], RANK, ['holder'], env);
  const ready = await waitFor(() => p.exit || records(p, 'READY')[0], 30_000);
  if (!ready || p.exit) {
    await reap(p);
    return { ok: false, ms: 0, detail: `the job did not start\n${tail(p)}` };
  }
  const port = ready.port;
  const t0 = performance.now();
  const set = Buffer.concat([Buffer.from([OP.SET]), field('fault/stranger'), field('evil')]);
  const overwrite = Buffer.concat([Buffer.from([OP.SET]), field('fault/secret'), field('evil')]);
  const get = Buffer.concat([Buffer.from([OP.GET]), field('fault/secret')]);
  const noAuth = await stranger(port, [get, set, overwrite]);
  const badAuth = await stranger(port, [Buffer.concat([Buffer.from([OP.AUTH]), field('not-the-token')]), get, set, overwrite]);
  const ms = Math.round(performance.now() - t0);
  writeFileSync(join(dir, 'check'), '');
  await waitFor(() => records(p, 'CHECK')[0] || p.exit, 10_000);
  await Promise.race([p.done, sleep(5_000)]);
  // Read after the exit too: the line and the exit may arrive in either order.
  const check = records(p, 'CHECK')[0];
  const leaked = [...noAuth, ...badAuth.slice(1)].some((a) => a.startsWith('OK'));
  const authOk = badAuth[0].startsWith('OK');
  const intact = check && check.secret === 'v1' && check.planted === false;
  const ok = !leaked && !authOk && !!intact && p.exit?.code === 0;
  const detail =
    `no token: GET/SET/overwrite -> ${noAuth.join(' | ')}; wrong token: AUTH/GET/SET/overwrite -> ${badAuth.join(' | ')}; ` +
    `afterwards the job reads secret=${check?.secret ?? '?'} planted=${check?.planted ?? '?'}${check?.error ? ` error ${check.error}` : ''}; launcher exit ${p.exit?.code ?? 'none'}`;
  await reap(p);
  rmSync(dir, { recursive: true, force: true });
  return { ok, ms, detail: ok ? detail : `${detail}\n${tail(p)}` };
};

// (7) Slow frames: clients announce big frames and trickle them in, never
// finishing. First strangers (no token), then clients that hold the job's token
// (a buggy or hostile rank). The launcher, whose thread serves the store, must
// stay under 256 MiB RSS and come back near where it started, and the store
// must keep serving the job.
async function slowFrames(port, token, conns, perConn, rss) {
  const chunk = Buffer.alloc(256 << 10, 0x61);
  const socks = [];
  let offered = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: conns }, () =>
      new Promise((res) => {
        const s = net.connect({ host: '127.0.0.1', port });
        socks.push(s);
        let closed = false;
        s.on('error', () => undefined);
        s.on('close', () => {
          closed = true;
          res();
        });
        s.on('connect', async () => {
          if (token) s.write(frame(Buffer.concat([Buffer.from([OP.AUTH]), field(token)])));
          const h = Buffer.alloc(4);
          h.writeUInt32LE(perConn + 1); // one byte is never sent: the frame never completes
          s.write(h);
          let sent = 0;
          while (!closed && sent < perConn && performance.now() - t0 < 6000) {
            if (!s.write(chunk)) await new Promise((r) => s.once('drain', r).once('close', r));
            sent += chunk.length;
            offered += chunk.length;
            await sleep(10);
          }
          res();
        });
      }),
    ),
  );
  await sleep(300);
  const end = rss();
  const dropped = socks.filter((s) => s.destroyed || s.readableEnded).length;
  for (const s of socks) s.destroy();
  return { offered, end, dropped, ms: Math.round(performance.now() - t0) };
}

CASES['slow-frames'] = async () => {
  const dir = tempDir();
  const token = `fault-suite-${process.pid}`;
  const p = launcher(['--nproc-per-node', '1', '--backend', 'gloo', '--timeout-ms', '10000'], RANK, ['holder'], { FAULT_DIR: dir, BAGUA_STORE_TOKEN: token });
  const ready = await waitFor(() => p.exit || records(p, 'READY')[0], 30_000);
  if (!ready || p.exit) {
    await reap(p);
    return { ok: false, ms: 0, detail: `the job did not start\n${tail(p)}` };
  }
  await sleep(300);
  const before = rssMiB(p.pid);
  let peak = before ?? 0;
  const sample = () => {
    const r = rssMiB(p.pid);
    if (r !== null && r > peak) peak = r;
    return r;
  };
  const sampler = setInterval(sample, 50);
  const f = (x) => (x === null || x === undefined ? '?' : `${x.toFixed(0)} MiB`);
  const rows = [];
  const t0 = performance.now();
  // 32 x 12 MiB = 384 MiB offered in each phase: more than the limit if the store kept it.
  for (const [who, tok] of [['strangers', null], ['token holders', token]]) {
    const peakBefore = peak;
    peak = 0;
    const r = await slowFrames(ready.port, tok, 32, 12 << 20, sample);
    rows.push(`${who}: offered ${(r.offered / 2 ** 20).toFixed(0)} MiB of unfinished frames in ${r.ms} ms, ${r.dropped}/32 cut off by the store; RSS peak ${f(peak)}, at the end ${f(r.end)}`);
    peak = Math.max(peak, peakBefore);
  }
  await sleep(2500);
  clearInterval(sampler);
  const after = rssMiB(p.pid);
  writeFileSync(join(dir, 'check'), '');
  await waitFor(() => records(p, 'CHECK')[0] || p.exit, 10_000);
  await Promise.race([p.done, sleep(5_000)]);
  // Read after the exit too: the line and the exit may arrive in either order.
  const check = records(p, 'CHECK')[0];
  const serving = check && check.secret === 'v1';
  const ok = before !== null && peak < 256 && after !== null && after < before + 48 && !!serving && p.exit?.code === 0;
  rows.unshift(
    `launcher RSS start ${f(before)}, peak ${f(peak)} (limit 256 MiB), 2.5 s after ${f(after)} (limit start + 48 MiB); ` +
      `store still serving the job: ${serving ? 'yes' : `NO ${check?.error ?? ''}`}; launcher exit ${p.exit?.code ?? 'none'}`,
  );
  await reap(p);
  rmSync(dir, { recursive: true, force: true });
  return { ok, ms: Math.round(performance.now() - t0), detail: rows.join('\n    ') + (ok ? '' : `\n${tail(p)}`) };
};

// (8) Orphans: the launcher SIGKILLed (nothing forwards anything); every rank
// must be gone within a few seconds on its own.
CASES['orphans'] = async () => {
  const bound = 5000;
  const p = launcher(['--nproc-per-node', '2', '--backend', 'gloo', '--timeout-ms', '10000'], TRAIN, ['1000000', '20', '1024'], { FAULT_QUIET: '1' });
  const pids = await waitFor(() => {
    const ready = p.lines.map((l) => /READY rank (\d+) of \d+ pid (\d+)/.exec(l.text)).filter(Boolean);
    const stepping = [0, 1].every((r) => p.lines.some((l) => l.text.includes(`STEP 3 rank ${r}`)));
    return ready.length === 2 && stepping ? ready.map((m) => Number(m[2])) : null;
  }, 30_000);
  if (!pids) {
    await reap(p);
    return { ok: false, ms: Infinity, detail: `the job did not start\n${tail(p)}` };
  }
  killPid(p.pid, 'SIGKILL');
  const tKill = performance.now();
  const gone = pids.map(() => null);
  await waitFor(() => {
    pids.forEach((pid, i) => {
      if (gone[i] === null && !alive(pid)) gone[i] = Math.round(performance.now() - tKill);
    });
    return gone.every((g) => g !== null);
  }, bound + 3000);
  for (const pid of pids) killPid(pid); // leftovers
  await reap(p);
  const ok = gone.every((g) => g !== null && g <= bound);
  const worst = Math.max(...gone.map((g) => g ?? Infinity));
  return {
    ok,
    ms: worst,
    detail: pids.map((pid, i) => `rank ${i} (pid ${pid}): ${gone[i] === null ? `STILL RUNNING ${bound + 3000} ms after the launcher died (killed now)` : `gone ${gone[i]} ms after the launcher died`}`).join('; '),
  };
};

// (9) Usage errors end the launcher at once with exit 2, before any rank starts.
CASES['usage'] = async () => {
  const rows = [];
  let ok = true;
  let worst = 0;
  for (const [what, opts, env] of [
    ['--timeout-ms -5', ['--timeout-ms', '-5'], {}],
    ['--grace-ms -1', ['--grace-ms', '-1'], {}],
    ['BAGUA_TIMEOUT_MS=abc', [], { BAGUA_TIMEOUT_MS: 'abc' }],
  ]) {
    const p = launcher(['--nproc-per-node', '2', '--backend', 'gloo', ...opts], TRAIN, ['3', '0', '16'], env);
    await Promise.race([p.done, sleep(5_000)]);
    const ms = p.exit ? Math.round(p.exit.t - p.t0) : Infinity;
    const ranks = p.lines.some((l) => /READY rank/.test(l.text));
    const good = p.exit?.code === 2 && ms <= 3000 && !ranks;
    ok &&= good;
    worst = Math.max(worst, ms);
    const said = p.lines.find((l) => l.text.startsWith('bagua-launch:'))?.text ?? '';
    rows.push(`${what}: exit ${p.exit?.code ?? 'none after 5 s'} in ${ms} ms${ranks ? ', ranks STARTED' : ''}${said ? `: ${said.slice(0, 160)}` : ''}`);
    await reap(p);
  }
  return { ok, ms: worst, detail: rows.join('\n    ') };
};

// ------------------------------------------------------------------ driver

const argv = process.argv.slice(2);
const opt = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
if (argv.includes('--list')) {
  console.log(Object.keys(CASES).join('\n'));
  process.exit(0);
}
const runs = Number(opt('--runs') ?? process.env.FAULT_RUNS ?? 1);
const only = opt('--case');
if (!Number.isInteger(runs) || runs < 1) {
  console.error(`fault-suite: --runs needs a positive integer, got '${opt('--runs')}'`);
  process.exit(2);
}
if (only && !CASES[only]) {
  console.error(`fault-suite: no case '${only}' (${Object.keys(CASES).join(', ')})`);
  process.exit(2);
}
if (!existsSync(join(ROOT, 'packages/comm/dist/src/index.js'))) {
  console.error('fault-suite: packages/comm is not built (pnpm build)');
  process.exit(2);
}

// Every case but 'usage' needs gloo: say once why it cannot run, not nine times.
const { glooAvailability } = await import(join(ROOT, 'packages/comm/dist/src/index.js'));
const gloo = glooAvailability();
if (!gloo.available) {
  console.error(`fault-suite: FAILED: the gloo backend is not available: ${gloo.reason}`);
  process.exit(1);
}

const names = only ? [only] : Object.keys(CASES);
// Every case has its own deadlines; this caps the whole run (default 180 s a run)
// should several hang at once: cases not started by then fail as not run.
const budgetMs = Number(opt('--budget-s') ?? 180) * 1000 * runs;
const summary = [];
const tStart = performance.now();
for (const name of names) {
  const times = [];
  let passed = 0;
  for (let i = 0; i < runs; i++) {
    let r;
    try {
      if (performance.now() - tStart > budgetMs) throw new Error(`not run: the suite is past its ${budgetMs / 1000} s budget`);
      r = await CASES[name]();
    } catch (e) {
      r = { ok: false, ms: Infinity, detail: String(e?.message).startsWith('not run') ? e.message : `the case itself threw: ${e?.stack ?? e}` };
    }
    for (const p of [...live]) await reap(p);
    if (r.ok) passed++;
    if (Number.isFinite(r.ms)) times.push(r.ms);
    console.log(`fault-suite: ${r.ok ? 'PASS' : 'FAIL'} ${name}${runs > 1 ? ` (run ${i + 1}/${runs})` : ''}: time ${Number.isFinite(r.ms) ? `${r.ms} ms` : '-'}\n    ${r.detail}`);
  }
  times.sort((a, b) => a - b);
  const stat = times.length ? `time to failure min ${times[0]} / median ${times[Math.floor((times.length - 1) / 2)]} / max ${times[times.length - 1]} ms` : 'no time measured';
  summary.push({ name, passed, stat });
}
console.log(`fault-suite: summary (${Math.round((performance.now() - tStart) / 1000)} s)`);
for (const s of summary) console.log(`  ${s.passed === runs ? 'PASS' : 'FAIL'} ${s.name.padEnd(18)} ${s.passed}/${runs}  ${s.stat}`);
const bad = summary.filter((s) => s.passed !== runs);
console.log(`fault-suite: ${summary.length - bad.length}/${summary.length} cases passed every run${bad.length ? `; failing: ${bad.map((s) => s.name).join(', ')}` : ''}`);
process.exit(bad.length ? 1 : 0);
