/** Helpers shared by the CPU and GPU batch-norm benchmarks. */

/** [n, c, ...spatial] as batch norm sees it: n, c, hw (the spatial product) and the element count. */
export function bnDims(shape: readonly number[]): { n: number; c: number; hw: number; total: number } {
  const [n, c] = shape as [number, number];
  const hw = shape.slice(2).reduce((a, b) => a * b, 1);
  return { n, c, hw, total: n * c * hw };
}

/** n values in [-0.5, 0.5) from a linear congruential generator: the same data every run. */
export function randomArray(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s / 2 ** 32 - 0.5;
  }
  return a;
}

/** One line of a table: each cell right-aligned to its column's width. */
export function tableRow(cells: readonly string[], widths: readonly number[]): string {
  return cells.map((cell, i) => cell.padStart(widths[i]!)).join(' ');
}

/** A table's header line and the rule under it. */
export function tableHeader(titles: readonly string[], widths: readonly number[]): string {
  return `${tableRow(titles, widths)}\n${widths.map((w) => '-'.repeat(w)).join(' ')}`;
}
