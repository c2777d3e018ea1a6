/**
 * Random regression data for the examples: y = x W + noise, with one W shared
 * by every rank (a fixed seed) and each rank drawing its own x.
 */
import { Generator, tensor, type Tensor } from '@bagua/core';

export class RandomRegression {
  private readonly weights: Float32Array; // [dIn, dOut], row-major
  private readonly gen: Generator;

  constructor(readonly dIn: number, readonly dOut: number, dataSeed: number) {
    const shared = new Generator(42);
    this.weights = Float32Array.from({ length: dIn * dOut }, () => shared.normal() / Math.sqrt(dIn));
    this.gen = new Generator(dataSeed);
  }

  /** One batch of `n` rows: x [n, dIn] standard normal, y [n, dOut]. */
  batch(n: number): { x: Tensor; y: Tensor } {
    const { dIn, dOut } = this;
    const x = Float32Array.from({ length: n * dIn }, () => this.gen.normal());
    const y = new Float32Array(n * dOut);
    for (let r = 0; r < n; r++) {
      for (let j = 0; j < dOut; j++) {
        let s = 0;
        for (let k = 0; k < dIn; k++) s += x[r * dIn + k] * this.weights[k * dOut + j];
        y[r * dOut + j] = s + 0.05 * this.gen.normal();
      }
    }
    return { x: tensor(x, { shape: [n, dIn] }), y: tensor(y, { shape: [n, dOut] }) };
  }
}
