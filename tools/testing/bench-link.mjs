// tools/bench-link: gradient overlap on against off over gloo between two
// "hosts" joined by a bandwidth-limited link (issue 12: overlap pays where the
// all-reduce waits on the network with the CPU idle, not on a CPU-bound loopback).
//
// Hosts h0 and h1 are network namespaces joined by a veth pair
// (./faults/netns-pair.mjs, as tools/netns-cluster); each runs
// `bagua-launch --nnodes 2 --nproc-per-node 1 --backend gloo` with
// packages/bagua/dist/bench/overlap-step.js --pair overlap --alone N. For each
// rate, both veth ends get `tbf rate R` (and `netem delay D` in front with
// --delay), then one job measures overlap on/off in alternating blocks.
//
// Options:
//   --net mlp|cifar|train-cnn   (default mlp)      --batch N (default 32)
//   --cap-mb X (bucket cap, default 4)             --rates 1gbit,2.5gbit,10gbit,unlimited
//   --delay MS (netem one-way delay per end, default 0: none)
//   --steps N (per setting, default 60)  --block N (default 15)  --warmup N (default 10)
//     (in blocks of 5 or 10, alternating with overlap on, overlap-off steps ran 2-3x slower
//     than in a run of their own, one model or two; in blocks of 15 they did not: docs/scaling.md)
//   --alone N (all-reduce-alone and compute-only steps, default 10)
//   --trace N (traced overlap-on steps per rate: per-bucket start/finish vs backward, default 0)
//   --json FILE (every row and trace, as JSON)
//   --control (the baseline runs overlap on too: the table's on/off is then the A/A spread)
//   --separate-models (one model per setting, as bench:ddp; default: one model, algorithms
//     switched per block, since two identical models in one process ran up to 2x apart here)
// Needs root (CAP_NET_ADMIN), iproute2 and tc; otherwise SKIPPED, exit 77 (1 when
// BAGUA_REQUIRE has netns).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { netnsPair } from './faults/netns-pair.mjs';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const LAUNCH = join(ROOT, 'packages/comm/bin/bagua-launch.js');
const SCRIPT = join(ROOT, 'packages/bagua/dist/bench/overlap-step.js');

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1] : dflt;
};
const NET = opt('--net', 'mlp');
const BATCH = opt('--batch', '32');
const CAP = opt('--cap-mb', '4');
const RATES = opt('--rates', '1gbit,2.5gbit,10gbit,unlimited').split(',').filter(Boolean);
const DELAY = Number(opt('--delay', '0'));
const STEPS = opt('--steps', '60');
const BLOCK = opt('--block', '15');
const WARMUP = opt('--warmup', '10');
const ALONE = opt('--alone', '10');
const TRACE = Number(opt('--trace', '0'));
const JSON_OUT = opt('--json', '');
const CONTROL = argv.includes('--control');
const SAME_MODEL = !argv.includes('--separate-models');
const TOKEN = randomBytes(16).toString('hex');
const log = (m) => process.stdout.write(`bench-link: ${m}\n`);

if (!existsSync(SCRIPT)) {
  process.stderr.write(`bench-link: ${SCRIPT} is missing: build first (pnpm --filter bagua build)\n`);
  process.exit(2);
}
if (!(DELAY >= 0)) {
  process.stderr.write(`bench-link: --delay is a number of ms >= 0, got ${opt('--delay')}\n`);
  process.exit(2);
}

/** Bits per second of a tc rate ('1gbit', '2.5gbit', '500mbit'); null for 'unlimited'. */
function bitsPerSecond(rate) {
  if (rate === 'unlimited') return null;
  const m = /^(\d+(?:\.\d+)?)(k|m|g)?bit$/.exec(rate);
  if (!m) throw new Error(`bench-link: a rate is like 1gbit, 2.5gbit, 500mbit or unlimited, got '${rate}'`);
  return Number(m[1]) * { k: 1e3, m: 1e6, g: 1e9 }[m[2] ?? ''] ?? 1;
}
try {
  RATES.forEach(bitsPerSecond); // bad input fails before any namespace exists
  if (!['mlp', 'cifar', 'train-cnn'].includes(NET)) throw new Error(`bench-link: --net is mlp, cifar or train-cnn, got '${NET}'`);
} catch (e) {
  process.stderr.write(`${e.message}\n`);
  process.exit(2);
}

const pair = netnsPair({ tool: 'bench-link', log });
const { NS, VETH, ADDR } = pair;

