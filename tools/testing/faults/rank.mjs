// Rank programs of tools/fault-suite, one per mode (argv[2]). Each reports with
// a line `<TAG> {json}` on stdout and, because some faults stop the launcher
// that relays stdout, also in $FAULT_DIR/<tag>-rank<R>.json.
//
// Only the public @bagua/comm API is used.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { defaultStore, destroyProcessGroup, initProcessGroup } from '../../../packages/comm/dist/src/index.js';

const mode = process.argv[2];
const dir = process.env.FAULT_DIR; // no files without it (ranks run directly say it on stdout only)
const rankEnv = process.env.RANK ?? '?';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function report(tag, fields) {
  const rec = { rank: Number(rankEnv), pid: process.pid, ...fields };
  try {
    if (dir) writeFileSync(join(dir, `${tag}-rank${rankEnv}.json`), JSON.stringify(rec));
  } catch {
    /* the line below still says it */
  }
  process.stdout.write(`${tag} ${JSON.stringify(rec)}\n`);
}
const failed = (e, t0) => report('FAILED', { ms: Math.round(performance.now() - t0), message: String(e?.message ?? e) });

/** Waits for a file the suite creates to move this rank on. */
async function until(name, ms = 60_000) {
  if (!dir) throw new Error(`rank ${rankEnv}: FAULT_DIR is not set: nothing to wait for`);
  const end = Date.now() + ms;
  while (!existsSync(join(dir, name))) {
    if (Date.now() > end) throw new Error(`rank ${rankEnv}: '${name}' never came`);
    await sleep(20);
  }
}

/** initProcessGroup, timed: INIT_OK with its time, or the failure and exit code 3. */
async function probeInit() {
  const t0 = performance.now();
  try {
    await initProcessGroup();
    report('INIT_OK', { ms: Math.round(performance.now() - t0) });
  } catch (e) {
    failed(e, t0);
    process.exit(3);
  }
}

switch (mode) {
  // initProcessGroup against whatever the environment names; how long until it fails.
  case 'init-probe': {
    await probeInit();
    break;
  }

  // Starts, says so, and joins only once the suite has frozen the store.
  case 'late-init': {
    report('STARTED', {});
    await until('go');
    await probeInit();
    break;
  }

  // Joins, then keeps using the store (as a job coordinating through it does)
  // until a store operation fails.
  case 'store-loop': {
    await initProcessGroup();
    const store = defaultStore();
    report('READY', {});
    let t0 = performance.now();
    try {
      for (let i = 0; ; i++) {
        t0 = performance.now();
        await store.set(`fault/loop/${rankEnv}`, String(i));
        await store.get(`fault/loop/${rankEnv}`);
        await sleep(50);
      }
    } catch (e) {
      failed(e, t0);
      process.exit(3);
    }
    break;
  }

  // Repeated 64 MiB all-reduces; the suite SIGKILLs one rank inside one.
  case 'big': {
    const g = await initProcessGroup();
    const buf = new Float32Array(16 << 20);
    report('READY', {});
    let t0 = performance.now();
    try {
      for (let i = 0; i < 1000; i++) {
        buf.fill(1);
        process.stdout.write(`BIG_START ${i} rank ${g.rank}\n`);
        t0 = performance.now();
        g.allReduce(buf);
      }
    } catch (e) {
      failed(e, t0);
      process.exit(3);
    }
    break;
  }

  // One agreed warm-up all-reduce, then disagreeing calls (argv[3]: repeat | root;
  // argv[4]: floats per call). Every rank must fail fast, naming both calls.
  case 'mismatch': {
    const kind = process.argv[3];
    const n = Number(process.argv[4] ?? 256);
    const g = await initProcessGroup();
    const buf = new Float32Array(n).fill(1);
    g.allReduce(buf);
    const t0 = performance.now();
    try {
      if (kind === 'repeat') {
        // Rank 0 all-reduces again while rank 1 has moved on to a broadcast.
        if (g.rank === 0) g.allReduce(buf);
        else g.broadcast(buf, 0);
      } else {
        // Each rank believes itself the root.
        g.broadcast(buf, g.rank);
      }
      report('NO_ERROR', { ms: Math.round(performance.now() - t0) });
    } catch (e) {
      failed(e, t0);
      process.exit(3);
    }
    break;
  }

  // Holds a secret in the launcher's store while the suite plays a stranger,
  // then checks the secret and the store are intact.
  case 'holder': {
    await initProcessGroup();
    const store = defaultStore();
    await store.set('fault/secret', 'v1');
    report('READY', { port: Number(process.env.MASTER_PORT) });
    await until('check', 120_000);
    try {
      const secret = await store.getString('fault/secret');
      const planted = await store.get('fault/stranger');
      report('CHECK', { secret, planted: planted !== null });
    } catch (e) {
      report('CHECK', { error: String(e?.message ?? e) });
    }
    await destroyProcessGroup();
    break;
  }

  default:
    throw new Error(`rank.mjs: unknown mode '${mode}'`);
}
