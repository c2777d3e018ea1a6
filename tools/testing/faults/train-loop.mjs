// Rank program for tools/netns-cluster and tools/fault-suite: a stand-in for a
// training loop. Each step all-reduces a buffer whose contents depend on the
// rank and the step, checks the sum against the closed form, and prints a
// step counter; the last line is a checksum that must agree on every rank.
//
//   node train-loop.mjs [steps=50] [stepMs=20] [floats=65536]
// Env FAULT_EXIT_RANK / FAULT_EXIT_STEP / FAULT_EXIT_CODE: that rank exits with
// that code before that step (the "rank dies" fault).
import { performance } from 'node:perf_hooks';
import { initProcessGroup, destroyProcessGroup } from '../../../packages/comm/dist/src/index.js';

const steps = Number(process.argv[2] ?? 50);
const stepMs = Number(process.argv[3] ?? 20);
const floats = Number(process.argv[4] ?? 65536);
const exitRank = process.env.FAULT_EXIT_RANK === undefined ? -1 : Number(process.env.FAULT_EXIT_RANK);
const exitStep = Number(process.env.FAULT_EXIT_STEP ?? 3);
const exitCode = Number(process.env.FAULT_EXIT_CODE ?? 7);

const t0 = performance.now();
const g = await initProcessGroup();
const world = g.size;
console.log(`READY rank ${g.rank} of ${world} pid ${process.pid} init ${Math.round(performance.now() - t0)} ms`);
// FAULT_QUIET: no output after step 3, so a rank cannot learn of its launcher's
// death from a broken stdout pipe (the orphan case).
const quiet = process.env.FAULT_QUIET === '1';
const buf = new Float32Array(floats);
let checksum = 0;
let lastStep = 0;
try {
  for (let s = 0; s < steps; s++) {
    if (g.rank === exitRank && s === exitStep) {
      console.log(`rank ${g.rank} exits with ${exitCode} at step ${s}`);
      process.exit(exitCode);
    }
    // Small integers stay exact in float32, so every rank's sum is bit-identical.
    for (let i = 0; i < floats; i++) buf[i] = ((g.rank + 1) * (i % 7) + s) % 13;
    g.allReduce(buf);
    let want = 0;
    for (let r = 0; r < world; r++) want += ((r + 1) * (0 % 7) + s) % 13;
    if (buf[0] !== want) throw new Error(`step ${s}: element 0 is ${buf[0]}, want ${want}`);
    for (let i = 0; i < floats; i += 997) checksum = (checksum * 31 + buf[i]) % 1000000007;
    lastStep = s;
    if (!quiet || s <= 3) console.log(`STEP ${s} rank ${g.rank} t=${Math.round(performance.now() - t0)}`);
    if (stepMs > 0) await new Promise((r) => setTimeout(r, stepMs));
  }
} catch (e) {
  // The harnesses read this line: when, and what the error said.
  console.log(`FAILED rank ${g.rank} after step ${lastStep} at t=${Math.round(performance.now() - t0)}: ${e?.message ?? e}`);
  process.exit(3);
}
console.log(`RESULT rank ${g.rank} steps ${steps} checksum ${checksum}`);
await destroyProcessGroup();
