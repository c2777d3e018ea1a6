import { nn } from '@bagua/core';

function convBlock(cin: number, cout: number): nn.Module[] {
  return [new nn.Conv2d(cin, cout, 3, { padding: 1 }), new nn.BatchNorm2d(cout), new nn.ReLU()];
}

/**
 * The CIFAR-style CNN the step benchmarks time (bench:step, bench:ddp), the same as
 * tools/bench_step_torch.py and tools/bench_ddp_torch.py build: 4 conv3x3 + BatchNorm2d
 * + ReLU blocks (3-32-32-64-64), a max pool, global average pool, a linear classifier.
 */
export function benchCnn(): nn.Sequential {
  return new nn.Sequential(
    ...convBlock(3, 32), ...convBlock(32, 32), new nn.MaxPool2d(2),
    ...convBlock(32, 64), ...convBlock(64, 64),
    new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(64, 10),
  );
}
