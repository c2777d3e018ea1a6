export { type Dataset, type WorkerSource, TensorDataset, tensorDatasetFromColumns } from './dataset.js';
export { DataLoader, type DataLoaderOptions } from './dataloader.js';
export {
  type Sampler, SequentialSampler, RandomSampler, DistributedSampler, type DistributedSamplerOptions, randperm,
} from './sampler.js';
export {
  type Sample, type HostTensor, type HostBatch, type Batch, type Collated, collateHost, toTensors, tensorFromHost,
} from './sample.js';
