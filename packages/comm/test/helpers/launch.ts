/** Runs bin/bagua-launch.js as a child process for launcher tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const LAUNCHER = fileURLToPath(new URL('../../../bin/bagua-launch.js', import.meta.url));
export const SCRIPT = fileURLToPath(new URL('../fixtures/launch-script.js', import.meta.url));

export interface Launched {
  child: ChildProcess;
  /** Resolves when the launcher exits. */
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number }>;
  /** Resolves once `pattern` has appeared in stdout/stderr `count` times. */
  seen(pattern: RegExp, count?: number): Promise<string>;
}

export function startLauncher(args: string[], env: Record<string, string | undefined> = {}, killAfterMs = 20_000): Launched {
  const start = Date.now();
  const child = spawn(process.execPath, [LAUNCHER, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const watchers: { pattern: RegExp; count: number; resolve: (s: string) => void }[] = [];
  const check = () => {
    const all = stdout + stderr;
    for (const w of watchers.splice(0)) {
      const hits = all.match(new RegExp(w.pattern.source, 'g' + w.pattern.flags.replace('g', '')))?.length ?? 0;
      if (hits >= w.count) w.resolve(all);
      else watchers.push(w);
    }
  };
  child.stdout!.on('data', (d) => {
    stdout += d;
    check();
  });
  child.stderr!.on('data', (d) => {
    stderr += d;
    check();
  });
  // Never let a broken launcher hang the suite.
  const killer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number }>((resolve) => {
    child.once('close', (code, signal) => {
      clearTimeout(killer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - start });
    });
  });
  return {
    child,
    done,
    seen: (pattern, count = 1) =>
      new Promise((resolve) => {
        watchers.push({ pattern, count, resolve });
        check();
      }),
  };
}

export function launchCli(args: string[], env: Record<string, string | undefined> = {}) {
  return startLauncher(args, env).done;
}
