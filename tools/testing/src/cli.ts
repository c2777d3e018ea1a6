/**
 * Integer options of the benchmark scripts (util.parseArgs gives strings): each one
 * parsed and checked against its minimum, else an error naming the flag and the value.
 */
export function intOptions<K extends string>(
  prog: string,
  values: { readonly [name: string]: unknown },
  mins: Record<K, number>,
): Record<K, number> {
  const out = {} as Record<K, number>;
  for (const name of Object.keys(mins) as K[]) {
    const v = Number(values[name]);
    if (!Number.isInteger(v) || v < mins[name]) {
      throw new Error(`${prog}: --${name} must be an integer >= ${mins[name]}, got ${String(values[name])}`);
    }
    out[name] = v;
  }
  return out;
}
