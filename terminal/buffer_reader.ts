/**
 * A cursor over one frame body: each read moves the offset, and reading past the end throws a
 * FrameError (MalformedBody) instead of returning garbage — pg-protocol's BufferReader shape.
 */
import { FrameError, MAX_STRING_BYTES, Status } from "./messages.ts";

const decoder = new TextDecoder("utf-8", { fatal: true });
const looseDecoder = new TextDecoder("utf-8");

export class BufferReader {
  #buffer: Uint8Array = new Uint8Array(0);
  #view: DataView = new DataView(this.#buffer.buffer);
  offset = 0;

  setBuffer(buffer: Uint8Array, offset = 0): void {
    this.#buffer = buffer;
    this.#view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    this.offset = offset;
  }

  #need(n: number): void {
    if (this.offset + n > this.#buffer.length) {
      throw new FrameError(
        `Cannot read ${n} bytes at offset ${this.offset}: body has ${this.#buffer.length}`,
        Status.MalformedBody,
        false,
      );
    }
  }

  uint8(): number {
    this.#need(1);
    return this.#view.getUint8(this.offset++);
  }

  uint16(): number {
    this.#need(2);
    const n = this.#view.getUint16(this.offset);
    this.offset += 2;
    return n;
  }

  uint32(): number {
    this.#need(4);
    const n = this.#view.getUint32(this.offset);
    this.offset += 4;
    return n;
  }

  int32(): number {
    this.#need(4);
    const n = this.#view.getInt32(this.offset);
    this.offset += 4;
    return n;
  }

  /** Unsigned 64-bit; values beyond 2^53 are refused rather than rounded. */
  uint64(): number {
    this.#need(8);
    const hi = this.#view.getUint32(this.offset);
    const lo = this.#view.getUint32(this.offset + 4);
    this.offset += 8;
    if (hi > 0x1f_ffff) {
      throw new FrameError("Cannot read uint64 above 2^53", Status.MalformedBody, false);
    }
    return hi * 0x1_0000_0000 + lo;
  }

  /** str8: a length byte and UTF-8; at most MAX_STRING_BYTES. */
  string8(): string {
    const bytes = this.#bytes8();
    try {
      return decoder.decode(bytes);
    } catch {
      throw new FrameError("Cannot read string: not UTF-8", Status.MalformedBody, false);
    }
  }

  /**
   * str8 read whatever its bytes are: bytes that are not UTF-8 become U+FFFD. For fields whose
   * content the service judges (an offline record's chip, PROTOCOL.md §4.11), so one odd record
   * cannot make a whole upload malformed.
   */
  looseString8(): string {
    return looseDecoder.decode(this.#bytes8());
  }

  #bytes8(): Uint8Array {
    const length = this.uint8();
    if (length > MAX_STRING_BYTES) {
      throw new FrameError(
        `Cannot read string of ${length} bytes: limit ${MAX_STRING_BYTES}`,
        Status.MalformedBody,
        false,
      );
    }
    this.#need(length);
    const start = this.offset;
    this.offset += length;
    return this.#buffer.subarray(start, this.offset);
  }

  /** Throws unless the whole body was read: trailing bytes are a malformed body. */
  end(): void {
    if (this.offset !== this.#buffer.length) {
      throw new FrameError(
        `Cannot accept body: ${this.#buffer.length - this.offset} trailing bytes`,
        Status.MalformedBody,
        false,
      );
    }
  }
}
