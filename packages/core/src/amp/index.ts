export { autocast, isAutocastEnabled } from './autocast.js';
export { GradScaler, type GradScalerOptions, type GradScalerStateDict, type ScalableOptimizer } from './grad-scaler.js';
