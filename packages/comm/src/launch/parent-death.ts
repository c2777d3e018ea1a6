/**
 * A process rank dies with its launcher. When bagua-launch is killed with
 * SIGKILL it cannot stop its ranks, and ranks in a synchronous gloo loop would
 * train on for minutes; the kernel's parent-death signal ends them instead.
 *
 * SIGKILL rather than SIGTERM: a rank in a loop that never yields could not
 * run a JavaScript SIGTERM handler anyway, and nobody is left to read its output.
 */
import { createRequire } from 'node:module';

const PR_SET_PDEATHSIG = 1;
const SIGKILL = 9;

/** Asks the kernel to SIGKILL this process when `launcherPid`, its parent, dies; returns whether it could. */
export function dieWithLauncher(launcherPid: number): boolean {
  if (process.platform !== 'linux') return false;
  let prctl: (option: number, ...args: unknown[]) => number;
  let getppid: () => number;
  try {
    // koffi is a dependency already (the native backends); required lazily so other platforms never load it.
    const koffi = createRequire(import.meta.url)('koffi') as typeof import('koffi');
    const libc = koffi.load('libc.so.6');
    prctl = libc.func('int prctl(int option, ...)') as typeof prctl;
    getppid = libc.func('int getppid()') as typeof getppid;
  } catch {
    return false;
  }
  if (prctl(PR_SET_PDEATHSIG, 'unsigned long', SIGKILL) !== 0) return false;
  // The launcher may have died before prctl: then our parent is already someone else (init or a subreaper).
  if (getppid() !== launcherPid) process.exit(1);
  return true;
}
