/**
 * Resume after a kill continues the loss curve exactly: a 2-epoch run on 2 thread
 * ranks (synthetic images, a few steps each) against the same run SIGKILLed in its
 * second epoch and restarted with --resume from the epoch-1 checkpoint: the same
 * losses, bit for bit, and the same final weights.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serialize } from '@bagua/core';

const LAUNCHER = join(dirname(fileURLToPath(import.meta.resolve('@bagua/comm'))), '..', '..', 'bin', 'bagua-launch.js');
const TRAIN = fileURLToPath(new URL('../src/train.js', import.meta.url));

function run(dir: string, ...extra: string[]): { status: number | null; signal: string | null; output: string; losses: string[] } {
  const r = spawnSync(process.execPath, [LAUNCHER, '--nproc-per-node', '2', '--backend', 'threads', TRAIN,
    '--data', 'synthetic', '--samples', '40', '--test-samples', '16', '--batch-size', '5', '--epochs', '2',
    '--print-losses', '--quiet', '--checkpoint-dir', dir, ...extra], { encoding: 'utf8', timeout: 240_000, env: { ...process.env, BAGUA_TIMEOUT_MS: '60000' } });
  const output = `${r.stdout}${r.stderr}`;
  return { status: r.status, signal: r.signal, output, losses: [...output.matchAll(/^\[rank 0\] LOSS (\d+ \d+ \S+)$/gm)].map((m) => m[1]) };
}

test('killed in epoch 2 and resumed from the epoch-1 checkpoint: the same losses, bit for bit, and the same final weights', (t) => {
  t.timeout(600_000);
  const whole = run(mkdtempSync(join(tmpdir(), 'resnet-a-')));
  if (whole.status !== 0) t.log(whole.output.slice(-3000));
  t.is(whole.status, 0);
  t.deepEqual(whole.losses.map((l) => l.split(' ').slice(0, 2).join(':')), ['1:1', '1:2', '1:3', '1:4', '2:1', '2:2', '2:3', '2:4']);

  const dir = mkdtempSync(join(tmpdir(), 'resnet-b-'));
  const killed = run(dir, '--kill-at', '2:3');
  t.is(killed.signal, 'SIGKILL', `the job was killed (status ${killed.status}): ${killed.output.slice(-500)}`);
  // what the ranks printed last may die with them: what did come out is the same curve
  t.true(killed.losses.length <= 6);
  t.deepEqual(killed.losses, whole.losses.slice(0, killed.losses.length), 'the same curve up to the kill');
  const extra = JSON.parse(serialize.loadFile(join(dir, 'resnet20.safetensors')).metadata['bagua.extra']!) as { epoch: number };
  t.is(extra.epoch, 1, 'the kill came after the epoch-1 checkpoint and before the epoch-2 one');

  const resumed = run(dir, '--resume');
  if (resumed.status !== 0) t.log(resumed.output.slice(-3000));
  t.is(resumed.status, 0);
  t.regex(resumed.output, /resumed from .* after epoch 1/);
  t.deepEqual(resumed.losses, whole.losses.slice(4), 'epoch 2 again, exactly as the uninterrupted run');

  const a = serialize.loadFile(join(dirname(whole.output.match(/CHECKPOINT 2 (\S+)/)![1]), 'resnet20.safetensors')).tensors;
  const b = serialize.loadFile(join(dir, 'resnet20.safetensors')).tensors;
  t.deepEqual(Object.keys(b).sort(), Object.keys(a).sort());
  for (const k of Object.keys(a)) t.deepEqual(Array.from(b[k].data as ArrayLike<number | bigint>), Array.from(a[k].data as ArrayLike<number | bigint>), k);
  t.true(Object.keys(a).includes('layer1.0.bn1.running_mean'), 'PyTorch\'s names in the checkpoint');
});
