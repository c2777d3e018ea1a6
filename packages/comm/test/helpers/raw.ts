/** Raw TCP helpers for store protocol tests. */
import * as net from 'node:net';

/**
 * Sends bytes, then collects what comes back until the peer closes, `ms` passes, or
 * `expectBytes` have come (so a loaded machine gets the whole bound, a quick one no wait).
 */
export function exchange(port: number, data: Buffer | Buffer[], ms = 1000, expectBytes = Infinity): Promise<{ reply: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ reply: Buffer.concat(chunks), closed });
    };
    const timer = setTimeout(() => finish(false), ms);
    s.on('connect', () => {
      for (const d of Array.isArray(data) ? data : [data]) s.write(d);
    });
    let got = 0;
    s.on('data', (d) => {
      chunks.push(d);
      got += d.length;
      if (got >= expectBytes) finish(false);
    });
    s.on('error', () => finish(true));
    s.on('close', () => finish(true));
  });
}

/** A frame: u32 LE length + payload. */
export function frame(payload: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32LE(payload.length, 0);
  return Buffer.concat([h, payload]);
}

export function bytesField(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s) : s;
  const h = Buffer.alloc(4);
  h.writeUInt32LE(b.length, 0);
  return Buffer.concat([h, b]);
}

export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v, 0);
  return b;
}
