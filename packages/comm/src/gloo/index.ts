/**
 * The 'gloo' backend. Importing this module registers its factory with
 * initProcessGroup; the native shim is loaded only when a group is made.
 */
import { registerBackendFactory, type BackendFactoryOptions } from '../init.js';
import { createGlooProcessGroup, type GlooProcessGroup } from './process-group.js';

export {
  createGlooProcessGroup,
  GlooProcessGroup,
  DEFAULT_GLOO_SMALL_BYTES,
  type GlooGroupOptions,
  type GlooStoreEndpoint,
} from './process-group.js';
export {
  glooAvailability,
  glooLibraryCandidates,
  loadGlooLibrary,
  GlooUnavailableError,
  GLOO_ABI_VERSION,
} from './library.js';

/** The factory initProcessGroup({ backend: 'gloo' }) calls: the C++ client joins the job's store itself. */
export function glooBackendFactory(o: BackendFactoryOptions): Promise<GlooProcessGroup> {
  return createGlooProcessGroup({
    rank: o.rank,
    size: o.worldSize,
    store: { host: o.store.host, port: o.store.port, ...(o.store.token ? { token: o.store.token } : {}) },
    prefix: `${o.store.prefix}${o.prefix}gloo`,
    timeoutMs: o.timeoutMs,
    name: 'world',
  });
}

registerBackendFactory('gloo', glooBackendFactory);
