/**
 * A seedable generator (xoshiro128**, seeded through splitmix32), so that
 * runs are reproducible with manualSeed() as in PyTorch (the streams differ
 * from PyTorch's; fixtures therefore carry their own initial values).
 */
export class Generator {
  private s = new Uint32Array(4);
  // The second value of a Box-Muller pair, kept unboxed (a `number | null` field would
  // allocate a heap number per draw: a randn of a batch made megabytes of garbage).
  private readonly spare = new Float64Array(1);
  private hasSpare = false;

  constructor(seed = 0x9e3779b9) {
    this.seed(seed);
  }

  seed(seed: number): void {
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    this.hasSpare = false;
  }

  private nextU32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 24 random bits, exactly representable in float32. */
  uniform(): number {
    return (this.nextU32() >>> 8) / 16777216;
  }

  /** Standard normal, Box-Muller (pairs). */
  normal(): number {
    if (this.hasSpare) {
      this.hasSpare = false;
      return this.spare[0];
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare[0] = r * Math.sin(2 * Math.PI * v);
    this.hasSpare = true;
    return r * Math.cos(2 * Math.PI * v);
  }
}

/**
 * Fills `out` with draws of `gen`: the loop lives here, next to the generator,
 * so that no draw crosses a call boundary as a boxed number.
 */
export function fillNormal(gen: Generator, out: Float32Array): void {
  for (let i = 0; i < out.length; i++) out[i] = gen.normal();
}

export function fillUniform(gen: Generator, out: Float32Array, low: number, high: number): void {
  for (let i = 0; i < out.length; i++) out[i] = low + (high - low) * gen.uniform();
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

export const defaultGenerator = new Generator();

export function manualSeed(seed: number): void {
  defaultGenerator.seed(seed);
}
