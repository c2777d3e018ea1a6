// The fault suite's harness: ranks and launchers as child processes (every one reaped
// at the end), waits with deadlines, and a raw client of the store's wire protocol for
// the stranger cases (it must not use @bagua/comm's client, which would authenticate).
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const LAUNCH = join(ROOT, 'packages/comm/bin/bagua-launch.js');
export const RANK = join(ROOT, 'tools/testing/faults/rank.mjs');
export const TRAIN = join(ROOT, 'tools/testing/faults/train-loop.mjs');
export const SLACK_MS = 5000; // the allowance over a timeout

// ------------------------------------------------------------------ processes

export const live = new Set();
/** Spawns a program in its own process group (so its ranks can be killed with it); keeps every line with its arrival time. */
export function start(args, env = {}) {
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const p = { child, pid: child.pid, lines: [], exit: null, t0: performance.now() };
  live.add(p);
  for (const s of [child.stdout, child.stderr]) createInterface({ input: s }).on('line', (text) => p.lines.push({ t: performance.now(), text }));
  p.done = new Promise((res) =>
    child.once('close', (code, signal) => {
      p.exit = { code: code ?? 128 + (signal === 'SIGKILL' ? 9 : signal === 'SIGTERM' ? 15 : 0), signal, t: performance.now() };
      live.delete(p);
      res(p.exit);
    }),
  );
  p.text = () => p.lines.map((l) => l.text).join('\n');
  return p;
}
export const launcher = (opts, script, scriptArgs, env) => start([LAUNCH, ...opts, script, ...scriptArgs], env);

/** Kills a started program's whole process group (its ranks too), and waits a little for it. */
export async function reap(p) {
  try {
    process.kill(-p.pid, 'SIGCONT');
    process.kill(-p.pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  await Promise.race([p.done, sleep(2000)]);
}
export function killPid(pid, sig = 'SIGKILL') {
  try {
    process.kill(pid, sig);
  } catch {
    /* gone */
  }
}
export const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return e.code === 'EPERM';
  }
};
process.on('exit', () => {
  for (const p of live) {
    try {
      process.kill(-p.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export async function waitFor(pred, ms) {
  const end = performance.now() + ms;
  for (;;) {
    const v = pred();
    if (v) return v;
    if (performance.now() > end) return null;
    await sleep(20);
  }
}
/** JSON records `<TAG> {..}` printed by rank.mjs (launcher prefix allowed). */
export function records(p, tag) {
  const out = [];
  for (const l of p.lines) {
    const i = l.text.indexOf(`${tag} {`);
    if (i < 0) continue;
    try {
      out.push({ ...JSON.parse(l.text.slice(i + tag.length + 1)), t: l.t });
    } catch {
      /* a torn line */
    }
  }
  return out;
}
export function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}
export const tempDir = () => mkdtempSync(join(tmpdir(), 'bagua-fault-'));
export const readJson = (path) => {
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return null;
  }
};
export const tail = (p, n = 12) => p.lines.slice(-n).map((l) => `      | ${l.text.slice(0, 240)}`).join('\n');
export const rssMiB = (pid) => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
};

// ------------------------------------------------------------------ store wire (for strangers)

export const frame = (payload) => {
  const h = Buffer.alloc(4);
  h.writeUInt32LE(payload.length);
  return Buffer.concat([h, payload]);
};
export const field = (b) => {
  const v = Buffer.from(b);
  const h = Buffer.alloc(4);
  h.writeUInt32LE(v.length);
  return Buffer.concat([h, v]);
};
export const OP = { AUTH: 0, SET: 1, GET: 2 };
export const STATUS = ['OK', 'NOT_FOUND', 'TIMEOUT', 'ERROR'];

/** Sends frames in order on one raw connection; each answer: 'OK', 'NOT_FOUND', 'ERROR ...', 'closed' or 'no reply'. */
export function stranger(port, requests, replyMs = 1500) {
  return new Promise((res) => {
    const answers = [];
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    let i = 0;
    let timer = null;
    const finish = (last) => {
      clearTimeout(timer);
      while (answers.length < requests.length) answers.push(last);
      sock.destroy();
      res(answers);
    };
    const next = () => {
      if (i >= requests.length) return finish('');
      sock.write(frame(requests[i++]));
      clearTimeout(timer);
      timer = setTimeout(() => finish('no reply'), replyMs);
    };
    sock.on('connect', next);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32LE(0)) {
        const body = buf.subarray(4, 4 + buf.readUInt32LE(0));
        buf = buf.subarray(4 + body.length);
        let a = STATUS[body[0]] ?? `status ${body[0]}`;
        if (a === 'OK' && body.length > 1) a = `OK value '${body.subarray(5).toString()}'`;
        if (a === 'ERROR' && body.length > 5) a = `ERROR ${body.subarray(5).toString()}`;
        answers.push(a);
        next();
      }
    });
    sock.on('error', () => finish('closed'));
    sock.on('close', () => finish('closed'));
  });
}
