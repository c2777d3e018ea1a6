#!/usr/bin/env node
// The slow-frame attack on the rendezvous store, at full scale: N connections
// each send all but one byte of a big frame to a store hosted by bagua-launch
// (in a child process), then go quiet; later they leave. Prints the launcher
// process's RSS before, at its peak, and after, and checks that an honest
// client is served throughout.
//
//   node tools/store-attack.mjs [--conns 120] [--frame-mib 16] [--hold-ms 3000] [--bound-mib 256] [--token] [--verbose]
//   (--token: a store with a token the attackers know; default --no-token, anyone may send full frames)
//
// Needs a built tree (pnpm build). Exits non-zero when the RSS bound is broken.
import { spawn } from 'node:child_process';
import { readFileSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const { StoreClient } = await import(join(root, 'packages/comm/dist/src/index.js'));

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? dflt : Number(process.argv[i + 1]);
}
const CONNS = arg('conns', 120);
const FRAME = arg('frame-mib', 16) * (1 << 20);
const HOLD_MS = arg('hold-ms', 3000);
const VERBOSE = process.argv.includes('--verbose'); // print the store's first log lines
const BOUND_MIB = arg('bound-mib', 256);
const TOKEN = process.argv.includes('--token') ? 'attack-test-token' : undefined;
const MIB = 1 << 20;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function rssOf(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

// The launcher runs one rank that only sleeps: the process measured is the launcher with its store thread.
const dir = mkdtempSync(join(tmpdir(), 'store-attack-'));
const rankScript = join(dir, 'rank.mjs');
writeFileSync(rankScript, 'setTimeout(() => {}, 600_000);\n');
const port = await freePort();
const env = { ...process.env };
delete env.BAGUA_STORE_TOKEN;
// Without a token (the worst case: anyone may send full-size frames), or with one the attackers know.
const tokenArgs = TOKEN ? ['--token', TOKEN] : ['--no-token'];
const launcher = spawn(
  process.execPath,
  [join(root, 'packages/comm/bin/bagua-launch.js'), '--nproc-per-node', '1', '--backend', 'gloo',
    '--master-addr', '127.0.0.1', '--master-port', String(port), ...tokenArgs, rankScript],
  { env, stdio: ['ignore', 'inherit', 'pipe'] },
);
let launcherLog = '';
launcher.stderr.on('data', (d) => (launcherLog += d));

let peak = 0;
const sampler = setInterval(() => (peak = Math.max(peak, rssOf(launcher.pid))), 20);

async function honest() {
  const c = await StoreClient.connect({ port, token: TOKEN, connectTimeoutMs: 10_000, timeoutMs: 5000 });
  try {
    const v = `v${Date.now()}`;
    await c.set('honest', v);
    if ((await c.getString('honest')) !== v) throw new Error('honest client read a wrong value');
  } finally {
    c.close();
  }
}

let failed = false;
try {
  await honest(); // waits for the store to come up
  await sleep(1000);
  const before = rssOf(launcher.pid);
  peak = before;

  const body = Buffer.alloc(FRAME + 4 - 1, 0x61); // one buffer, shared by every attacker's writes
  body.writeUInt32LE(FRAME, 0);
  const auth = TOKEN ? frameOf(Buffer.concat([Buffer.from([0]), u32(TOKEN.length), Buffer.from(TOKEN)])) : null;
  let dropped = 0;
  const t0 = Date.now();
  const attackers = await Promise.all(
    Array.from({ length: CONNS }, () =>
      new Promise((resolve) => {
        const s = net.connect({ host: '127.0.0.1', port }, () => {
          if (auth) s.write(auth);
          s.write(body);
          resolve(s);
        });
        s.on('error', () => undefined);
        s.on('close', () => dropped++);
      }),
    ),
  );
  // Give every attacker time to push its bytes (or be dropped), checking the store still serves.
  let honestMs = 0;
  while (Date.now() - t0 < HOLD_MS) {
    const h0 = Date.now();
    await honest();
    honestMs = Math.max(honestMs, Date.now() - h0);
    await sleep(200);
  }
  const during = rssOf(launcher.pid);
  const closedEarly = dropped;
  for (const s of attackers) s.destroy();
  await sleep(3000);
  await honest();
  await sleep(500);
  const after = rssOf(launcher.pid);
  if (VERBOSE) console.log(launcherLog.split('\n').slice(0, 8).join('\n'));
  const drops = (launcherLog.match(/dropping the largest first/g) ?? []).length;
  console.log(
    `store attack: ${CONNS} connections x ${FRAME / MIB} MiB unfinished frames${TOKEN ? ' (authenticated)' : ''}\n` +
      `  launcher RSS before ${(before / MIB).toFixed(1)} MiB, peak ${(peak / MIB).toFixed(1)} MiB, ` +
      `end of attack ${(during / MIB).toFixed(1)} MiB, after ${(after / MIB).toFixed(1)} MiB\n` +
      `  store dropped ${drops} attackers for the buffer bound (${closedEarly} connections closed before the attackers left); ` +
      `slowest honest round trip during the attack ${honestMs} ms`,
  );
  if (peak > BOUND_MIB * MIB) {
    console.error(`FAIL: peak RSS above ${BOUND_MIB} MiB`);
    failed = true;
  }
  if (after > before + 32 * MIB) {
    console.error('FAIL: RSS did not return near its start');
    failed = true;
  }
} catch (e) {
  console.error(`FAIL: ${e.stack ?? e}\n${launcherLog.slice(-2000)}`);
  failed = true;
} finally {
  clearInterval(sampler);
  launcher.kill('SIGTERM');
  await new Promise((r) => launcher.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);

function u32(v) {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v, 0);
  return b;
}
function frameOf(payload) {
  return Buffer.concat([u32(payload.length), payload]);
}
