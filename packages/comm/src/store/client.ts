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
  /**
   * Bound on every request (AUTH, SET, GET, ADD, DELETE, check); a blocking
   * wait() is bounded by its own timeout plus WAIT_GRACE_MS. A store that
   * accepts but never answers then fails the request instead of hanging it.
   * Default: connectTimeoutMs when given (callers pass the group's timeout
   * there), else 300 s.
   */
  timeoutMs?: number;
}

/** Time the store gets beyond a WAIT's own timeout to answer TIMEOUT itself. */
export const WAIT_GRACE_MS = 500;

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
  what: string; // the request, as errors name it ('get bagua/x')
  bound: number; // ms it was given
  deadline: number; // absolute ms; never earlier than the previous request's (replies come in order)
  resolve: (payload: Buffer) => void;
  reject: (e: Error) => void;
}

/** One TCP connection; shared by a client and its prefixed views. */
class Connection {
  private readonly reader = new FrameReader();
  private readonly pending: Pending[] = [];
  private error: Error | null = null;
  private timer: NodeJS.Timeout | null = null;

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
      this.arm();
    });
    socket.on('error', (e) => this.fail(new StoreError(`lost the connection to the store at ${endpoint}${this.during()}: ${e.message}`)));
    socket.on('close', () => this.fail(new StoreError(`the store at ${endpoint} closed the connection${this.during()}`)));
  }

  /** Sends one request; rejects when no reply came within `bound` ms (after the replies it queues behind). */
  request(frame: Buffer, what: string, bound: number): Promise<Buffer> {
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      if (this.pending.length === 0) this.socket.ref();
      const prev = this.pending[this.pending.length - 1];
      const deadline = Math.max(Date.now() + bound, prev ? prev.deadline : 0);
      this.pending.push({ what, bound, deadline, resolve, reject });
      this.socket.write(frame);
      if (this.pending.length === 1) this.arm();
    });
  }

  close(): void {
    this.fail(new StoreError('store client closed'));
  }

  /** One timer, for the oldest request: deadlines never decrease along the queue. */
  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const head = this.pending[0];
    if (!head || this.error) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      const p = this.pending[0];
      if (!p) return;
      if (Date.now() < p.deadline) return this.arm();
      // The stream is out of step now (a late reply would answer the next request): drop it.
      this.fail(new StoreError(`store ${this.endpoint} did not answer '${p.what}' within ${p.bound} ms`));
    }, Math.min(Math.max(0, head.deadline - Date.now()), 0x7fffffff)); // setTimeout's limit; re-armed past it
    this.timer.unref(); // the socket is ref'd while requests are pending
  }

  private during(): string {
    const p = this.pending[0];
    return p ? ` during '${p.what}'` : '';
  }

  private fail(e: Error): void {
    if (!this.error) this.error = e;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
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

/** One TCP connect, abandoned after `ms` (a blackholed address would otherwise take the kernel's minutes). */
function connectOnce(host: string, port: number, ms: number): Promise<net.Socket> {
  return new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host, port });
    const timer = setTimeout(() => {
      s.destroy();
      reject(Object.assign(new Error(`no answer within ${ms} ms`), { code: 'ETIMEDOUT' }));
    }, ms);
    s.once('connect', () => {
      clearTimeout(timer);
      s.off('error', onError);
      resolve(s);
    });
    const onError = (e: Error) => {
      clearTimeout(timer);
      reject(e);
    };
    s.once('error', onError);
  });
}

export class StoreClient {
  private constructor(
    private readonly conn: Connection,
    readonly host: string,
    readonly port: number,
    readonly token: string | undefined,
    /** Prepended to every key of this view. */
    readonly prefix: string,
    /** Bound on each request (see StoreConnectOptions.timeoutMs). */
    readonly timeoutMs: number,
  ) {}

