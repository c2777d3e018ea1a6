// tools/netns-cluster: a two-host gloo job across two network namespaces.
//
// Host h0 (10.213.0.1) and host h1 (10.213.0.2) are namespaces joined by a veth
// pair; each runs `bagua-launch --nnodes 2 --nproc-per-node 2 --backend gloo`
// with tools/testing/faults/train-loop.mjs. Three checks:
//   clean  both launchers exit 0 and all four ranks print the same checksum;
//   bind   while the job trains, the store listens on 10.213.0.1 only and every
//          listening socket of the job (gloo's included) is on its host's address;
//   cut    h1's end of the link goes down mid-training: every rank must fail
//          within --timeout-ms + 5 s naming a rank (or the address) across the
//          cut, and both launchers must exit nonzero.
// Options: --timeout-ms N (default 5000), --only clean|cut, --cut-host 0|1 (default 1),
// --strict (a rank its launcher stopped must still have printed its own error).
// Without root, CAP_NET_ADMIN or iproute2 it prints SKIPPED and exits 77; with
// 'netns' in BAGUA_REQUIRE a skip exits 1 instead.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ip, netnsPair } from './netns-pair.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const LAUNCH = join(ROOT, 'packages/comm/bin/bagua-launch.js');
const TRAIN = join(ROOT, 'tools/testing/faults/train-loop.mjs');

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : dflt;
};
const TIMEOUT_MS = Number(opt('--timeout-ms', '5000'));
const ONLY = opt('--only', '');
const CUT = Number(opt('--cut-host', '1')); // whose end of the veth goes down
const STRICT = argv.includes('--strict');
const PORT = 29555; // the namespaces are new: nothing else can hold it
const TOKEN = randomBytes(16).toString('hex');

const log = (m) => process.stdout.write(`netns-cluster: ${m}\n`);

// ------------------------------------------------------------------ namespaces (./netns-pair.mjs)

const pair = netnsPair({ tool: 'netns-cluster', log });
const { NS, VETH, ADDR } = pair;
const cleanup = () => pair.cleanup();
const setup = () => pair.setup();

// ------------------------------------------------------------------ launchers

/** Starts one host's launcher; every output line is kept with its arrival time. */
function startHost(h, steps, stepMs, floats) {
  const args = [
    'netns', 'exec', NS[h], process.execPath, LAUNCH,
    '--nnodes', '2', '--node-rank', String(h), '--nproc-per-node', '2', '--backend', 'gloo',
    '--master-addr', ADDR[0], '--master-port', String(PORT), '--timeout-ms', String(TIMEOUT_MS),
    TRAIN, String(steps), String(stepMs), String(floats),
  ];
  const env = { ...process.env, BAGUA_STORE_TOKEN: TOKEN };
  // The job must find its own addresses; a caller's choice would hide that.
  delete env.BAGUA_GLOO_HOSTNAME;
  delete env.BAGUA_GLOO_IFACE;
  const child = spawn('ip', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const host = { h, child, lines: [], exit: null };
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (text) => host.lines.push({ t: performance.now(), text }));
  }
  host.done = new Promise((res) => {
    child.once('close', (code, signal) => {
      host.exit = { code: code ?? 128, signal, t: performance.now() };
      res(host.exit);
    });
  });
  return host;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rankOf = (text) => {
  const m = /^\[rank (\d+)\]/.exec(text);
  return m ? Number(m[1]) : -1;
};

function dump(hosts, tail = 40) {
  for (const host of hosts) {
    process.stdout.write(`---- ${NS[host.h]} launcher output (last ${tail} lines) ----\n`);
    for (const l of host.lines.slice(-tail)) process.stdout.write(`  ${l.text}\n`);
  }
}

async function waitFor(pred, ms) {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    if (pred()) return true;
    await sleep(50);
  }
  return pred();
}