function tc(h, ...args) {
  const r = spawnSync('tc', ['-n', NS[h], ...args], { encoding: 'utf8' });
  if (r.error) return { ok: false, err: r.error.message };
  return { ok: r.status === 0, err: (r.stderr || r.stdout || '').trim() };
}

/** Both ends of the link: tbf at `rate` (none when unlimited), behind netem's delay when --delay. */
function shape(rate) {
  const bps = bitsPerSecond(rate);
  for (const h of [0, 1]) {
    tc(h, 'qdisc', 'del', 'dev', VETH[h], 'root'); // none yet is fine
    // A bucket of 1 ms at the rate (16 KiB at least, tbf splits larger GSO packets): a smaller
    // one cannot sustain the rate, a larger one lets whole gradient buckets through at line speed.
    const burst = bps ? `${Math.max(16384, Math.round(bps / 8 / 1000))}b` : '';
    const tbf = bps ? ['tbf', 'rate', rate, 'burst', burst, 'latency', '50ms'] : null;
    const steps = [];
    if (DELAY > 0) {
      steps.push(['qdisc', 'add', 'dev', VETH[h], 'root', 'handle', '1:', 'netem', 'delay', `${DELAY}ms`, 'limit', '100000']);
      if (tbf) steps.push(['qdisc', 'add', 'dev', VETH[h], 'parent', '1:1', 'handle', '10:', ...tbf]);
    } else if (tbf) {
      steps.push(['qdisc', 'add', 'dev', VETH[h], 'root', ...tbf]);
    }
    for (const s of steps) {
      const r = tc(h, ...s);
      if (!r.ok) pair.skip(`tc -n ${NS[h]} ${s.join(' ')}: ${r.err}`);
    }
  }
}

/** One bagua-launch per host; resolves with both hosts' output lines and exit codes. */
function runJob(port, hostArgs) {
  const hosts = [0, 1].map((h) => {
    const args = [
      'netns', 'exec', NS[h], process.execPath, LAUNCH,
      '--nnodes', '2', '--node-rank', String(h), '--nproc-per-node', '1', '--backend', 'gloo',
      '--master-addr', ADDR[0], '--master-port', String(port), '--timeout-ms', '120000',
      SCRIPT, ...hostArgs[h],
    ];
    const env = { ...process.env, BAGUA_STORE_TOKEN: TOKEN, BAGUA_NUM_THREADS: '1' };
    delete env.BAGUA_GLOO_HOSTNAME;
    delete env.BAGUA_GLOO_IFACE;
    const child = spawn('ip', args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    if (h === 0) spawnSync('sleep', ['0.2']); // node 0 serves the store; node 1 would retry anyway
    const lines = [];
    for (const s of [child.stdout, child.stderr]) createInterface({ input: s }).on('line', (l) => lines.push(l));
    return new Promise((res) => child.once('close', (code) => res({ h, code: code ?? 128, lines })));
  });
  return Promise.all(hosts);
}

const fmt = (v, d = 1) => (v === undefined || v === null ? '-' : Number(v).toFixed(d));
const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};

/** One line per traced step: when each bucket started and finished against backward's end. */
function summariseTrace(tr) {
  const b = tr.buckets.map((x) => `${(x.floats * 4 / 2 ** 20).toFixed(1)}M ${fmt(x.start)}->${fmt(x.done)}`).join(', ');
  const sentInBwd = tr.bwd.tx; // bytes this host sent by the end of backward (forward's are tiny)
  const total = tr.end.tx;
  return `rank ${tr.rank} step ${tr.step}: fwd ${fmt(tr.fwd.t)} bwd-end ${fmt(tr.bwd.t)} step-end ${fmt(tr.end.t)} ms; ` +
    `sent by bwd-end ${(sentInBwd / 2 ** 20).toFixed(1)} of ${(total / 2 ** 20).toFixed(1)} MiB; buckets (start->done ms): ${b}`;
}

pair.setup();
const load0 = loadavg();
log(`net ${NET} batch ${BATCH} cap ${CAP} MiB; rates ${RATES.join(', ')}; netem delay ${DELAY ? `${DELAY} ms per end` : 'none'}; ` +
  `${STEPS} steps per setting in blocks of ${BLOCK}; ${cpus().length} cpus (${cpus()[0]?.model ?? '?'}), load ${load0.map((x) => x.toFixed(1)).join(' ')}`);

