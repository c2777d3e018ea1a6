/**
 * Checkpoints through PyTorch: one written here loads into the same network built
 * in PyTorch (tools/safetensors_torch.py, strict load_state_dict) and gives the same
 * eval outputs; one written by PyTorch loads here and gives PyTorch's outputs; the
 * AdamW state file loads into torch.optim.AdamW. Then the optimizer and extras round
 * trip here, a mismatched pair of files is refused, and several thread ranks save
 * (rank 0) and load (all). Without torch the PyTorch tests skip loudly (BAGUA_REQUIRE=torch
 * fails them).
 */
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { manualSeed, noGrad, optim, randn, serialize, type Tensor } from '@bagua/core';
import { assertClose, repoRoot, skipOrFail } from '@bagua/testing';
import * as bagua from '../src/index.js';
import { assertJob, runJob } from './helpers/job.js';
import { Net, snapshot } from './helpers/checkpoint-net.js';

const PYTHON = '/usr/bin/python3';
const SCRIPT = join(repoRoot(), 'tools', 'safetensors_torch.py');
const TOL = { rtol: 1e-4, atol: 1e-5 };

function torchReady(t: ExecutionContext): boolean {
  const r = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
  if (r.status === 0) return true;
  skipOrFail(t, 'torch', `${PYTHON} cannot import torch (${(r.error?.message ?? r.stderr).trim().split('\n').pop()}): apt-get install python3-torch`);
  return false;
}