function killHosts(hosts) {
  for (const host of hosts) {
    if (host.exit) continue;
    for (const p of ip('netns', 'pids', NS[host.h]).out?.split(/\s+/).filter(Boolean) ?? []) {
      try {
        process.kill(Number(p), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  }
}

// ------------------------------------------------------------------ checks

const results = [];
const record = (name, ok, detail) => {
  results.push({ name, ok, detail });
  log(`${ok ? 'PASS' : 'FAIL'} ${name}: ${detail}`);
};

async function cleanRun() {
  const t0 = performance.now();
  const hosts = [startHost(0, 40, 10, 65536)];
  await sleep(200); // node 0 serves the store; node 1 would retry anyway
  hosts.push(startHost(1, 40, 10, 65536));
  const limit = 60_000;
  const finished = await Promise.race([Promise.all(hosts.map((x) => x.done)), sleep(limit).then(() => null)]);
  if (!finished) killHosts(hosts);
  await Promise.all(hosts.map((x) => x.done));
  const codes = hosts.map((x) => x.exit.code);
  const sums = new Map();
  for (const host of hosts) {
    for (const l of host.lines) {
      const m = /RESULT rank (\d+) steps \d+ checksum (\d+)/.exec(l.text);
      if (m) sums.set(Number(m[1]), m[2]);
    }
  }
  const agree = sums.size === 4 && new Set(sums.values()).size === 1;
  const ok = finished !== null && codes.every((c) => c === 0) && agree;
  record(
    'clean run',
    ok,
    `launcher exits [${codes.join(', ')}]${finished ? '' : ' (killed after 60 s)'}, ` +
      `checksums ${[0, 1, 2, 3].map((r) => `r${r}=${sums.get(r) ?? 'none'}`).join(' ')}, ${Math.round(performance.now() - t0)} ms`,
  );
  if (!ok) dump(hosts);
}

/** TCP sockets in a namespace (listening and connected): [{state, local, peer, users}]. */
function sockets(h) {
  const r = spawnSync('ip', ['netns', 'exec', NS[h], 'ss', '-tanpH'], { encoding: 'utf8' });
  if (r.status !== 0) return { error: (r.stderr || r.error?.message || '').trim(), socks: [] };
  const socks = r.stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const f = line.trim().split(/\s+/);
      return { state: f[0], local: f[3], peer: f[4], users: f.slice(5).join(' ') };
    });
  return { socks };
}

/**
 * The namespaces hold only this job, so every socket in one is the job's: the
 * store must listen on 10.213.0.1:PORT alone, and every other socket (gloo's
 * listeners, which this gloo may close once its pairs connect, and the
 * rank-to-rank connections) must sit on the host's own address, never on a
 * wildcard or loopback.
 */
function checkBinds() {
  for (const h of [0, 1]) {
    const { error, socks } = sockets(h);
    if (error) {
      record(`bind ${NS[h]}`, false, `ss failed: ${error}`);
      continue;
    }
    const listen = socks.filter((s) => s.state === 'LISTEN');
    const conns = socks.filter((s) => s.state === 'ESTAB');
    const wrong = socks.filter((s) => !s.local.startsWith(`${ADDR[h]}:`));
    // Rank-to-rank (gloo) connections: neither end is the store port.
    const gloo = conns.filter((s) => !s.local.endsWith(`:${PORT}`) && !s.peer.endsWith(`:${PORT}`));
    let ok = wrong.length === 0 && gloo.length > 0;
    let detail = `listening: ${listen.map((s) => s.local).join(' ') || '(none)'}; ${conns.length} connections, ${gloo.length} rank-to-rank`;
    if (h === 0) {
      const store = listen.filter((s) => s.local.endsWith(`:${PORT}`));
      const storeOk = store.length === 1 && store[0].local === `${ADDR[0]}:${PORT}`;
      ok &&= storeOk;
      detail = `store ${storeOk ? `on ${ADDR[0]}:${PORT} only` : `WRONG: ${store.map((s) => s.local).join(' ') || 'not listening'}`}; ${detail}`;
    }
    if (gloo.length === 0) detail += '; no rank-to-rank connection seen';
    if (wrong.length) detail += `; NOT on ${ADDR[h]}: ${wrong.map((s) => `${s.state} ${s.local} ${s.users}`).join('; ')}`;
    else detail += `; all on ${ADDR[h]}`;
    record(`bind ${NS[h]}`, ok, detail);
  }
}

async function cutRun() {
  const hosts = [startHost(0, 1_000_000, 20, 65536)];
  await sleep(200);
  hosts.push(startHost(1, 1_000_000, 20, 65536));
  const stepOf = (r) => {
    let s = -1;
    for (const host of hosts) {
      for (const l of host.lines) {
        const m = /STEP (\d+) rank (\d+)/.exec(l.text);
        if (m && Number(m[2]) === r) s = Math.max(s, Number(m[1]));
      }
    }
    return s;
  };
  const training = await waitFor(() => [0, 1, 2, 3].every((r) => stepOf(r) >= 10) || hosts.some((x) => x.exit), 60_000);
  if (!training || hosts.some((x) => x.exit)) {
    record('cut: training started', false, `ranks at steps [${[0, 1, 2, 3].map(stepOf).join(', ')}]`);
    killHosts(hosts);
    await Promise.all(hosts.map((x) => x.done));
    dump(hosts);
    return;
  }
  if (ONLY !== 'clean') checkBinds();

  const r = ip('-n', NS[CUT], 'link', 'set', VETH[CUT], 'down');
  const tCut = performance.now();
  if (!r.ok) {
    record('cut', false, `cannot take ${VETH[CUT]} down: ${r.err}`);
    killHosts(hosts);
    return;
  }
  log(`cut ${VETH[CUT]} (${NS[CUT]}'s end) at steps [${[0, 1, 2, 3].map(stepOf).join(', ')}]`);
  const bound = TIMEOUT_MS + 5000;
  // A launcher may take longer than its ranks: grace, SIGTERM, SIGKILL, and node 0
  // waits (bounded) for the other nodes to report before it takes the store down.
  const launcherBound = TIMEOUT_MS + 20_000;
  await Promise.race([Promise.all(hosts.map((x) => x.done)), sleep(launcherBound).then(() => null)]);
  const hung = hosts.filter((x) => !x.exit);
  killHosts(hosts);
  await Promise.all(hosts.map((x) => x.done));

  let ok = true;
  const rows = [];
  for (const rank of [0, 1, 2, 3]) {
    const h = rank < 2 ? 0 : 1;
    const host = hosts[h];
    const after = host.lines.filter((l) => l.t >= tCut && rankOf(l.text) === rank);
    const errLine = after.find((l) => /FAILED|Error|error|timed out|closed|reset/.test(l.text));
    const text = after.map((l) => l.text).join('\n');
    const peers = h === 0 ? [2, 3] : [0, 1];
    const names =
      peers.some((p) => new RegExp(`\\brank ${p}\\b`).test(text) || new RegExp(`not arrived:[\\d, ]*\\b${p}\\b`).test(text)) ||
      text.includes(ADDR[1 - h]);
    let ttf = errLine ? Math.round(errLine.t - tCut) : null;
    let how = names ? 'names the peer across the cut' : 'does NOT name a peer across the cut';
    let shown = errLine;
    let rankOk = ttf !== null && ttf <= bound && names;
    if (!errLine && !STRICT) {
      // No error of its own: its launcher stopped it. That counts when the
      // launcher said, in time, what was lost across the cut (the store's or a
      // peer's address, or a rank over there).
      const said = host.lines.find(
        (l) => l.t >= tCut && rankOf(l.text) < 0 && (l.text.includes(ADDR[1 - h]) || peers.some((p) => l.text.includes(`rank ${p}`))),
      );
      ttf = said ? Math.round(said.t - tCut) : null;
      rankOk = ttf !== null && ttf <= bound;
      how = said ? 'no error of its own; stopped by its launcher, which named the other host' : 'never reported an error, nor did its launcher name the other host';
      shown = said;
    }
    ok &&= rankOk;
    rows.push(
      `  rank ${rank} (${NS[h]}): ${rankOk ? 'ok  ' : 'FAIL'} time to failure ${ttf === null ? '-' : `${ttf} ms`}, ${how}` +
        `${shown ? `\n      ${shown.text.slice(0, 300)}` : ''}`,
    );
  }
  for (const host of hosts) {
    const t = Math.round(host.exit.t - tCut);
    const killed = hung.includes(host);
    const hostOk = host.exit.code !== 0 && !killed;
    ok &&= hostOk;
    rows.push(
      `  launcher ${NS[host.h]}: ${hostOk ? 'ok  ' : 'FAIL'} exit ${host.exit.code}${host.exit.signal ? ` (${host.exit.signal})` : ''} ` +
        `${killed ? `still running ${launcherBound} ms after the cut: killed` : `${t} ms after the cut (bound ${launcherBound} ms)`}`,
    );
  }
  record('cut', ok, `every rank must fail within ${bound} ms naming a peer across the cut; both launchers nonzero\n${rows.join('\n')}`);
  if (!ok) dump(hosts);
}

// ------------------------------------------------------------------ main

setup();
if (ONLY !== 'cut') await cleanRun();
if (ONLY !== 'clean') await cutRun();
cleanup();
const failed = results.filter((x) => !x.ok);
log(`summary: ${results.length - failed.length}/${results.length} checks passed${failed.length ? `; FAILED: ${failed.map((x) => x.name).join(', ')}` : ''}`);
process.exit(failed.length ? 1 : 0);
