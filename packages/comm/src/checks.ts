/**
 * Argument checks shared by the gloo and nccl backends: one rule and one message
 * for both. (The threads backend makes its checks inside the collective's phase,
 * so that its peers fail at once, with messages of its own.)
 */
import type { ProcessGroup, ReduceOp } from './process-group.js';

type Group = Pick<ProcessGroup, 'name' | 'size' | 'ranks'>;

/** The backend's code for a reduce op; a TypeError for an unknown one. */
export function reduceOpCode(codes: Readonly<Record<ReduceOp, number>>, op: ReduceOp): number {
  const code = codes[op];
  if (code === undefined) throw new TypeError(`allReduce: unknown reduce op '${String(op)}'`);
  return code;
}

export function checkRoot(g: Group, root: number): void {
  if (!Number.isInteger(root) || root < 0 || root >= g.size) {
    throw new RangeError(`broadcast: root ${root} is not a rank of group '${g.name}' (size ${g.size})`);
  }
}

export function checkGatherLength(g: Group, outputLength: number, inputLength: number): void {
  if (outputLength !== inputLength * g.size) {
    throw new RangeError(`allGather: output has ${outputLength} elements, expected ${g.size} x ${inputLength}`);
  }
}

/**
 * newGroup's ranks, sorted: group ranks follow the sorted global ranks, as in
 * PyTorch (and the threads backend). Each must be a member of g, listed once.
 */
export function subgroupRanks(g: Group, ranks: readonly number[]): number[] {
  const list = [...ranks].sort((a, b) => a - b);
  if (list.length === 0) throw new RangeError('newGroup: empty rank list');
  const seen = new Set<number>();
  for (const r of list) {
    if (!Number.isInteger(r) || !g.ranks.includes(r)) {
      throw new RangeError(`newGroup: rank ${r} is not a member of group '${g.name}' (${g.ranks.join(', ')})`);
    }
    if (seen.has(r)) throw new RangeError(`newGroup: rank ${r} is listed twice`);
    seen.add(r);
  }
  return list;
}

/** The `id`-th subgroup of g: its base name 'group(0,2)#1', and its full name under g's (unless g is the world). */
export function subgroupName(g: Group, list: readonly number[], id: number): { base: string; name: string } {
  const base = `group(${list.join(',')})#${id}`;
  return { base, name: g.name === 'world' ? base : `${g.name}/${base}` };
}
