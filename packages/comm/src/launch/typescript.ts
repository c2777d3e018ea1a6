/**
 * TypeScript rank scripts: bagua-launch runs .ts, .mts and .cts files through tsx
 * (esbuild's transform, no type check), a dependency of @bagua/comm resolved from
 * here, so a user installs nothing more. Child processes get `--import tsx`; a
 * worker thread does not run the hooks of an execArgv --import on Node 20, so
 * thread ranks start at ts-worker.js, which registers tsx in the thread and then
 * imports the script.
 */
import { fileURLToPath } from 'node:url';

const TS_EXTENSION = /\.[mc]?ts$/i;

/** Whether a rank script (a path or a file: URL) is TypeScript. */
export function isTypeScript(script: string | URL): boolean {
  const path = script instanceof URL ? script.pathname : script;
  return TS_EXTENSION.test(path) && !/\.d\.[mc]?ts$/i.test(path);
}

/** The file: URL of one of tsx's entry points, as this package resolves it. */
export function resolveTsx(entry: 'tsx' | 'tsx/esm/api' | 'tsx/cjs/api'): string {
  try {
    return import.meta.resolve(entry);
  } catch (e) {
    throw new Error(
      `bagua-launch: a TypeScript script needs tsx, a dependency of @bagua/comm, which could not be resolved from ` +
        `${fileURLToPath(import.meta.url)} (${(e as Error).message}); reinstall @bagua/comm`,
    );
  }
}

/** Node options that make a child process run a TypeScript script. */
export function typeScriptExecArgv(): string[] {
  return ['--import', resolveTsx('tsx')];
}

/** The entry of a thread rank whose script is TypeScript (it reads workerData.baguaScript). */
export function typeScriptWorkerEntry(): URL {
  resolveTsx('tsx/esm/api'); // fail here, in the launcher, with the message above, not in every thread
  return new URL('./ts-worker.js', import.meta.url);
}
