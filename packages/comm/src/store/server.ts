/**
 * The rendezvous store server: an in-memory key-value map behind the wire
 * protocol of ../store-protocol.ts. It runs on whatever event loop creates it;
 * startStore() (./host.ts) puts it on a dedicated worker thread so that a
 * blocked main thread (a native call, a synchronous collective) cannot starve it.
 */
import * as net from 'node:net';
import { createHash, timingSafeEqual } from 'node:crypto';
import { MAX_FRAME, StoreOp, StoreStatus } from '../store-protocol.js';
import { FieldReader, FrameReader, FrameWriter, ProtocolError } from './codec.js';
import { Reclaimer } from './reclaim.js';

export interface StoreServerOptions {
  /** Address to bind; only this one (default 127.0.0.1). */
  host?: string;
  /** Port to bind; 0 picks a free one (default 0). */
  port?: number;
  /** Shared secret: when set, every connection's first request must be AUTH with it. */
  token?: string;
  /** Where protocol violations and rejected clients are reported (default console.warn). */
  log?: (message: string) => void;
  /** Most simultaneous connections (default 4096). */
  maxConnections?: number;
  /** An unauthenticated connection is dropped after this long (default 2 s; only with a token). */
  authTimeoutMs?: number;
  /** Most bytes of keys and values held at once; a SET or ADD beyond it gets ERROR (default 256 MiB). */
  maxStoredBytes?: number;
  /**
   * Most bytes of requests received but not yet handled, over all connections
   * (unfinished frames, and frames queued behind a WAIT). Beyond it the
   * connections holding the most are dropped, largest first (default 64 MiB).
   */
  maxBufferedBytes?: number;
  /** After dropping connections that held much, collect and trim so RSS goes back down (default true). */
  reclaimMemory?: boolean;
}

/** Before AUTH succeeds a stranger may send only this much per frame. */
const PRE_AUTH_MAX_FRAME = 4096;
/** Frames queued behind a blocking WAIT beyond this pause reading from that socket. */
const MAX_QUEUED_BYTES = 2 * MAX_FRAME;
/** A connection that held this much when it went away is worth giving memory back for. */
const RECLAIM_MIN_BYTES = 1 << 20;
/** setTimeout's limit; WAIT timeouts are u32 ms and may exceed it. */
const MAX_TIMER_MS = 0x7fffffff;

interface Waiter {
  conn: Conn;
  missing: Set<string>;
  timer: NodeJS.Timeout | null;
}

interface Conn {
  socket: net.Socket;
  peer: string;
  reader: FrameReader;
  queue: Buffer[];
  queuedBytes: number;
  blocked: Waiter | null;
  authed: boolean;
  closed: boolean;
  authTimer: NodeJS.Timeout | null;
  held: number; // reader.pending + queuedBytes, as last counted into StoreServer.buffered
}

function digest(s: string | Buffer): Buffer {
  return createHash('sha256').update(s).digest();
}

export class StoreServer {
  private readonly data = new Map<string, Buffer>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  private readonly conns = new Set<Conn>();
  private readonly server: net.Server;
  private readonly tokenDigest: Buffer | null;
  private readonly log: (message: string) => void;
  private readonly authTimeoutMs: number;
  private bound: { host: string; port: number } | null = null;
  private stored = 0; // bytes of keys and values held
  private readonly maxStored: number;
  private buffered = 0; // sum of every connection's `held`
  private readonly maxBuffered: number;
  private readonly reclaimer: Reclaimer | null;

  constructor(private readonly options: StoreServerOptions = {}) {
    this.tokenDigest = options.token ? digest(options.token) : null;
    this.log = options.log ?? ((m) => console.warn(m));
    this.authTimeoutMs = options.authTimeoutMs ?? 2_000;
    this.maxStored = options.maxStoredBytes ?? 256 << 20;
    this.maxBuffered = options.maxBufferedBytes ?? 64 << 20;
    this.reclaimer = options.reclaimMemory === false ? null : new Reclaimer();
    this.server = net.createServer((s) => this.accept(s));
    this.server.maxConnections = options.maxConnections ?? 4096;
    this.server.on('error', (e) => this.log(`store: server error: ${e.message}`));
  }

