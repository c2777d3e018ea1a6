/**
 * Stop-gap for the benchmark only: while @bagua/comm ships the gloo
 * ProcessGroup (dist/src/gloo/process-group.js) but not yet the module that
 * registers its factory (dist/src/gloo/index.js), register an equivalent
 * factory here so that the gloo rows can be measured. Inactive as soon as
 * comm's own module exists; the benchmark says which one was used.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { registerBackendFactory, type BackendFactoryOptions, type ProcessGroup } from '@bagua/comm';

interface GlooModule {
  createGlooProcessGroup(opts: {
    rank: number;
    size: number;
    store: { host: string; port: number; token?: string };
    prefix: string;
    timeoutMs?: number;
    name?: string;
  }): Promise<ProcessGroup>;
}

/** 'comm' when comm registers gloo itself, 'bench-fallback' when this module did, null when neither can. */
export async function ensureGlooFactory(): Promise<'comm' | 'bench-fallback' | null> {
  const commIndex = import.meta.resolve('@bagua/comm'); // file URL of <comm>/dist/src/index.js
  const own = new URL('./gloo/index.js', commIndex);
  if (existsSync(fileURLToPath(own))) return 'comm';
  const groupModule = new URL('./gloo/process-group.js', commIndex);
  if (!existsSync(fileURLToPath(groupModule))) return null;
  const { createGlooProcessGroup } = (await import(groupModule.href)) as GlooModule;
  registerBackendFactory('gloo', (o: BackendFactoryOptions) =>
    createGlooProcessGroup({
      rank: o.rank,
      size: o.worldSize,
      store: { host: o.store.host, port: o.store.port, ...(o.store.token ? { token: o.store.token } : {}) },
      prefix: `${o.prefix}gloo/`,
      timeoutMs: o.timeoutMs,
      name: 'world',
    }));
  return 'bench-fallback';
}
