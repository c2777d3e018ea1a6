#!/usr/bin/env node
// local-registry: an npm registry on 127.0.0.1 that serves the packed tarballs of a
// folder as if they were published, and forwards every other request (koffi, tsx, ...)
// to the upstream registry. tools/pack-check installs through it, so `npm install bagua`
// resolves bagua's own dependencies (@bagua/core, @bagua/comm, the platform packages)
// exactly as it would from npm, without publishing anything.
//
//   node tools/local-registry.mjs --dir TARBALLS [--upstream URL] [--port N]
//
// Prints `registry http://127.0.0.1:PORT/` once listening; stops on SIGTERM/SIGINT.
// Only GETs (no publish); every request is logged to stderr with its status.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    dir: { type: 'string' },
    upstream: { type: 'string', default: 'https://registry.npmjs.org/' },
    port: { type: 'string', default: '0' },
  },
});
if (!args.dir) {
  console.error('local-registry: --dir TARBALLS is required');
  process.exit(2);
}
const upstream = args.upstream.endsWith('/') ? args.upstream : `${args.upstream}/`;

/** name -> { version -> { manifest, file, data } } of the tarballs in --dir */
const local = new Map();
for (const file of readdirSync(args.dir).filter((f) => f.endsWith('.tgz'))) {
  const path = join(args.dir, file);
  const data = readFileSync(path);
  const manifest = JSON.parse(execFileSync('tar', ['xzOf', path, 'package/package.json'], { encoding: 'utf8' }));
  const versions = local.get(manifest.name) ?? new Map();
  versions.set(manifest.version, {
    manifest,
    file,
    data,
    integrity: `sha512-${createHash('sha512').update(data).digest('base64')}`,
    shasum: createHash('sha1').update(data).digest('hex'),
  });
  local.set(manifest.name, versions);
}

function packument(name, versions, base) {
  const out = { name, 'dist-tags': {}, versions: {} };
  let latest = null;
  for (const [version, v] of versions) {
    out.versions[version] = {
      ...v.manifest,
      _id: `${name}@${version}`,
      dist: { tarball: `${base}-/tarballs/${encodeURIComponent(v.file)}`, integrity: v.integrity, shasum: v.shasum },
    };
    latest = version;
  }
  out['dist-tags'].latest = latest;
  return out;
}

async function forward(req, res) {
  const target = new URL(req.url.replace(/^\//, ''), upstream);
  const headers = {};
  for (const h of ['accept', 'npm-command', 'user-agent']) if (req.headers[h]) headers[h] = req.headers[h];
  const reply = await fetch(target, { headers, redirect: 'follow' });
  const body = Buffer.from(await reply.arrayBuffer());
  // fetch has already decoded the body: send it as it is now.
  res.writeHead(reply.status, { 'content-type': reply.headers.get('content-type') ?? 'application/octet-stream' });
  res.end(body);
  return reply.status;
}

const server = createServer(async (req, res) => {
  let status = 500;
  try {
    const base = `http://${req.headers.host}/`;
    const path = decodeURIComponent(new URL(req.url, base).pathname.slice(1));
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      status = 405;
      res.writeHead(status).end();
    } else if (path.startsWith('-/tarballs/')) {
      const file = path.slice('-/tarballs/'.length);
      const hit = [...local.values()].flatMap((vs) => [...vs.values()]).find((v) => v.file === file);
      status = hit ? 200 : 404;
      res.writeHead(status, { 'content-type': 'application/octet-stream' }).end(hit?.data);
    } else if (local.has(path)) {
      status = 200;
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(packument(path, local.get(path), base)));
    } else {
      status = await forward(req, res);
    }
  } catch (e) {
    status = 502;
    if (!res.headersSent) res.writeHead(status, { 'content-type': 'text/plain' });
    res.end(`local-registry: ${e.message}\n`);
  }
  process.stderr.write(`local-registry: ${status} ${req.method} ${req.url}\n`);
});

server.listen(Number(args.port), '127.0.0.1', () => {
  console.log(`registry http://127.0.0.1:${server.address().port}/ (${[...local.keys()].join(', ')}; others from ${upstream})`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
