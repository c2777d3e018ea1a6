export {
  Optimizer, type OptimizerStateDict, type ParamGroup, type ParamGroupSpec, type Params, type StateEntry,
} from './optimizer.js';
export { SGD, type SGDOptions, type SGDParamGroup } from './sgd.js';
export { Adam, AdamW, type AdamOptions, type AdamParamGroup } from './adam.js';
export { clipGradNorm } from './clip.js';
export * as lrScheduler from './lr-scheduler.js';
