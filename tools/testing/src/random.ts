/** Deterministic test data from core's seedable generator (one generator for the whole project). */
import { Generator } from '@bagua/core';

export function randn(n: number, seed: number, mean = 0, std = 1): Float32Array {
  const g = new Generator(seed);
  return Float32Array.from({ length: n }, () => mean + std * g.normal());
}

export function uniform(n: number, seed: number, lo: number, hi: number): Float32Array {
  const g = new Generator(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * g.uniform());
}

export function randint(n: number, seed: number, lo: number, hi: number): Int32Array {
  const g = new Generator(seed);
  return Int32Array.from({ length: n }, () => lo + Math.floor((hi - lo) * g.uniform()));
}
