/**
 * Framing and field codecs for the store wire protocol (../store-protocol.ts).
 * Shared by the server and the TypeScript client.
 */
import { MAX_FRAME } from '../store-protocol.js';

export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/**
 * Splits a byte stream into frames. Payload chunks are kept as a list and
 * joined once complete, so memory grows only with bytes actually received
 * (a bare 16 MiB header costs nothing) and large frames are not re-copied.
 */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private want = -1; // payload length of the frame being read, -1 while reading its header

  constructor(private maxFrame: number = MAX_FRAME) {}

  /** Sets a new bound (e.g. the full one after authentication). */
  setMaxFrame(n: number): void {
    this.maxFrame = n;
  }

  /**
   * Appends data; returns up to maxFrames complete payloads (the rest stays
   * buffered: a pipelined request after AUTH must be read under the bound that
   * AUTH sets). Throws ProtocolError on a frame over the bound.
   */
  push(data: Buffer, maxFrames = Infinity): Buffer[] {
    if (data.length) this.chunks.push(data);
    this.buffered += data.length;
    const out: Buffer[] = [];
    while (out.length < maxFrames) {
      if (this.want < 0) {
        if (this.buffered < 4) break;
        const head = this.take(4);
        const len = head.readUInt32LE(0);
        if (len > this.maxFrame) {
          throw new ProtocolError(`frame of ${len} bytes exceeds the limit of ${this.maxFrame}`);
        }
        this.want = len;
      }
      if (this.buffered < this.want) break;
      out.push(this.take(this.want));
      this.want = -1;
    }
    return out;
  }

  /** Forgets everything buffered (the connection is gone). */
  clear(): void {
    this.chunks = [];
    this.buffered = 0;
    this.want = -1;
  }

  /** Bytes received but not yet returned as frames. */
  get pending(): number {
    return this.buffered;
  }

  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    let res: Buffer;
    if (first.length >= n) {
      res = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      res = Buffer.allocUnsafe(n);
      let off = 0;
      while (off < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - off);
        c.copy(res, off, 0, k);
        off += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    return res;
  }
}

/** Reads fields from one payload, checking every bound. */
export class FieldReader {
  private off = 0;
  constructor(private readonly buf: Buffer) {}

  u8(): number {
    this.need(1);
    return this.buf[this.off++]!;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.off);
    this.off += 4;
    return v;
  }
  i64(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64LE(this.off);
    this.off += 8;
    return v;
  }
  bytes(): Buffer {
    const n = this.u32();
    this.need(n);
    const v = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return v;
  }
  /** The payload must be fully consumed: trailing bytes mean a malformed message. */
  end(): void {
    if (this.off !== this.buf.length) {
      throw new ProtocolError(`${this.buf.length - this.off} unexpected trailing bytes`);
    }
  }
  private need(n: number): void {
    if (this.off + n > this.buf.length) {
      throw new ProtocolError(`truncated message (needs ${n} more bytes at offset ${this.off})`);
    }
  }
}

/** Builds one frame (length header included) from fields. */
export class FrameWriter {
  private parts: Buffer[] = [];
  private size = 0;

  u8(v: number): this {
    return this.push(Buffer.from([v]));
  }
  u32(v: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32LE(v >>> 0, 0);
    return this.push(b);
  }
  i64(v: bigint): this {
    const b = Buffer.allocUnsafe(8);
    b.writeBigInt64LE(BigInt.asIntN(64, v), 0);
    return this.push(b);
  }
  bytes(v: Uint8Array | string): this {
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    this.u32(b.length);
    return this.push(b);
  }
  /** The frame: u32 LE payload length, then the payload. */
  frame(): Buffer {
    const head = Buffer.allocUnsafe(4);
    head.writeUInt32LE(this.size, 0);
    return Buffer.concat([head, ...this.parts], 4 + this.size);
  }
  get payloadSize(): number {
    return this.size;
  }
  private push(b: Buffer): this {
    this.parts.push(b);
    this.size += b.length;
    return this;
  }
}
