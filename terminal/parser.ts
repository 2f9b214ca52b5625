/**
 * Turns a byte stream into frames. Keeps the bytes of an incomplete frame for the next chunk and
 * hands on only complete frames; the buffer never grows past one maximum-size frame plus one
 * read. Header faults that make the stream unframeable (magic, version, length) throw a
 * FrameError with `close` set.
 */
import { BufferReader } from "./buffer_reader.ts";
import {
  type BlocklistDelta,
  FrameError,
  type FrameHeader,
  HEADER_SIZE,
  hexCode,
  isChipNumber,
  MAC_SIZE,
  MAGIC_0,
  MAGIC_1,
  MAX_BLOCKLIST_ENTRIES,
  MAX_BODY_SIZE,
  MAX_OFFLINE_BATCH,
  type Message,
  MessageCode,
  messageName,
  type OfflineRecord,
  type OfflineResult,
  PROTOCOL_VERSION,
  Status,
} from "./messages.ts";

/** A complete frame as it came off the wire: header, body, MAC and the bytes the MAC covers. */
export interface RawFrame extends FrameHeader {
  body: Uint8Array;
  mac: Uint8Array;
  /** Header and body: what the MAC is computed over. */
  signed: Uint8Array;
}

const EMPTY = new Uint8Array(0);

export class Parser {
  #buffer: Uint8Array = EMPTY;
  #length = 0;
  #offset = 0;

  /** Bytes held for an incomplete frame. */
  get buffered(): number {
    return this.#length - this.#offset;
  }

  /** Feeds a chunk; calls `callback` once per complete frame, in order. */
  parse(chunk: Uint8Array, callback: (frame: RawFrame) => void): void {
    this.#merge(chunk);
    while (this.#length - this.#offset >= 1) {
      const frameLength = this.#checkHeader();
      if (frameLength === null || this.#length - this.#offset < frameLength) break;
      const start = this.#offset;
      // A copy: handling is asynchronous and the buffer is reused for the next chunk.
      const bytes = this.#buffer.slice(start, start + frameLength);
      this.#offset += frameLength;
      const view = new DataView(bytes.buffer);
      callback({
        type: bytes[3],
        terminalId: view.getUint32(4),
        sequence: view.getUint32(8),
        timestamp: view.getUint32(12),
        body: bytes.subarray(HEADER_SIZE, frameLength - MAC_SIZE),
        mac: bytes.subarray(frameLength - MAC_SIZE),
        signed: bytes.subarray(0, frameLength - MAC_SIZE),
      });
    }
    if (this.#offset === this.#length) {
      this.#buffer = EMPTY;
      this.#offset = 0;
      this.#length = 0;
      this.#owned = false;
    } else if (!this.#owned) {
      // The tail still points into the caller's chunk, which it may reuse for its next read.
      this.#buffer = this.#buffer.slice(this.#offset, this.#length);
      this.#length -= this.#offset;
      this.#offset = 0;
      this.#owned = true;
    }
  }

  /** Validates as much of the header as has arrived; returns the frame length once known. */
  #checkHeader(): number | null {
    const b = this.#buffer;
    const at = this.#offset;
    const have = this.#length - at;
    if (b[at] !== MAGIC_0 || (have >= 2 && b[at + 1] !== MAGIC_1)) {
      throw new FrameError("Cannot frame stream: bad magic", Status.MalformedBody, true);
    }
    if (have >= 3 && b[at + 2] !== PROTOCOL_VERSION) {
      throw new FrameError(
        `Cannot frame stream: unsupported version ${hexCode(b[at + 2])}`,
        Status.MalformedBody,
        true,
      );
    }
    if (have < HEADER_SIZE) return null;
    const bodyLength = (b[at + 16] << 8) | b[at + 17];
    if (bodyLength > MAX_BODY_SIZE) {
      throw new FrameError(
        `Cannot accept body of ${bodyLength} bytes: limit ${MAX_BODY_SIZE}`,
        Status.MalformedBody,
        true,
      );
    }
    return HEADER_SIZE + bodyLength + MAC_SIZE;
  }

