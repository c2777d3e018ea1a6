/**
 * autocast and GradScaler (core/src/amp) on the CPU library: which ops run in which dtype,
 * the scaler's skip / backoff / growth and its state in the optimizer's state dict, and a
 * small CNN (conv + BatchNorm2d + ReLU + pooling + linear) trained on a synthetic 4-class
 * task in float32, under autocast bfloat16, and under autocast float16 with a GradScaler:
 * the mixed-precision runs end within 1 accuracy point of the float32 run.
 */
import test from 'ava';
import '@bagua/kernels';
import { autocast, F, GradScaler, nn, optim, tensor, toFloats, type Tensor } from '@bagua/core';
import { randn } from '@bagua/testing';

test('autocast: linear / matmul / conv2d in the low dtype, losses in float32, weights keep float32 gradients', (t) => {
  const lin = new nn.Linear(4, 3);
  const x = tensor(randn(8, 1), { shape: [2, 4] });
  const y = autocast('cpu', 'bfloat16', () => lin.forward(x));
  t.is(y.dtype, 'bfloat16');
  t.is(lin.forward(x).dtype, 'float32', 'outside autocast: float32');
  const loss = autocast('cpu', 'bfloat16', () => F.mseLoss(y, tensor(new Float32Array(6), { shape: [2, 3] })));
  t.is(loss.dtype, 'float32', 'losses run in float32');
  loss.backward();
  t.is(lin.weight.grad!.dtype, 'float32');
  t.is(lin.bias!.grad!.dtype, 'float32');
  const c = autocast('cpu', 'float16', () => F.conv2d(tensor(randn(2 * 3 * 5 * 5, 2), { shape: [2, 3, 5, 5] }),
    tensor(randn(4 * 3 * 9, 3), { shape: [4, 3, 3, 3] })));
  t.is(c.dtype, 'float16');
  t.is(autocast('cuda', 'float16', () => F.matmul(x, tensor(randn(4, 4), { shape: [4, 1] }))).dtype, 'float32',
    'autocast on cuda leaves CPU tensors alone');
  t.throws(() => autocast('cpu', 'int32' as never, () => 0), { message: /float16' or 'bfloat16/ });
});

test('GradScaler: scales the loss, unscales in place, skips a step with inf and backs off, grows after the interval', (t) => {
  const p = new nn.Parameter(tensor([1, 2]));
  const opt = new optim.SGD([p], { lr: 0.5 });
  const scaler = new GradScaler({ initScale: 8, growthInterval: 2 });
  const run = (g: number[]) => {
    opt.zeroGrad();
    const loss = F.sum(F.mul(p, tensor(g)));
    const scaled = scaler.scale(loss);
    t.is(scaled.item(), loss.item() * scaler.getScale());
    scaled.backward();
    const stepped = scaler.step(opt);
    scaler.update();
    return stepped;
  };
  t.true(run([1, 1]));
  t.deepEqual([...(p.toArray() as Float32Array)], [0.5, 1.5], 'the unscaled gradient was applied');
  t.is(scaler.getScale(), 8);
  t.true(run([1, 1]));
  t.is(scaler.getScale(), 16, 'grown after 2 clean steps');
  t.false(run([Infinity, 1]), 'inf: step skipped');
  t.deepEqual([...(p.toArray() as Float32Array)], [0, 1], 'parameters untouched by the skipped step');
  t.is(scaler.getScale(), 8, 'backed off');
  scaler.attach(opt);
  const sd = opt.stateDict() as { grad_scaler?: { scale: number } };
  t.is(sd.grad_scaler?.scale, 8);
  const other = new GradScaler();
  const opt2 = other.attach(new optim.SGD([new nn.Parameter(tensor([0, 0]))], { lr: 0.5 }));
  opt2.loadStateDict(sd as never);
  t.is(other.getScale(), 8, 'restored from the optimizer state dict');
  t.throws(() => { scaler.unscale(opt); scaler.unscale(opt); }, { message: /already called/ });
});

