import { nn } from '@bagua/core';

type BatchNormClass = new (numFeatures: number, opts: nn.BatchNormOptions) => nn._BatchNorm;

/** The plain layer for an input rank: 2D/3D -> BatchNorm1d, 4D -> 2d, 5D -> 3d. */
export function batchNormClassForRank(rank: number): BatchNormClass {
  if (rank === 2 || rank === 3) return nn.BatchNorm1d;
  if (rank === 4) return nn.BatchNorm2d;
  if (rank === 5) return nn.BatchNorm3d;
  throw new Error(`no BatchNorm layer takes ${rank}D input (expected 2D to 5D)`);
}

export function isPlainBatchNorm(m: nn.Module): m is nn._BatchNorm {
  return m instanceof nn.BatchNorm1d || m instanceof nn.BatchNorm2d || m instanceof nn.BatchNorm3d;
}

/**
 * Makes `to` stand in for `from`: the same weight and bias Parameters and the
 * same running buffers (so optimizers and references stay valid), the same
 * numBatchesTracked and training flag. The device follows from sharing.
 */
export function shareBatchNormState(from: nn._BatchNorm, to: nn._BatchNorm): void {
  if (from.numFeatures !== to.numFeatures || from.affine !== to.affine ||
      from.trackRunningStats !== to.trackRunningStats) {
    throw new Error(`cannot share state between ${from.constructor.name}(${from.numFeatures}) and ` +
      `${to.constructor.name}(${to.numFeatures}): features, affine or trackRunningStats differ`);
  }
  to.registerParameter('weight', from.weight);
  to.registerParameter('bias', from.bias);
  to.registerBuffer('runningMean', from.runningMean);
  to.registerBuffer('runningVar', from.runningVar);
  to.numBatchesTracked = from.numBatchesTracked;
  to.training = from.training;
}

export function batchNormOptions(bn: nn._BatchNorm): nn.BatchNormOptions {
  return { eps: bn.eps, momentum: bn.momentum, affine: bn.affine, trackRunningStats: bn.trackRunningStats };
}

/**
 * Walks the tree and replaces each module for which `replace` (given the
 * module and its dotted path) returns a module (PyTorch's
 * convert_sync_batchnorm pattern). Returns the root, or its replacement when
 * the root itself is replaced.
 */
export function replaceModules(root: nn.Module, replace: (m: nn.Module, path: string) => nn.Module | null,
  path = ''): nn.Module {
  const direct = replace(root, path);
  if (direct) return direct;
  for (const [name, child] of [...root.namedChildren()]) {
    const next = replaceModules(child, replace, path ? `${path}.${name}` : name);
    if (next !== child) root.addModule(name, next);
  }
  return root;
}

/**
 * Replaces every BatchNorm1d/2d/3d with `make(bn, path)`'s layer (e.g. a
 * SyncBatchNorm), sharing parameters and buffers. A model without batch
 * norm comes back unchanged.
 */
export function convertBatchNorms(root: nn.Module,
  make: (bn: nn._BatchNorm, path: string) => nn._BatchNorm): nn.Module {
  return replaceModules(root, (m, path) => {
    if (!isPlainBatchNorm(m)) return null;
    const layer = make(m, path);
    shareBatchNormState(m, layer);
    return layer;
  });
}

/** A layer that remembers the input rank it has seen, so it can be reverted to the right plain class. */
export interface RankAware {
  readonly inputRank: number | null;
}

/**
 * Turns every layer matched by `isSync` back into BatchNorm1d/2d/3d, by the
 * input rank each has seen, or `rank` when given (for layers never run).
 */
export function revertBatchNorms(root: nn.Module, isSync: (m: nn.Module) => m is nn._BatchNorm & RankAware,
  rank?: number): nn.Module {
  return replaceModules(root, (m) => {
    if (!isSync(m)) return null;
    const r = m.inputRank ?? rank;
    if (r === undefined || r === null) {
      throw new Error(`cannot revert ${m.constructor.name}(${m.numFeatures}): it has seen no input; ` +
        'pass the input rank (2 to 5) to revertSyncBatchnorm');
    }
    const Plain = batchNormClassForRank(r);
    const layer = new Plain(m.numFeatures, batchNormOptions(m));
    shareBatchNormState(m, layer);
    return layer;
  });
}