  #merge(chunk: Uint8Array): void {
    if (this.#length === this.#offset) {
      // Nothing held: parse straight from the chunk, copying only when a tail remains.
      this.#buffer = chunk;
      this.#offset = 0;
      this.#length = chunk.length;
      this.#owned = false;
      return;
    }
    const remaining = this.#length - this.#offset;
    const needed = remaining + chunk.length;
    if (this.#owned && needed <= this.#buffer.length) {
      if (this.#offset > 0) this.#buffer.copyWithin(0, this.#offset, this.#length);
    } else {
      const next = new Uint8Array(Math.max(needed, 1024));
      next.set(this.#buffer.subarray(this.#offset, this.#length));
      this.#buffer = next;
      this.#owned = true;
    }
    this.#buffer.set(chunk, remaining);
    this.#offset = 0;
    this.#length = needed;
  }

  #owned = false;
}

const reader = new BufferReader();

function readDelta(r: BufferReader): BlocklistDelta {
  const version = r.uint32();
  const complete = r.uint8() === 1;
  const added = readChips(r);
  const removed = readChips(r);
  if (added.length + removed.length > MAX_BLOCKLIST_ENTRIES) {
    throw new FrameError(
      "Cannot read blocklist delta: too many entries",
      Status.MalformedBody,
      false,
    );
  }
  return { version, complete, added, removed };
}

function readChips(r: BufferReader): string[] {
  const n = r.uint16();
  if (n > MAX_BLOCKLIST_ENTRIES) {
    throw new FrameError("Cannot read chip list: too many entries", Status.MalformedBody, false);
  }
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(r.string8());
  return out;
}

/** A chip number of a request: any other byte (NUL, lower case, punctuation) is malformed. */
function readChip(r: BufferReader): string {
  const chip = r.string8();
  if (!isChipNumber(chip)) {
    throw new FrameError(
      `Cannot read chip number of ${chip.length} characters: 4 to 20 of 0-9A-Z`,
      Status.MalformedBody,
      false,
    );
  }
  return chip;
}

/** Decodes a body by its message code. Unknown codes fail with the code in hex. */
export function parseBody(code: number, body: Uint8Array): Message {
  const r = reader;
  r.setBuffer(body);
  const m = readMessage(code, r);
  r.end();
  return m;
}

function readMessage(code: number, r: BufferReader): Message {
  switch (code) {
    case MessageCode.SignOn:
      return { code, firmware: r.string8() };
    case MessageCode.Heartbeat:
      return { code, blocklistVersion: r.uint32(), offlineCount: r.uint16() };
    case MessageCode.CardPayment:
      return { code, chip: readChip(r), amount: r.uint32(), password: r.string8() };
    case MessageCode.QrPayment:
      return { code, paymentCode: r.string8(), amount: r.uint32() };
    case MessageCode.BalanceInquiry:
    case MessageCode.ShowerStart:
      return { code, chip: readChip(r) };
    case MessageCode.ShowerEnd:
      return { code, holdId: r.uint64(), units: r.uint32() };
    case MessageCode.Reversal:
      return { code, originalSequence: r.uint32() };
    case MessageCode.BlocklistSync:
      return { code, fromVersion: r.uint32() };
    case MessageCode.OfflineUpload:
    case MessageCode.OfflineUploadItemized: {
      const n = r.uint8();
      if (n === 0 || n > MAX_OFFLINE_BATCH) {
        throw new FrameError(
          `Cannot read offline batch of ${n} records: 1 to ${MAX_OFFLINE_BATCH}`,
          Status.MalformedBody,
          false,
        );
      }
      const records: OfflineRecord[] = [];
      for (let i = 0; i < n; i++) {
        records.push({
          offlineSequence: r.uint32(),
          occurredAt: r.uint32(),
          // Any bytes: a record's chip outside the format is its result, UnknownChip (§4.11).
          chip: r.looseString8(),
          amount: r.uint32(),
        });
      }
      return { code, records };
    }
    case MessageCode.Error:
      return { code, status: r.uint16(), serverTime: r.uint32() };
    case MessageCode.SignOnReply:
      return {
        code,
        status: r.uint16(),
        serverTime: r.uint32(),
        merchantName: r.string8(),
        blocklistVersion: r.uint32(),
        offlinePaymentLimit: r.uint32(),
        offlineTotalLimit: r.uint32(),
        offlineMaxRecords: r.uint16(),
        passwordThreshold: r.uint32(),
        showerUnitPrice: r.uint32(),
        showerUnit: r.string8(),
        showerHoldAmount: r.uint32(),
        heartbeatSeconds: r.uint16(),
      };
    case MessageCode.HeartbeatReply:
      return {
        code,
        status: r.uint16(),
        serverTime: r.uint32(),
        uploadOffline: r.uint8() === 1,
        blocklist: readDelta(r),
      };
    case MessageCode.CardPaymentReply:
      return {
        code,
        status: r.uint16(),
        amount: r.uint32(),
        balance: r.int32(),
        triesLeft: r.uint8(),
        retryAfter: r.uint32(),
      };
    case MessageCode.QrPaymentReply:
      return { code, status: r.uint16(), amount: r.uint32(), balance: r.int32() };
    case MessageCode.BalanceInquiryReply:
      return {
        code,
        status: r.uint16(),
        balance: r.int32(),
        available: r.int32(),
        name: r.string8(),
      };
    case MessageCode.ShowerStartReply:
      return {
        code,
        status: r.uint16(),
        holdId: r.uint64(),
        authorised: r.uint32(),
        balance: r.int32(),
      };
    case MessageCode.ShowerEndReply:
      return {
        code,
        status: r.uint16(),
        charged: r.uint32(),
        released: r.uint32(),
        balance: r.int32(),
      };
    case MessageCode.ReversalReply:
      return {
        code,
        status: r.uint16(),
        originalSequence: r.uint32(),
        amount: r.uint32(),
        balance: r.int32(),
      };
    case MessageCode.BlocklistSyncReply:
      return { code, status: r.uint16(), blocklist: readDelta(r) };
    case MessageCode.BlocklistPush:
      return { code, fromVersion: r.uint32(), blocklist: readDelta(r) };
    case MessageCode.OfflineUploadReply:
      return {
        code,
        status: r.uint16(),
        ackedSequence: r.uint32(),
        applied: r.uint8(),
        duplicates: r.uint8(),
      };
    case MessageCode.OfflineUploadItemizedReply: {
      const head = { code, status: r.uint16(), ackedSequence: r.uint32(), duplicates: r.uint8() };
      const n = r.uint8();
      const results: OfflineResult[] = [];
      for (let i = 0; i < n; i++) {
        results.push({ offlineSequence: r.uint32(), result: r.uint16(), charged: r.uint32() });
      }
      return { ...head, results };
    }
    default:
      throw new FrameError(
        `Cannot decode message ${hexCode(code)}: unknown type`,
        Status.UnknownType,
        false,
      );
  }
}

/** True for a code the protocol defines. */
export function isKnownCode(code: number): boolean {
  return messageName(code) !== undefined;
}
