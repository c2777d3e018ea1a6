/**
 * Asynchronous TypeScript client of the rendezvous store (protocol in
 * ../store-protocol.ts). Requests on one client are answered in order, so a
 * pending wait() holds back later requests of the same client: use a second
 * client for concurrent waits.
 */
import * as net from 'node:net';
import { StoreOp, StoreStatus } from '../store-protocol.js';
import { FieldReader, FrameReader, FrameWriter } from './codec.js';

export interface StoreConnectOptions {
  host?: string;
  port: number;
  /** Shared secret sent as the first request (AUTH). */
  token?: string;
  /** How long to keep retrying a refused connection (the store may start after us). Default 30 s. */
  connectTimeoutMs?: number;
}

export class StoreError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreError';
  }
}

export class StoreTimeoutError extends StoreError {
  constructor(
    message: string,
    readonly missingKeys: readonly string[],
  ) {
    super(message);
    this.name = 'StoreTimeoutError';
  }
}

interface Pending {
  resolve: (payload: Buffer) => void;
  reject: (e: Error) => void;
}

/** One TCP connection; shared by a client and its prefixed views. */
class Connection {
  private readonly reader = new FrameReader();
  private readonly pending: Pending[] = [];
  private error: Error | null = null;

  constructor(
    private readonly socket: net.Socket,
    readonly endpoint: string,
  ) {
    socket.setNoDelay(true);
    socket.unref(); // an idle client must not keep the process alive
    socket.on('data', (d: Buffer) => {
      let frames: Buffer[];
      try {
        frames = this.reader.push(d);
      } catch (e) {
        this.fail(new StoreError(`malformed reply from the store at ${endpoint}: ${(e as Error).message}`));
        return;
      }
      for (const f of frames) {
        const p = this.pending.shift();
        if (!p) {
          this.fail(new StoreError(`unexpected reply from the store at ${endpoint}`));
          return;
        }
        if (this.pending.length === 0) this.socket.unref();
        p.resolve(f);
      }
    });
    socket.on('error', (e) => this.fail(new StoreError(`lost the connection to the store at ${endpoint}: ${e.message}`)));
    socket.on('close', () => this.fail(new StoreError(`the store at ${endpoint} closed the connection`)));
  }

  request(frame: Buffer): Promise<Buffer> {
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      if (this.pending.length === 0) this.socket.ref();
      this.pending.push({ resolve, reject });
      this.socket.write(frame);
    });
  }

  close(): void {
    this.fail(new StoreError('store client closed'));
  }

  private fail(e: Error): void {
    if (!this.error) this.error = e;
    this.socket.destroy();
    for (const p of this.pending.splice(0)) p.reject(this.error);
  }
}

function statusError(op: string, key: string, payload: Buffer): StoreError {
  const r = new FieldReader(payload);
  const status = r.u8();
  let msg = `status ${status}`;
  if (status === StoreStatus.ERROR) {
    try {
      msg = r.bytes().toString('utf8');
    } catch {
      /* no message */
    }
  }
  return new StoreError(`store ${op} '${key}' failed: ${msg}`);
}

const RETRYABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EAGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

export class StoreClient {
  private constructor(
    private readonly conn: Connection,
    readonly host: string,
    readonly port: number,
    readonly token: string | undefined,
    /** Prepended to every key of this view. */
    readonly prefix: string,
  ) {}