/** Four classes of 8x8 images: a bright quadrant (which one is the class) plus noise. */
function dataset(n: number, seed: number): { x: Float32Array; y: Int32Array } {
  const noise = randn(n * 64, seed, 0, 1.4);
  const x = new Float32Array(n * 64), y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const k = (i * 7 + seed) % 4;
    y[i] = k;
    for (let r = 0; r < 8; r++) for (let c = 0; c < 8; c++) {
      const q = (r < 4 ? 0 : 2) + (c < 4 ? 0 : 1);
      x[i * 64 + r * 8 + c] = noise[i * 64 + r * 8 + c]! + (q === k ? 1 : 0);
    }
  }
  return { x, y };
}

function train(mode: 'float32' | 'bfloat16' | 'float16'): number {
  const model = new nn.Sequential(
    new nn.Conv2d(1, 8, 3, { padding: 1 }), new nn.BatchNorm2d(8), new nn.ReLU(), new nn.MaxPool2d(2),
    new nn.Conv2d(8, 16, 3, { padding: 1 }), new nn.BatchNorm2d(16), new nn.ReLU(),
    new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(16, 4));
  // the same initial weights for every mode
  const init = model.stateDict();
  let s = 11;
  for (const [k, v] of Object.entries(init)) {
    if (v.dtype !== 'float32') continue;
    if (k.endsWith('weight') && v.ndim > 1) init[k] = tensor(randn(v.numel, s++, 0, Math.sqrt(2 / (v.numel / v.shape[0]!))), { shape: v.shape });
  }
  model.loadStateDict(init);
  const opt = new optim.SGD(model.parameters(), { lr: 0.1, momentum: 0.9 });
  const scaler = new GradScaler({ enabled: mode === 'float16', initScale: 2 ** 12 });
  const { x, y } = dataset(512, 1);
  const batch = 32;
  for (let epoch = 0; epoch < 3; epoch++) {
    for (let b = 0; b < 512 / batch; b++) {
      const xb = tensor(x.subarray(b * batch * 64, (b + 1) * batch * 64), { shape: [batch, 1, 8, 8] });
      const yb = tensor(y.subarray(b * batch, (b + 1) * batch), { shape: [batch], dtype: 'int32' });
      opt.zeroGrad();
      const loss = mode === 'float32' ? F.crossEntropy(model.forward(xb), yb)
        : autocast('cpu', mode, () => F.crossEntropy(model.forward(xb), yb));
      scaler.scale(loss).backward();
      scaler.step(opt);
      scaler.update();
    }
  }
  model.eval();
  const test = dataset(1024, 2);
  const logits: Tensor = model.forward(tensor(test.x, { shape: [1024, 1, 8, 8] }));
  const v = toFloats(logits.dtype, logits.toArray());
  let correct = 0;
  for (let i = 0; i < 1024; i++) {
    let best = 0;
    for (let k = 1; k < 4; k++) if (v[i * 4 + k]! > v[i * 4 + best]!) best = k;
    if (best === test.y[i]) correct++;
  }
  return (100 * correct) / 1024;
}

test('a small CNN trained under autocast (bfloat16; float16 with GradScaler) reaches the float32 accuracy within 1 point', (t) => {
  const f32 = train('float32');
  const bf16 = train('bfloat16');
  const f16 = train('float16');
  t.log(`test accuracy: float32 ${f32.toFixed(1)}%, autocast bfloat16 ${bf16.toFixed(1)}%, autocast float16 + GradScaler ${f16.toFixed(1)}%`);
  t.true(f32 > 60, `the float32 run learned the task (${f32}%)`);
  t.true(Math.abs(bf16 - f32) <= 1, `bfloat16 ${bf16}% vs float32 ${f32}%`);
  t.true(Math.abs(f16 - f32) <= 1, `float16 ${f16}% vs float32 ${f32}%`);
});
