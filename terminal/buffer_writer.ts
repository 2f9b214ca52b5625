/**
 * Writes big-endian fields into a growing buffer, leaving room for the frame header, which
 * `frame()` fills in afterwards (body length included) — the shape of pg-protocol's Writer.
 */
import {
  FrameError,
  HEADER_SIZE,
  MAC_SIZE,
  MAGIC_0,
  MAGIC_1,
  MAX_BODY_SIZE,
  PROTOCOL_VERSION,
  Status,
} from "./messages.ts";
import type { FrameHeader } from "./messages.ts";

const encoder = new TextEncoder();

export class Writer {
  #buffer: Uint8Array;
  #view: DataView;
  #offset = HEADER_SIZE;

  constructor(size = 256) {
    this.#buffer = new Uint8Array(size);
    this.#view = new DataView(this.#buffer.buffer);
  }

  #ensure(size: number): void {
    const needed = this.#offset + size;
    if (needed <= this.#buffer.length) return;
    const next = new Uint8Array(Math.max(needed + MAC_SIZE, this.#buffer.length * 2));
    next.set(this.#buffer.subarray(0, this.#offset));
    this.#buffer = next;
    this.#view = new DataView(next.buffer);
  }

  addUint8(n: number): Writer {
    this.#ensure(1);
    this.#view.setUint8(this.#offset++, n);
    return this;
  }

  addUint16(n: number): Writer {
    this.#ensure(2);
    this.#view.setUint16(this.#offset, n);
    this.#offset += 2;
    return this;
  }

  addUint32(n: number): Writer {
    this.#ensure(4);
    this.#view.setUint32(this.#offset, n);
    this.#offset += 4;
    return this;
  }

  addInt32(n: number): Writer {
    this.#ensure(4);
    this.#view.setInt32(this.#offset, n);
    this.#offset += 4;
    return this;
  }

  /** An unsigned 64-bit integer from a safe JavaScript integer. */
  addUint64(n: number): Writer {
    this.#ensure(8);
    this.#view.setUint32(this.#offset, Math.floor(n / 0x1_0000_0000));
    this.#view.setUint32(this.#offset + 4, n >>> 0);
    this.#offset += 8;
    return this;
  }

  /** str8: one length byte, then that many bytes of UTF-8. */
  addString8(s: string): Writer {
    const bytes = encoder.encode(s);
    if (bytes.length > 255) {
      throw new RangeError(`Cannot write string of ${bytes.length} bytes: str8 holds 255`);
    }
    this.addUint8(bytes.length);
    return this.addBytes(bytes);
  }

  addBytes(bytes: Uint8Array): Writer {
    this.#ensure(bytes.length);
    this.#buffer.set(bytes, this.#offset);
    this.#offset += bytes.length;
    return this;
  }

  /** How many body bytes were written so far. */
  get written(): number {
    return this.#offset - HEADER_SIZE;
  }

  /** Body bytes written so far (a copy), without a header. */
  body(): Uint8Array {
    return this.#buffer.slice(HEADER_SIZE, this.#offset);
  }

  /**
   * Fills in the header and returns header + body + room for the MAC (zeros), then resets the
   * writer for the next frame.
   */
  frame(header: FrameHeader): Uint8Array {
    const bodyLength = this.#offset - HEADER_SIZE;
    if (bodyLength > MAX_BODY_SIZE) {
      this.#offset = HEADER_SIZE;
      throw new FrameError(
        `Cannot write body of ${bodyLength} bytes: limit ${MAX_BODY_SIZE}`,
        Status.MalformedBody,
        false,
      );
    }
    const out = new Uint8Array(this.#offset + MAC_SIZE);
    out.set(this.#buffer.subarray(0, this.#offset));
    const view = new DataView(out.buffer);
    out[0] = MAGIC_0;
    out[1] = MAGIC_1;
    out[2] = PROTOCOL_VERSION;
    out[3] = header.type;
    view.setUint32(4, header.terminalId);
    view.setUint32(8, header.sequence);
    view.setUint32(12, header.timestamp);
    view.setUint16(16, bodyLength);
    this.#offset = HEADER_SIZE;
    return out;
  }
}