function python(t: ExecutionContext, ...args: string[]): string {
  const r = spawnSync(PYTHON, [SCRIPT, ...args], { encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) t.fail(`python ${args[0]} failed: ${r.stderr}`);
  return r.stdout;
}

const tmp = () => mkdtempSync(join(tmpdir(), 'ckpt-'));

/** A trained Net and its AdamW: 3 steps on x (moving the batch-norm statistics too). */
function trained(x: Tensor): { net: Net; opt: optim.AdamW } {
  const net = new Net();
  const opt = new optim.AdamW(net.parameters(), { lr: 0.01, weightDecay: 0.05 });
  for (let i = 0; i < 3; i++) {
    const y = net.forward(x);
    opt.zeroGrad();
    y.mul(y).mean().backward();
    opt.step();
  }
  return { net, opt };
}

const evalOut = (net: Net, x: Tensor) => noGrad(() => net.eval().forward(x));

test.serial('a checkpoint written here loads into PyTorch\'s same network (strict) and gives the same eval outputs; its AdamW state loads into torch.optim.AdamW', (t) => {
  if (!torchReady(t)) return;
  const dir = tmp();
  manualSeed(3);
  const x = randn([6, 1, 8, 8]);
  const { net, opt } = trained(x);
  const ours = evalOut(net, x);
  const ckpt = join(dir, 'ours.safetensors');
  bagua.saveCheckpoint(ckpt, { model: net, optimizer: opt, extra: { epoch: 3 } });
  serialize.save(join(dir, 'x.safetensors'), { x });
  python(t, 'eval', ckpt, join(dir, 'x.safetensors'), join(dir, 'y.safetensors'));
  const theirs = serialize.loadFile(join(dir, 'y.safetensors')).tensors.y;
  t.deepEqual(theirs.shape, [6, 3]);
  assertClose(t, ours, { shape: [...theirs.shape], data: Array.from(theirs.data as Float32Array) }, 'PyTorch eval output of our checkpoint', TOL);
  const info = JSON.parse(python(t, 'optim', bagua.optimizerPath(ckpt), ckpt)) as
    { groups: Record<string, unknown>[]; state: Record<string, string[]>; exp_avg_sum: number };
  t.is(info.groups[0]['lr'], 0.01);
  t.is(info.groups[0]['weight_decay'], 0.05);
  t.deepEqual(info.groups[0]['betas'], [0.9, 0.999]);
  t.is(Object.keys(info.state).length, net.parameters().length);
  t.deepEqual(info.state['0'], ['exp_avg', 'exp_avg_sq', 'step']);
  let sum = 0;
  for (const s of Object.values(opt.stateDict().state)) for (const v of (s['exp_avg'] as Tensor).toArray() as Float32Array) sum += v;
  t.true(Math.abs(info.exp_avg_sum - sum) <= 1e-5 * Math.max(1, Math.abs(sum)), `exp_avg sums ${info.exp_avg_sum} vs ${sum}`);
});

test.serial('a checkpoint written by PyTorch (save_file(model.state_dict())) loads here and gives PyTorch\'s eval outputs', (t) => {
  if (!torchReady(t)) return;
  const dir = tmp();
  manualSeed(4);
  const x = randn([5, 1, 8, 8]);
  serialize.save(join(dir, 'x.safetensors'), { x });
  const ckpt = join(dir, 'torch.safetensors');
  python(t, 'train-save', '5', ckpt, join(dir, 'x.safetensors'), join(dir, 'y.safetensors'));
  t.true(Object.keys(serialize.loadFile(ckpt).tensors).includes('layer1.0.bn1.running_mean'));
  const net = new Net();
  bagua.loadCheckpoint(ckpt, { model: net });
  t.is((net.layer1 as unknown as Record<string, { bn1: { numBatchesTracked: number } }>)['0'].bn1.numBatchesTracked, 3, 'num_batches_tracked loaded');
  const theirs = serialize.loadFile(join(dir, 'y.safetensors')).tensors.y;
  assertClose(t, evalOut(net, x), { shape: [...theirs.shape], data: Array.from(theirs.data as Float32Array) }, 'our eval output of PyTorch\'s checkpoint', TOL);
});

test.serial('model, optimizer and extras round trip here; a training-state file from another save is refused', (t) => {
  const dir = tmp();
  manualSeed(6);
  const x = randn([4, 1, 8, 8]);
  const { net, opt } = trained(x);
  const ckpt = join(dir, 'a.safetensors');
  bagua.saveCheckpoint(ckpt, { model: net, optimizer: opt, extra: { epoch: 2, best: 0.5 } });
  manualSeed(7);
  const net2 = new Net();
  const opt2 = new optim.AdamW(net2.parameters(), { lr: 0.5 });
  const { extra } = bagua.loadCheckpoint(ckpt, { model: net2, optimizer: opt2 });
  t.deepEqual(extra, { epoch: 2, best: 0.5 });
  t.deepEqual(snapshot(net2), snapshot(net));
  const a = serialize.flattenState(opt.stateDict());
  const b = serialize.flattenState(opt2.stateDict());
  t.is(b.json, a.json, 'the same hyper-parameters and step counts');
  for (const [k, v] of Object.entries(a.tensors)) t.deepEqual(Array.from(b.tensors[k].toArray() as Float32Array), Array.from(v.toArray() as Float32Array), k);
  // one more identical step on both: the same parameters
  for (const [n, o] of [[net, opt], [net2, opt2]] as const) {
    n.train();
    const y = n.forward(x);
    o.zeroGrad();
    y.mul(y).mean().backward();
    o.step();
  }
  t.deepEqual(snapshot(net2), snapshot(net), 'training continues identically');
  const other = join(dir, 'b.safetensors');
  bagua.saveCheckpoint(other, { model: net, optimizer: opt });
  copyFileSync(bagua.optimizerPath(other), bagua.optimizerPath(ckpt));
  t.throws(() => bagua.loadCheckpoint(ckpt, { model: net2, optimizer: opt2 }), { message: /belongs to another save than .*a\.safetensors/ });
  t.throws(() => bagua.loadCheckpoint(join(dir, 'none.safetensors'), { model: net2 }), { message: /ENOENT/ });
});

test.serial('on 3 thread ranks rank 0 writes the checkpoint and every rank loads it; a failed write fails everywhere', async (t) => {
  const job = await runJob('threads', 3, 'checkpoint', [tmp()]);
  assertJob(t, job, 3, 3);
});
