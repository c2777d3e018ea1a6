/**
 * bagua: synchronous batch normalisation for data-parallel training, and the
 * pieces it is used with (Bagua's API in TypeScript).
 */
import './module-method.js';
import '@bagua/kernels';
import { defaultGroup, isInitialized, type ProcessGroup } from '@bagua/comm';
import { GradientAllReduce } from './algorithms.js';
import { SyncBatchNorm } from './sync-batchnorm.js';

export {
  initProcessGroup, destroyProcessGroup, getRank, getWorldSize, getLocalRank, getLocalWorldSize, defaultGroup,
  isInitialized,
  type ProcessGroup, type ReduceOp, CollectiveError,
} from '@bagua/comm';
export { SyncBatchNorm, type SyncBatchNormOptions, type StatsExchange } from './sync-batchnorm.js';
export { withBagua, GradientAllReduce, type Algorithm, type BaguaModule, type GradientAllReduceOptions, type Stepper } from './algorithms.js';
export {
  saveCheckpoint, loadCheckpoint, optimizerPath, type CheckpointParts, type CheckpointOptions, type Stateful,
} from './checkpoint.js';

/** A sub-group of the default group; every rank calls it with the same ranks (null for non-members). */
export async function newGroup(ranks: readonly number[]): Promise<ProcessGroup | null> {
  if (!isInitialized()) throw new Error('newGroup: no process group: call bagua.initProcessGroup() first');
  return defaultGroup().newGroup(ranks);
}

export const contrib = { SyncBatchNorm } as const;
export const algorithms = { GradientAllReduce } as const;
