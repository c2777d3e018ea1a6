/**
 * The 'nccl' backend. Importing this module registers its factory with
 * initProcessGroup; libnccl.so.2 is looked for only when a group is made.
 */
import { registerBackendFactory, type BackendFactoryOptions } from '../init.js';
import { createNcclProcessGroup, type NcclProcessGroup } from './process-group.js';

export { createNcclProcessGroup, NcclProcessGroup, type NcclGroupOptions, type NcclStore } from './process-group.js';
export {
  loadNccl,
  loadCudaRuntime,
  tryLoadCudaRuntime,
  ncclAvailability,
  NcclUnavailableError,
  NCCL_UNIQUE_ID_BYTES,
} from './library.js';
export { findLibrary, type FindLibraryOptions, type LibrarySearch } from './find.js';

/** The factory initProcessGroup({ backend: 'nccl' }) calls: the unique id travels through the job's store. */
export function ncclBackendFactory(o: BackendFactoryOptions): Promise<NcclProcessGroup> {
  return createNcclProcessGroup({
    rank: o.rank,
    size: o.worldSize,
    store: o.store,
    prefix: o.prefix,
    timeoutMs: o.timeoutMs,
    name: 'world',
  });
}

registerBackendFactory('nccl', ncclBackendFactory);