  /** Connects (retrying while the store is not yet up) and authenticates. */
  static async connect(options: StoreConnectOptions): Promise<StoreClient> {
    const host = options.host ?? '127.0.0.1';
    const { port, token } = options;
    const endpoint = `${host}:${port}`;
    const connectMs = options.connectTimeoutMs ?? 30_000;
    const timeoutMs = options.timeoutMs ?? options.connectTimeoutMs ?? 300_000;
    const deadline = Date.now() + connectMs;
    let delay = 10;
    let refused: Error | null = null; // the last retryable failure, e.g. ECONNREFUSED while the store starts
    for (;;) {
      try {
        const socket = await connectOnce(host, port, Math.max(1, deadline - Date.now()));
        const client = new StoreClient(new Connection(socket, endpoint), host, port, token, '', timeoutMs);
        if (token) {
          const reply = await client.conn.request(new FrameWriter().u8(StoreOp.AUTH).bytes(token).frame(), 'auth', timeoutMs);
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
          // A last attempt cut short by the deadline says nothing new: report why the earlier ones failed.
          const why = code === 'ETIMEDOUT' && refused ? refused : e as Error;
          if (why === e && code === 'ETIMEDOUT') throw new StoreError(`store ${endpoint} did not answer 'connect' within ${connectMs} ms`);
          throw new StoreError(`cannot connect to the store at ${endpoint} within ${connectMs} ms: ${why.message}`);
        }
        if (code !== 'ETIMEDOUT') refused = e as Error;
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 200);
      }
    }
  }

  /** A view whose keys are all prefixed with `prefix` (sharing this connection). */
  withPrefix(prefix: string): StoreClient {
    return new StoreClient(this.conn, this.host, this.port, this.token, this.prefix + prefix, this.timeoutMs);
  }

  async set(key: string, value: Uint8Array | string): Promise<void> {
    const k = this.prefix + key;
    const reply = await this.conn.request(new FrameWriter().u8(StoreOp.SET).bytes(k).bytes(value).frame(), `set ${k}`, this.timeoutMs);
    if (reply[0] !== StoreStatus.OK) throw statusError('SET', k, reply);
  }

  /** The value, or null when the key does not exist. */
  async get(key: string): Promise<Uint8Array | null> {
    const k = this.prefix + key;
    const reply = await this.conn.request(new FrameWriter().u8(StoreOp.GET).bytes(k).frame(), `get ${k}`, this.timeoutMs);
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
    const reply = await this.conn.request(new FrameWriter().u8(StoreOp.ADD).bytes(k).i64(BigInt(delta)).frame(), `add ${k}`, this.timeoutMs);
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
    const reply = await this.conn.request(new FrameWriter().u8(StoreOp.DELETE).bytes(k).frame(), `delete ${k}`, this.timeoutMs);
    if (reply[0] !== StoreStatus.OK) throw statusError('DELETE', k, reply);
  }

  /** Closes the connection (shared by every prefixed view of it). */
  close(): void {
    this.conn.close();
  }

  private async waitRaw(keys: readonly string[], timeoutMs: number): Promise<boolean> {
    const w = new FrameWriter().u8(StoreOp.WAIT).u32(keys.length);
    for (const k of keys) w.bytes(k);
    const ms = Math.max(0, Math.min(Math.round(timeoutMs), 0xffffffff));
    w.u32(ms);
    // A check (ms 0) is an ordinary request; a wait may take its own time, plus a grace.
    const list = keys.join(',');
    const what = `${ms === 0 ? 'check' : 'wait'} ${list.length > 160 ? `${list.slice(0, 160)}... (${keys.length} keys)` : list}`;
    const reply = await this.conn.request(w.frame(), what, ms === 0 ? this.timeoutMs : ms + WAIT_GRACE_MS);
    if (reply[0] === StoreStatus.TIMEOUT) return false;
    if (reply[0] !== StoreStatus.OK) throw statusError('WAIT', keys.join(','), reply);
    return true;
  }
}
