// @bagua/comm: process groups (threads | gloo | nccl), the rendezvous store and the launcher.
//
// Backend modules (./gloo/index.js, ./nccl/index.js) register their factory when
// imported; initProcessGroup() also imports them on demand, so a build without
// them still loads and only asking for that backend fails.

export {
  CollectiveError,
  completedWork,
  startAllReduce,
  DEFAULT_TIMEOUT_MS,
  parseCommDevice,
  type BackendName,
  type CommBuffer,
  type CommDevice,
  type CommDeviceLike,
  type DeviceBuffer,
  type HostBuffer,
  type ProcessGroup,
  type ReduceOp,
  type Work,
} from './process-group.js';
export { MAX_FRAME, StoreOp, StoreStatus } from './store-protocol.js';
export { allocHost, bytesPerElement, dtypeOf, hostDType, isDeviceBuffer, DTYPE_CODES, type DType } from './buffers.js';

export { StoreServer, type StoreServerOptions } from './store/server.js';
export { startStore, type StartStoreOptions, type StoreHandle } from './store/host.js';
export { StoreClient, StoreError, StoreTimeoutError, type StoreConnectOptions } from './store/client.js';

export { ProcessGroupBase, type GroupFields, type SubgroupSpec } from './group/base.js';
export { HostStagedGroup } from './group/host-staging.js';

export { ThreadsProcessGroup, type ThreadsGroupOptions } from './threads/group.js';
export { ThreadsCoordinator } from './threads/coordinator.js';
export { threadsWorkerInfo, type ThreadsWorkerInfo } from './threads/bootstrap.js';

export {
  initProcessGroup,
  destroyProcessGroup,
  isInitialized,
  defaultGroup,
  defaultStore,
  getRank,
  getWorldSize,
  getLocalRank,
  getLocalWorldSize,
  connectStore,
  parseInitMethod,
  registerBackendFactory,
  hasBackendFactory,
  type InitOptions,
  type BackendFactory,
  type BackendFactoryOptions,
  type Rendezvous,
} from './init.js';

export { runThreads, stopExitCode, type RunThreadsOptions, type RunResult } from './launch/threads.js';
export { runProcesses, type RunProcessesOptions } from './launch/processes.js';
export { launch, validateLaunchOptions, LaunchError, type LaunchOptions } from './launch/launcher.js';
export { main as launchMain, parseLaunchArgs, USAGE as LAUNCH_USAGE } from './launch/cli.js';
export { LinePrefixer, type OutputMode } from './launch/output.js';
export { assignBlame, describeBlame, type Blame, type RankEnd } from './launch/blame.js';
export { setReportStep, type FailureReport } from './report.js';

// gloo and nccl backends (importing them registers their factories; their native libraries load on first use).
export {
  createGlooProcessGroup,
  glooBackendFactory,
  glooAvailability,
  glooLibraryCandidates,
  GlooProcessGroup,
  GlooUnavailableError,
  DEFAULT_GLOO_SMALL_BYTES,
  type GlooGroupOptions,
  type GlooStoreEndpoint,
} from './gloo/index.js';
export {
  createNcclProcessGroup,
  ncclBackendFactory,
  ncclAvailability,
  NcclProcessGroup,
  NcclUnavailableError,
  NCCL_UNIQUE_ID_BYTES,
  type NcclGroupOptions,
  type NcclStore,
} from './nccl/index.js';