  /** Connects (retrying while the store is not yet up) and authenticates. */
  static async connect(options: StoreConnectOptions): Promise<StoreClient> {
    const host = options.host ?? '127.0.0.1';
    const { port, token } = options;
    const endpoint = `${host}:${port}`;
    const deadline = Date.now() + (options.connectTimeoutMs ?? 30_000);
    let delay = 10;
    for (;;) {
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect({ host, port });
          s.once('connect', () => {
            s.off('error', reject);
            resolve(s);
          });
          s.once('error', reject);
        });
        const client = new StoreClient(new Connection(socket, endpoint), host, port, token, '');
        if (token) {
          const reply = await client.conn.request(new FrameWriter().u8(StoreOp.AUTH).bytes(token).frame());
          if (reply[0] !== StoreStatus.OK) {
            client.close();
            throw new StoreError(`the store at ${endpoint} refused the token`);
          }
        }
        return client;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (!code || !RETRYABLE.has(code) || Date.now() + delay > deadline) {
          if (e instanceof StoreError) throw e;
          throw new StoreError(`cannot connect to the store at ${endpoint}: ${(e as Error).message}`);
        }
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 200);
      }
    }
  }

  /** A view whose keys are all prefixed with `prefix` (sharing this connection). */
  withPrefix(prefix: string): StoreClient {
    return new StoreClient(this.conn, this.host, this.port, this.token, this.prefix + prefix);
  }

  async set(key: string, value: Uint8Array | string): Promise<void> {
    const k = this.prefix + key;
    const reply = await this.conn.request(new FrameWriter().u8(StoreOp.SET).bytes(k).bytes(value).frame());
    if (reply[0] !== StoreStatus.OK) throw statusError('SET', k, reply);
  }

  /** The value, or null when the key does not exist. */
  async get(key: string): Promise<Uint8Array | null> {
    const k = this.prefix + key;
    const reply = await this.conn.request(new FrameWriter().u8(StoreOp.GET).bytes(k).frame());
    if (reply[0] === StoreStatus.NOT_FOUND) return null;
    if (reply[0] !== StoreStatus.OK) throw statusError('GET', k, reply);
    const r = new FieldReader(reply);
    r.u8();
    return new Uint8Array(r.bytes());
  }

  /** The value as UTF-8 text, or null. */
  async getString(key: string): Promise<string | null> {
    const v = await this.get(key);
    return v === null ? null : Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('utf8');
  }

  /** Adds delta to an integer key (missing = 0) and returns the new value. */
  async add(key: string, delta: number | bigint = 1): Promise<number> {
    const k = this.prefix + key;
    const reply = await this.conn.request(new FrameWriter().u8(StoreOp.ADD).bytes(k).i64(BigInt(delta)).frame());
    if (reply[0] !== StoreStatus.OK) throw statusError('ADD', k, reply);
    return Number(reply.readBigInt64LE(1));
  }

  /** Resolves once every key exists; throws StoreTimeoutError naming the missing ones after timeoutMs. */
  async wait(keys: string | readonly string[], timeoutMs = 300_000): Promise<void> {
    const list = (typeof keys === 'string' ? [keys] : keys).map((k) => this.prefix + k);
    if (!(await this.waitRaw(list, timeoutMs))) {
      const missing: string[] = [];
      for (const k of list) if (!(await this.waitRaw([k], 0))) missing.push(k);
      throw new StoreTimeoutError(
        `store wait timed out after ${timeoutMs} ms; missing keys: ${missing.join(', ') || '(appeared just now)'}`,
        missing,
      );
    }
  }

  /** True when every key exists now. */
  async check(keys: string | readonly string[]): Promise<boolean> {
    const list = (typeof keys === 'string' ? [keys] : keys).map((k) => this.prefix + k);
    return this.waitRaw(list, 0);
  }

  async delete(key: string): Promise<void> {
    const k = this.prefix + key;
    const reply = await this.conn.request(new FrameWriter().u8(StoreOp.DELETE).bytes(k).frame());
    if (reply[0] !== StoreStatus.OK) throw statusError('DELETE', k, reply);
  }

  /** Closes the connection (shared by every prefixed view of it). */
  close(): void {
    this.conn.close();
  }

  private async waitRaw(keys: readonly string[], timeoutMs: number): Promise<boolean> {
    const w = new FrameWriter().u8(StoreOp.WAIT).u32(keys.length);
    for (const k of keys) w.bytes(k);
    w.u32(Math.max(0, Math.min(Math.round(timeoutMs), 0xffffffff)));
    const reply = await this.conn.request(w.frame());
    if (reply[0] === StoreStatus.TIMEOUT) return false;
    if (reply[0] !== StoreStatus.OK) throw statusError('WAIT', keys.join(','), reply);
    return true;
  }
}
