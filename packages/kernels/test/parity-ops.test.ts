/**
 * Every op of docs/core-api.md against PyTorch (fixtures/ops.json): output, and the
 * gradient of each input w.r.t. sum(output * g). One ava test per fixture case.
 */
import test from 'ava';
import '@bagua/kernels';
import { F, type Tensor } from '@bagua/core';
import { assertClose, loadFixture, testDevice, toTensor, type FixtureTensor } from '@bagua/testing';

interface OpCase {
  name: string;
  op: string;
  inputs: Record<string, FixtureTensor>;
  attrs: Record<string, unknown>;
  output: FixtureTensor;
  gradOutput: FixtureTensor;
  grads: Record<string, FixtureTensor>;
}

interface OpsFixture {
  expectedCounts: { cases: number; byOp: Record<string, number> };
  cases: OpCase[];
}

const fx = loadFixture<OpsFixture>('ops.json');
const device = testDevice();

/** The ops the API documents; each must have at least one case. */
const DOCUMENTED_OPS = ['add', 'sub', 'mul', 'div', 'neg', 'relu', 'exp', 'log', 'sqrt', 'matmul', 'transpose',
  'reshape', 'view', 'flatten', 'sum', 'mean', 'softmax', 'logSoftmax', 'linear', 'conv2d', 'maxPool2d',
  'avgPool2d', 'adaptiveAvgPool2d', 'mseLoss', 'crossEntropy'];

// Pinned, so a regenerated fixture that silently lost cases fails here.
const EXPECTED_CASES = 83;

test('parity ops.json: fixture holds every expected case', (t) => {
  t.is(fx.cases.length, EXPECTED_CASES);
  t.is(fx.expectedCounts.cases, fx.cases.length);
  for (const op of DOCUMENTED_OPS) t.true((fx.expectedCounts.byOp[op] ?? 0) > 0, `no case for ${op}`);
  t.is(new Set(fx.cases.map((c) => c.name)).size, fx.cases.length, 'case names are unique');
});

type Pair = number | [number, number];
type Reduction = 'mean' | 'sum' | 'none';

/** Runs a case's op through the documented API; tensor methods are also checked against their F twins. */
function runOp(c: OpCase, args: Record<string, Tensor>): { out: Tensor; twin?: Tensor } {
  const a = c.attrs;
  const fAny = F as unknown as Record<string, (...xs: unknown[]) => Tensor>;
  switch (c.op) {
    case 'add': case 'sub': case 'mul': case 'div': {
      const other = a.scalar !== undefined ? (a.scalar as number) : args.b;
      const x = args.a as unknown as Record<string, (o: Tensor | number) => Tensor>;
      return { out: x[c.op](other), twin: fAny[c.op](args.a, other) };
    }
    case 'neg': case 'relu': case 'exp': case 'log': case 'sqrt': {
      const x = args.x as unknown as Record<string, () => Tensor>;
      return { out: x[c.op](), twin: fAny[c.op](args.x) };
    }
    case 'matmul':
      return { out: args.a.matmul(args.b), twin: fAny.matmul(args.a, args.b) };
    case 'transpose':
      return { out: args.x.transpose(a.dim0 as number, a.dim1 as number) };
    case 'reshape':
      return { out: args.x.reshape(a.shape as number[]) };
    case 'view':
      return { out: args.x.view(a.shape as number[]) };
    case 'flatten':
      return { out: args.x.flatten(a.startDim as number | undefined, a.endDim as number | undefined) };
    case 'sum': case 'mean': {
      const dims = a.dims === null ? undefined : (a.dims as number | number[]);
      return { out: c.op === 'sum' ? args.x.sum(dims, a.keepDim as boolean) : args.x.mean(dims, a.keepDim as boolean) };
    }
    case 'softmax':
      return { out: args.x.softmax(a.dim as number), twin: fAny.softmax(args.x, a.dim) };
    case 'logSoftmax':
      return { out: args.x.logSoftmax(a.dim as number), twin: fAny.logSoftmax(args.x, a.dim) };
    case 'linear':
      return { out: F.linear(args.x, args.w, args.b ?? null) };
    case 'conv2d':
      return { out: F.conv2d(args.x, args.w, args.b ?? null, {
        stride: a.stride as Pair, padding: a.padding as Pair, dilation: a.dilation as Pair, groups: a.groups as number,
      }) };
    case 'maxPool2d':
      return { out: F.maxPool2d(args.x, a.kernelSize as Pair, {
        stride: a.stride as Pair | undefined, padding: a.padding as Pair | undefined,
        dilation: a.dilation as Pair | undefined,
      }) };
    case 'avgPool2d':
      return { out: F.avgPool2d(args.x, a.kernelSize as Pair, {
        stride: a.stride as Pair | undefined, padding: a.padding as Pair | undefined,
        countIncludePad: a.countIncludePad as boolean | undefined,
      }) };
    case 'adaptiveAvgPool2d':
      return { out: F.adaptiveAvgPool2d(args.x, a.outputSize as Pair) };
    case 'mseLoss':
      return { out: F.mseLoss(args.input, args.target, { reduction: a.reduction as Reduction }) };
    case 'crossEntropy':
      return { out: F.crossEntropy(args.input, args.target, { reduction: a.reduction as 'mean' | 'sum' }) };
    default:
      throw new Error(`parity-ops: no runner for op '${c.op}'`);
  }
}

for (const c of fx.cases) {
  test(`parity ops: ${c.name}`, (t) => {
    const args: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(c.inputs)) args[k] = toTensor(v, { requiresGrad: v.dtype !== 'int32' });

    const { out, twin } = runOp(c, args);
    t.is(String(out.device), String(args[Object.keys(args)[0]].device), 'output stays on the input device');
    assertClose(t, out, c.output, `${c.name} output`);
    if (twin) assertClose(t, twin, c.output, `${c.name} output via F.${c.op}`);

    out.backward(toTensor(c.gradOutput));
    const gradNames = Object.keys(c.grads);
    t.true(gradNames.length > 0, 'a case checks at least one gradient');
    for (const k of gradNames) assertClose(t, args[k].grad, c.grads[k], `${c.name} grad ${k}`);

    for (const v of Object.values(args)) v.dispose();
  });
}

test(`parity ops: runs on ${device}`, (t) => {
  const x = toTensor({ shape: [2], data: [1, 2] });
  t.is(String(x.device), device);
});