const rows = [];
let port = 29600;
for (const rate of RATES) {
  shape(rate);
  const scriptArgs = ['--pair', 'overlap', '--bn', 'bn', '--net', NET, '--batch', BATCH, '--cap-mb', CAP,
    '--steps', STEPS, '--block', BLOCK, '--warmup', WARMUP, '--alone', ALONE];
  if (TRACE > 0) scriptArgs.push('--trace', String(TRACE));
  if (CONTROL) scriptArgs.push('--control');
  if (SAME_MODEL) scriptArgs.push('--same-model');
  // Each host's rank reads its own end's tx_bytes (ip netns exec mounts the namespace's /sys).
  const hostArgs = [0, 1].map((h) => (TRACE > 0 ? [...scriptArgs, '--trace-iface', VETH[h]] : scriptArgs));
  const t0 = Date.now();
  const hosts = await runJob(port, hostArgs);
  port++;
  const lines = hosts.flatMap((x) => x.lines);
  const res = lines.map((l) => /OVERLAP (\{.*\})/.exec(l)).find(Boolean);
  const traces = lines.map((l) => /TRACE (\{.*\})/.exec(l)).filter(Boolean).map((m) => JSON.parse(m[1]));
  if (hosts.some((x) => x.code !== 0) || !res) {
    log(`rate ${rate}: FAILED (launcher exits ${hosts.map((x) => x.code).join(', ')})`);
    for (const x of hosts) for (const l of x.lines.slice(-30)) process.stdout.write(`  h${x.h}: ${l}\n`);
    process.exitCode = 1;
    continue;
  }
  const r = JSON.parse(res[1]);
  const row = { rate, delayMs: DELAY, load: loadavg()[0], seconds: (Date.now() - t0) / 1000, ...r, traces };
  rows.push(row);
  log(`rate ${rate}: off ${fmt(r.offMedianMs)} on ${fmt(r.onMedianMs)} ms, on/off ${fmt(r.onOverOff, 3)} ` +
    `[${fmt(r.ratioMin, 3)}, ${fmt(r.ratioMax, 3)}], all-reduce alone ${fmt(r.allReduceMs)} ms, compute alone ${fmt(r.computeMs)} ms ` +
    `(${r.buckets} buckets, ${row.seconds.toFixed(0)} s, load ${row.load.toFixed(1)})`);
  for (const tr of traces) log(`  trace ${summariseTrace(tr)}`);
}
pair.cleanup();

process.stdout.write(`\nnet ${NET}, batch ${BATCH} per rank, ${rows[0]?.buckets ?? '?'} buckets of <= ${CAP} MiB, 2 hosts x 1 rank over gloo, ` +
  `netem delay ${DELAY ? `${DELAY} ms` : 'none'}; ${SAME_MODEL ? 'one model, algorithms switched per block' : 'one model per setting'}` +
  `${CONTROL ? '; CONTROL: "off" is overlap on as well' : ''}; times: slowest rank's ms per step, medians; on/off: median [min, max] of ${rows[0]?.blocks ?? '?'} paired block ratios\n\n`);
process.stdout.write('| link | step ms, overlap off | step ms, overlap on | on / off (median [min, max]) | 10th percentile off / on ms | all-reduce alone ms | compute alone ms | load |\n');
process.stdout.write('|---|---|---|---|---|---|---|---|\n');
for (const r of rows) {
  process.stdout.write(`| ${r.rate} | ${fmt(r.offMedianMs)} | ${fmt(r.onMedianMs)} | ${fmt(r.onOverOff, 3)} [${fmt(r.ratioMin, 3)}, ${fmt(r.ratioMax, 3)}] | ` +
    `${fmt(r.offP10Ms)} / ${fmt(r.onP10Ms)} | ${fmt(r.allReduceMs)} | ${fmt(r.computeMs)} | ${r.load.toFixed(1)} |\n`);
}
if (TRACE > 0) {
  // Of the bytes a traced step sent, the share already sent when backward ended: 0 means nothing overlapped.
  const shares = rows.map((r) => `${r.rate} ${fmt(median(r.traces.map((t) => (t.end.tx ? t.bwd.tx / t.end.tx : 0))), 2)}`);
  process.stdout.write(`\nshare of a step's bytes sent before backward ended (median of traced steps): ${shares.join(', ')}\n`);
}
if (JSON_OUT) writeFileSync(JSON_OUT, `${JSON.stringify({ net: NET, batch: BATCH, capMb: CAP, delayMs: DELAY, rows }, null, 1)}\n`);
