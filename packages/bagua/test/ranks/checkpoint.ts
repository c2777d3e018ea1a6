/**
 * Checkpoints on several ranks: rank 0 writes (atomically), every rank loads after a
 * barrier, and a failed write fails on every rank. argv: <directory>.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { manualSeed, randn } from '@bagua/core';
import * as bagua from '../../src/index.js';
import { Net, snapshot } from '../helpers/checkpoint-net.js';
import { fail, newCheck, report } from './report.js';

const dir = process.argv[2]!;
await bagua.initProcessGroup();
const rank = bagua.getRank();

// each rank's own model: only rank 0's may reach the file
manualSeed(100 + rank);
const mine = new Net();
mine.forward(randn([4, 1, 6, 6]));
const path = join(dir, 'ckpt.safetensors');
bagua.saveCheckpoint(path, { model: mine, extra: { epoch: 7, rank } });

{
  const check = newCheck('rank 0 wrote the checkpoint, whole, and only it');
  const files = readdirSync(dir).sort();
  if (JSON.stringify(files) !== JSON.stringify(['ckpt.safetensors'])) fail(check, `the directory holds [${files.join(', ')}]`);
  report(check);
}
{
  const check = newCheck('every rank loads rank 0\'s state');
  manualSeed(100); // rank 0's model, rebuilt here to compare with
  const rank0 = new Net();
  rank0.forward(randn([4, 1, 6, 6]));
  const fresh = new Net();
  const { extra } = bagua.loadCheckpoint(path, { model: fresh });
  if (extra['rank'] !== 0 || extra['epoch'] !== 7) fail(check, `extra ${JSON.stringify(extra)} is not rank 0's`);
  const want = snapshot(rank0);
  const got = snapshot(fresh);
  for (const [k, v] of Object.entries(want)) {
    if (JSON.stringify(got[k]) !== JSON.stringify(v)) fail(check, `${k} differs from rank 0's`);
  }
  report(check);
}
{
  const check = newCheck('a write that fails on rank 0 fails on every rank');
  try {
    bagua.saveCheckpoint(join(dir, 'no-such-dir', 'ckpt.safetensors'), { model: mine });
    fail(check, 'saveCheckpoint returned');
  } catch (e) {
    const msg = (e as Error).message;
    const want = rank === 0 ? /ENOENT/ : /saveCheckpoint\(.*\): failed on rank 0/;
    if (!want.test(msg)) fail(check, `unexpected error: ${msg}`);
  }
  report(check);
}
await bagua.destroyProcessGroup();
