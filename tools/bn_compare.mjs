// bagua-ts batch norm against PyTorch's on the same card (tools/gpu-check, step "compare").
//
//   python3 tools/bn_compare_torch.py DIR      writes the inputs and PyTorch's results (float32
//                                              on the card, float64 on the CPU) into DIR
//   node tools/bn_compare.mjs DIR [DEVICE]     runs the same inputs through nn.BatchNorm2d
//                                              (BatchNorm1d for 2D shapes) on DEVICE (cuda:0),
//                                              training with running statistics, forward and
//                                              backward, and compares
//
// Error of a tensor: max |ours - ref| / max |ref| (a relative error that entries near 0
// cannot blow up). Per shape and overall: the worst over y, dx, dweight, dbias and the
// updated running mean and var, against PyTorch's float32 result on the card, and (to say
// which side is nearer the truth) both float32 results against float64 on the CPU.
// Passes when ours vs PyTorch <= TOL (1e-4), or ours is no farther from float64 than PyTorch's
// float32 result is (twice its error, plus float32's epsilon). Prints one JSON line last.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const TOL = Number(process.env.BN_COMPARE_TOL ?? 1e-4);
const dir = process.argv[2];
const device = process.argv[3] ?? process.env.GPU_CHECK_DEVICE ?? 'cuda:0';
if (!dir) {
  console.error('usage: node tools/bn_compare.mjs DIR [DEVICE]   (DIR from python3 tools/bn_compare_torch.py DIR)');
  process.exit(2);
}
const root = process.env.BAGUA_ROOT ?? resolve(dirname(fileURLToPath(import.meta.url)), '..');
const imp = (p) => import(pathToFileURL(join(root, p)).href);

const result = { ok: false, device, shapes: [] };
try {
  const core = await imp('packages/core/dist/src/index.js');
  await imp('packages/kernels/dist/src/index.js'); // registers the cuda backend
  const { nn, tensor } = core;
  const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
  result.torch = `PyTorch ${meta.torch} on ${meta.torchDevice} (${meta.device}${meta.cudnn ? ', cuDNN' : ''})`;
  const load = (files, name) => {
    const b = readFileSync(join(dir, files[name]));
    return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  };
  const relErr = (a, ref) => {
    if (a.length !== ref.length) return Infinity;
    let d = 0, m = 0;
    for (let i = 0; i < a.length; i++) {
      const e = Math.abs(a[i] - ref[i]);
      if (!(e <= d)) d = e; // NaN propagates as a failure
      m = Math.max(m, Math.abs(ref[i]));
    }
    return a.length === 0 ? 0 : d / Math.max(m, 1e-30);
  };
  const NAMES = ['y', 'dx', 'dweight', 'dbias', 'running_mean_after', 'running_var_after'];
  let worst = 0, worstWhat = '', allOk = true;
  for (const { shape, files } of meta.shapes) {
    const t0 = performance.now();
    const c = shape[1];
    const Module = shape.length === 4 ? nn.BatchNorm2d : shape.length === 5 ? nn.BatchNorm3d : nn.BatchNorm1d;
    const bn = new Module(c, { eps: meta.eps, momentum: meta.momentum });
    bn.loadStateDict({
      weight: tensor(load(files, 'weight'), { shape: [c] }),
      bias: tensor(load(files, 'bias'), { shape: [c] }),
      runningMean: tensor(load(files, 'running_mean'), { shape: [c] }),
      runningVar: tensor(load(files, 'running_var'), { shape: [c] }),
    }, false);
    bn.to(device);
    const x = tensor(load(files, 'x'), { shape, device, requiresGrad: true });
    const y = bn.forward(x);
    y.backward(tensor(load(files, 'dy'), { shape, device }));
    const ours = {
      y: y.toArray(), dx: x.grad.toArray(), dweight: bn.weight.grad.toArray(), dbias: bn.bias.grad.toArray(),
      running_mean_after: bn.runningMean.toArray(), running_var_after: bn.runningVar.toArray(),
    };
    const row = { shape, vsTorch: {}, oursVs64: {}, torchVs64: {} };
    let sw = 0, sWhat = '', s64 = 0, t64 = 0;
    for (const n of NAMES) {
      const ref = load(files, n), ref64 = load(files, `ref64_${n}`);
      const e = relErr(ours[n], ref), e64 = relErr(ours[n], ref64), te64 = relErr(ref, ref64);
      row.vsTorch[n] = Number(e.toPrecision(3));
      row.oursVs64[n] = Number(e64.toPrecision(3));
      row.torchVs64[n] = Number(te64.toPrecision(3));
      if (!(e <= sw)) { sw = e; sWhat = n; }
      s64 = Math.max(s64, e64);
      t64 = Math.max(t64, te64);
    }
    row.worstVsTorch = Number(sw.toPrecision(3));
    row.worstTensor = sWhat;
    row.worstOursVs64 = Number(s64.toPrecision(3));
    row.worstTorchVs64 = Number(t64.toPrecision(3));
    row.ok = sw <= TOL || s64 <= 2 * t64 + 1.2e-7;
    row.ms = Math.round(performance.now() - t0);
    result.shapes.push(row);
    console.log(`[${shape}] worst vs PyTorch ${row.worstVsTorch} (${sWhat}); vs float64: ours ${row.worstOursVs64}, ` +
      `PyTorch ${row.worstTorchVs64} ${row.ok ? 'ok' : 'FAIL'}\n  vs PyTorch per tensor: ${JSON.stringify(row.vsTorch)}`);
    if (!(sw <= worst)) { worst = sw; worstWhat = `${sWhat} of [${shape}]`; }
    allOk &&= row.ok;
    for (const t of [x, y]) t.dispose?.();
  }
  result.worstVsTorch = Number(worst.toPrecision(3));
  result.worstWhat = worstWhat;
  result.tol = TOL;
  result.ok = allOk && meta.shapes.length > 0;
} catch (e) {
  result.error = String(e?.stack ?? e).split('\n').slice(0, 4).join(' | ');
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
