// Two "hosts" for multi-host tests and benchmarks: network namespaces joined
// by a veth pair, h0 at 10.213.0.1 and h1 at 10.213.0.2 (shared by
// tools/netns-cluster and tools/bench-link). Needs root (CAP_NET_ADMIN) and
// iproute2; anything missing is a loud skip (exit 77, or 1 when BAGUA_REQUIRE
// names netns).
import { spawnSync } from 'node:child_process';

export const SKIP_CODE = 77;

/** `ip ARGS...`: { ok, err, out }. */
export function ip(...args) {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.error) return { ok: false, err: r.error.message };
  return { ok: r.status === 0, err: (r.stderr || r.stdout || '').trim(), out: r.stdout };
}

/** A skip that says why, loudly; a failure when BAGUA_REQUIRE includes netns. */
export function skipper(tool) {
  return (reason) => {
    const required = (process.env.BAGUA_REQUIRE ?? '').split(/[,\s]+/).includes('netns');
    const bar = '!'.repeat(78);
    process.stdout.write(`${bar}\n${tool}: SKIPPED: ${reason}\n`);
    if (required) process.stdout.write(`${tool}: BAGUA_REQUIRE includes netns: a skip is a failure\n`);
    process.stdout.write(`${bar}\n`);
    process.exit(required ? 1 : SKIP_CODE);
  };
}

/**
 * The two namespaces and their link, named after this process's pid so that
 * concurrent runs do not collide. setup() creates them (or skips); cleanup()
 * kills whatever runs inside them (everything there is ours) and deletes
 * them; it is registered for exit and the usual signals.
 */
export function netnsPair({ tool, log }) {
  const pair = {
    NS: [`bagua-h0-${process.pid}`, `bagua-h1-${process.pid}`],
    // Interface names are at most 15 characters.
    VETH: [`bgv0-${process.pid}`, `bgv1-${process.pid}`],
    ADDR: ['10.213.0.1', '10.213.0.2'],
    skip: skipper(tool),
    created: false,
    /** Pids of the processes inside host h's namespace. */
    pids(h) {
      return ip('netns', 'pids', pair.NS[h]).out?.split(/\s+/).filter(Boolean) ?? [];
    },
    /** SIGKILLs everything inside host h's namespace. */
    kill(h) {
      for (const p of pair.pids(h)) {
        try {
          process.kill(Number(p), 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    },
    cleanup() {
      if (!pair.created) return;
      pair.created = false;
      for (const h of [0, 1]) {
        pair.kill(h);
        ip('netns', 'del', pair.NS[h]);
      }
    },
    setup() {
      const { NS, VETH, ADDR, skip } = pair;
      const v = spawnSync('ip', ['-V'], { encoding: 'utf8' });
      if (v.error) skip(`no 'ip' command (iproute2): ${v.error.message}`);
      if (typeof process.getuid === 'function' && process.getuid() !== 0) skip(`not root (uid ${process.getuid()}): network namespaces need CAP_NET_ADMIN`);
      let r = ip('netns', 'add', NS[0]);
      if (!r.ok) skip(`cannot create a network namespace: ${r.err}`);
      pair.created = true;
      r = ip('netns', 'add', NS[1]);
      if (!r.ok) skip(`cannot create a second network namespace: ${r.err}`);
      r = ip('link', 'add', VETH[0], 'netns', NS[0], 'type', 'veth', 'peer', 'name', VETH[1], 'netns', NS[1]);
      if (!r.ok) skip(`cannot create a veth pair: ${r.err}`);
      for (const h of [0, 1]) {
        for (const args of [
          ['addr', 'add', `${ADDR[h]}/24`, 'dev', VETH[h]],
          ['link', 'set', VETH[h], 'up'],
          ['link', 'set', 'lo', 'up'],
        ]) {
          r = ip('-n', NS[h], ...args);
          if (!r.ok) skip(`ip -n ${NS[h]} ${args.join(' ')}: ${r.err}`);
        }
      }
      log(`hosts ${NS[0]} (${ADDR[0]}) and ${NS[1]} (${ADDR[1]}) over ${VETH[0]}<->${VETH[1]}`);
    },
  };
  process.on('exit', () => pair.cleanup());
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => process.exit(130));
  return pair;
}