  /** Binds host:port and resolves with the actual address (port 0 -> the picked one). */
  listen(): Promise<{ host: string; port: number }> {
    const host = this.options.host || '127.0.0.1'; // never '' (that would be every address)
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      this.server.once('error', onError);
      this.server.listen({ host, port: this.options.port ?? 0, exclusive: true }, () => {
        this.server.off('error', onError);
        const a = this.server.address() as net.AddressInfo;
        this.bound = { host, port: a.port };
        resolve(this.bound);
      });
    });
  }

  get address(): { host: string; port: number } | null {
    return this.bound;
  }

  /** Number of keys held (for tests and diagnostics). */
  get size(): number {
    return this.data.size;
  }

  /** Request bytes received and not yet handled, over all connections (for tests and diagnostics). */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Reply bytes written but not yet taken by the peers (for tests and diagnostics). */
  get replyBytes(): number {
    let n = 0;
    for (const c of this.conns) n += c.socket.writableLength;
    return n;
  }

  /** Open connections (for tests and diagnostics). */
  get connections(): number {
    return this.conns.size;
  }

  close(): Promise<void> {
    for (const c of this.conns) this.drop(c, null);
    this.reclaimer?.cancel();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    const conn: Conn = {
      socket,
      peer: `${socket.remoteAddress}:${socket.remotePort}`,
      reader: new FrameReader(this.tokenDigest ? PRE_AUTH_MAX_FRAME : MAX_FRAME),
      queue: [],
      queuedBytes: 0,
      blocked: null,
      authed: !this.tokenDigest,
      closed: false,
      authTimer: null,
      held: 0,
    };
    this.conns.add(conn);
    if (this.tokenDigest) {
      conn.authTimer = setTimeout(() => this.drop(conn, 'no AUTH within the time allowed'), this.authTimeoutMs);
      conn.authTimer.unref();
    }
    socket.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    socket.on('drain', () => this.pump(conn)); // resumes a reader paused for unread replies
    socket.on('error', () => this.drop(conn, null)); // a reset peer is not worth a log line
    socket.on('close', () => this.drop(conn, null));
  }

  private onData(conn: Conn, chunk: Buffer): void {
    if (conn.closed) return;
    let frames: Buffer[];
    try {
      // Unauthenticated: one frame at a time, so AUTH can raise the bound for what follows.
      frames = conn.reader.push(chunk, conn.authed ? Infinity : 1);
    } catch (e) {
      this.drop(conn, (e as Error).message);
      return;
    }
    for (const f of frames) {
      conn.queue.push(f);
      conn.queuedBytes += f.length;
    }
    this.pump(conn);
    if (this.buffered > this.maxBuffered) this.shed();
  }

  /** Re-counts what a connection holds into the server-wide total. */
  private account(conn: Conn): void {
    const held = conn.closed ? 0 : conn.reader.pending + conn.queuedBytes;
    this.buffered += held - conn.held;
    conn.held = held;
  }

  /**
   * Over the buffer bound: drops the connections holding the most until the
   * rest fit. Slow senders of huge frames are the ones that pile memory up;
   * a rank's small requests complete at once and hold next to nothing.
   */
  private shed(): void {
    const heavy = [...this.conns].filter((c) => c.held > 0).sort((a, b) => b.held - a.held);
    for (const c of heavy) {
      if (this.buffered <= this.maxBuffered) break;
      this.drop(c, `holds ${c.held} bytes of unfinished requests while the store buffers ${this.buffered} (limit ${this.maxBuffered}); dropping the largest first`);
    }
  }

  /** Handles queued requests in order; a pending WAIT holds back the rest (replies stay in order). */
  private pump(conn: Conn): void {
    // Replies the peer has not taken hold the rest back too (resumed on 'drain').
    while (!conn.closed && !conn.blocked && conn.queue.length && conn.socket.writableLength <= MAX_QUEUED_BYTES) {
      const f = conn.queue.shift()!;
      conn.queuedBytes -= f.length;
      try {
        this.handle(conn, f);
      } catch (e) {
        if (e instanceof ProtocolError) this.drop(conn, `malformed request: ${e.message}`);
        else this.drop(conn, `internal error: ${(e as Error).stack ?? e}`);
        return;
      }
    }
    if (conn.closed) return;
    this.account(conn);
    // Backpressure: stop reading from a client that piles requests behind a
    // WAIT, or that does not read its replies.
    if (conn.held > MAX_QUEUED_BYTES || conn.socket.writableLength > MAX_QUEUED_BYTES) conn.socket.pause();
    else if (conn.socket.isPaused()) conn.socket.resume();
  }

  private handle(conn: Conn, payload: Buffer): void {
    const r = new FieldReader(payload);
    const op = r.u8();
    if (!conn.authed) {
      if (op !== StoreOp.AUTH) {
        this.reject(conn, 'AUTH must be the first request');
        return;
      }
    }
    switch (op) {
      case StoreOp.AUTH: {
        const token = r.bytes();
        r.end();
        if (this.tokenDigest && !timingSafeEqual(digest(token), this.tokenDigest)) {
          this.reject(conn, 'wrong token');
          return;
        }
        if (!conn.authed) {
          conn.authed = true;
          conn.reader.setMaxFrame(MAX_FRAME);
          if (conn.authTimer) clearTimeout(conn.authTimer);
          // Requests pipelined behind AUTH, now read under the full bound (pump handles them next).
          for (const f of conn.reader.push(Buffer.alloc(0))) {
            conn.queue.push(f);
            conn.queuedBytes += f.length;
          }
        }
        this.reply(conn, new FrameWriter().u8(StoreStatus.OK));
        return;
      }
      case StoreOp.SET: {
        const key = r.bytes().toString('latin1');
        const value = Buffer.from(r.bytes()); // copy: the frame may share a larger chunk
        r.end();
        if (!this.put(key, value)) {
          this.reply(conn, new FrameWriter().u8(StoreStatus.ERROR).bytes(`SET: the store is full (${this.maxStored} bytes)`));
          return;
        }
        this.keyAppeared(key);
        this.reply(conn, new FrameWriter().u8(StoreStatus.OK));
        return;
      }
      case StoreOp.GET: {
        const key = r.bytes().toString('latin1');
        r.end();
        const v = this.data.get(key);
        this.reply(conn, v ? new FrameWriter().u8(StoreStatus.OK).bytes(v) : new FrameWriter().u8(StoreStatus.NOT_FOUND));
        return;
      }
      case StoreOp.ADD: {
        const key = r.bytes().toString('latin1');
        const delta = r.i64();
        r.end();
        const old = this.data.get(key);
        let base = 0n;
        if (old) {
          const text = old.toString('latin1');
          if (!/^-?\d{1,20}$/.test(text)) {
            // A well-formed request on a non-counter key: answer, keep the connection.
            this.reply(conn, new FrameWriter().u8(StoreStatus.ERROR).bytes(`ADD: value of '${key}' is not an integer`));
            return;
          }
          base = BigInt(text);
        }
        const next = BigInt.asIntN(64, base + delta);
        if (!this.put(key, Buffer.from(next.toString(), 'latin1'))) {
          this.reply(conn, new FrameWriter().u8(StoreStatus.ERROR).bytes(`ADD: the store is full (${this.maxStored} bytes)`));
          return;
        }
        this.keyAppeared(key);
        this.reply(conn, new FrameWriter().u8(StoreStatus.OK).i64(next));
        return;
      }
      case StoreOp.WAIT: {
        const count = r.u32();
        const missing = new Set<string>();
        for (let i = 0; i < count; i++) {
          const key = r.bytes().toString('latin1');
          if (!this.data.has(key)) missing.add(key);
        }
        const timeoutMs = r.u32();
        r.end();
        if (missing.size === 0) {
          this.reply(conn, new FrameWriter().u8(StoreStatus.OK));
          return;
        }
        if (timeoutMs === 0) {
          // 0 means "do not wait": the C++ client bounds its read by timeout + grace.
          this.reply(conn, new FrameWriter().u8(StoreStatus.TIMEOUT));
          return;
        }
        const w: Waiter = { conn, missing, timer: null };
        for (const k of missing) {
          let set = this.waiters.get(k);
          if (!set) this.waiters.set(k, (set = new Set()));
          set.add(w);
        }
        w.timer = setTimeout(() => this.finishWait(w, StoreStatus.TIMEOUT), Math.min(timeoutMs, MAX_TIMER_MS));
        conn.blocked = w;
        return;
      }
      case StoreOp.DELETE: {
        const key = r.bytes().toString('latin1');
        r.end();
        const old = this.data.get(key);
        if (old) {
          this.stored -= key.length + old.length;
          this.data.delete(key);
        }
        this.reply(conn, new FrameWriter().u8(StoreStatus.OK));
        return;
      }
      default:
        throw new ProtocolError(`unknown op ${op}`);
    }
  }

  /** Stores a value unless that would exceed the memory bound. */
  private put(key: string, value: Buffer): boolean {
    const old = this.data.get(key);
    const next = this.stored - (old ? key.length + old.length : 0) + key.length + value.length;
    if (next > this.maxStored) return false;
    this.stored = next;
    this.data.set(key, value);
    return true;
  }

  private keyAppeared(key: string): void {
    const set = this.waiters.get(key);
    if (!set) return;
    this.waiters.delete(key);
    for (const w of set) {
      w.missing.delete(key);
      if (w.missing.size === 0) this.finishWait(w, StoreStatus.OK);
    }
  }

  private finishWait(w: Waiter, status: StoreStatus): void {
    this.forgetWaiter(w);
    const conn = w.conn;
    if (conn.blocked !== w) return;
    conn.blocked = null;
    this.reply(conn, new FrameWriter().u8(status));
    // Continue with requests queued behind the WAIT, off this call stack.
    setImmediate(() => this.pump(conn));
  }

  private forgetWaiter(w: Waiter): void {
    if (w.timer) clearTimeout(w.timer);
    w.timer = null;
    for (const k of w.missing) {
      const set = this.waiters.get(k);
      if (set) {
        set.delete(w);
        if (set.size === 0) this.waiters.delete(k);
      }
    }
  }

  private reply(conn: Conn, w: FrameWriter): void {
    if (!conn.closed) conn.socket.write(w.frame());
  }

  /** Answers ERROR, then closes: used for authentication failures. */
  private reject(conn: Conn, why: string): void {
    this.log(`store: rejected ${conn.peer}: ${why}`);
    if (!conn.closed) conn.socket.end(new FrameWriter().u8(StoreStatus.ERROR).bytes(why).frame());
    this.drop(conn, null, true);
  }

  /** Forgets a connection; logs `why` when it is a protocol violation. */
  private drop(conn: Conn, why: string | null, graceful = false): void {
    if (conn.closed) return;
    conn.closed = true;
    if (why) this.log(`store: closed connection from ${conn.peer}: ${why}`);
    if (conn.blocked) this.forgetWaiter(conn.blocked);
    conn.blocked = null;
    // Release what it buffered now: the socket (and this record, through its
    // listeners) may live on until collected, its received bytes must not.
    const released = Math.max(conn.held, conn.reader.pending + conn.queuedBytes);
    if (released >= RECLAIM_MIN_BYTES) this.reclaimer?.request(released);
    conn.queue.length = 0;
    conn.queuedBytes = 0;
    conn.reader.clear();
    this.account(conn);
    if (conn.authTimer) clearTimeout(conn.authTimer);
    this.conns.delete(conn);
    if (graceful) {
      // Let the ERROR reply reach the peer, but never wait on it for long.
      setTimeout(() => conn.socket.destroy(), 1000).unref();
    } else {
      conn.socket.destroy();
    }
  }
}
