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

const shared = new BufferReader();

function readDelta(reader: BufferReader): BlocklistDelta {
  const version = reader.uint32();
  const complete = reader.uint8() === 1;
  const added = readChips(reader);
  const removed = readChips(reader);
  if (added.length + removed.length > MAX_BLOCKLIST_ENTRIES) {
    throw new FrameError(
      "Cannot read blocklist delta: too many entries",
      Status.MalformedBody,
      false,
    );
  }
  return { version, complete, added, removed };
}

function readChips(reader: BufferReader): string[] {
  const n = reader.uint16();
  if (n > MAX_BLOCKLIST_ENTRIES) {
    throw new FrameError("Cannot read chip list: too many entries", Status.MalformedBody, false);
  }
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(reader.string8());
  return out;
}

/** A chip number of a request: any other byte (NUL, lower case, punctuation) is malformed. */
function readChip(reader: BufferReader): string {
  const chip = reader.string8();
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
  const reader = shared;
  reader.setBuffer(body);
  const m = readMessage(code, reader);
  reader.end();
  return m;
}

function readMessage(code: number, reader: BufferReader): Message {
  switch (code) {
    case MessageCode.SignOn:
      return { code, firmware: reader.string8() };
    case MessageCode.Heartbeat:
      return { code, blocklistVersion: reader.uint32(), offlineCount: reader.uint16() };
    case MessageCode.CardPayment:
      return { code, chip: readChip(reader), amount: reader.uint32(), password: reader.string8() };
    case MessageCode.QrPayment:
      return { code, paymentCode: reader.string8(), amount: reader.uint32() };
    case MessageCode.BalanceInquiry:
    case MessageCode.ShowerStart:
      return { code, chip: readChip(reader) };
    case MessageCode.ShowerEnd:
      return { code, holdId: reader.uint64(), units: reader.uint32() };
    case MessageCode.Reversal:
      return { code, originalSequence: reader.uint32() };
    case MessageCode.BlocklistSync:
      return { code, fromVersion: reader.uint32() };
    case MessageCode.OfflineUpload:
    case MessageCode.OfflineUploadItemized:
    case MessageCode.OfflineUploadMixed: {
      const n = reader.uint8();
      if (n === 0 || n > MAX_OFFLINE_BATCH) {
        throw new FrameError(
          `Cannot read offline batch of ${n} records: 1 to ${MAX_OFFLINE_BATCH}`,
          Status.MalformedBody,
          false,
        );
      }
      const records: OfflineRecord[] = [];
      for (let i = 0; i < n; i++) {
        const record: OfflineRecord = {
          offlineSequence: reader.uint32(),
          occurredAt: reader.uint32(),
          // Any bytes: a record's chip outside the format is its result, UnknownChip (§4.11).
          chip: reader.looseString8(),
          amount: reader.uint32(),
        };
        // Any bytes too: a code that is not one of ours is its result, CodeInvalid.
        if (code === MessageCode.OfflineUploadMixed) record.paymentCode = reader.looseString8();
        records.push(record);
      }
      return { code, records };
    }
    case MessageCode.Error:
      return { code, status: reader.uint16(), serverTime: reader.uint32() };
    case MessageCode.SignOnReply:
      return {
        code,
        status: reader.uint16(),
        serverTime: reader.uint32(),
        merchantName: reader.string8(),
        blocklistVersion: reader.uint32(),
        offlinePaymentLimit: reader.uint32(),
        offlineTotalLimit: reader.uint32(),
        offlineMaxRecords: reader.uint16(),
        passwordThreshold: reader.uint32(),
        showerUnitPrice: reader.uint32(),
        showerUnit: reader.string8(),
        showerHoldAmount: reader.uint32(),
        heartbeatSeconds: reader.uint16(),
      };
    case MessageCode.HeartbeatReply:
      return {
        code,
        status: reader.uint16(),
        serverTime: reader.uint32(),
        uploadOffline: reader.uint8() === 1,
        blocklist: readDelta(reader),
      };
    case MessageCode.CardPaymentReply:
      return {
        code,
        status: reader.uint16(),
        amount: reader.uint32(),
        balance: reader.int32(),
        triesLeft: reader.uint8(),
        retryAfter: reader.uint32(),
      };
    case MessageCode.QrPaymentReply:
      return { code, status: reader.uint16(), amount: reader.uint32(), balance: reader.int32() };
    case MessageCode.BalanceInquiryReply:
      return {
        code,
        status: reader.uint16(),
        balance: reader.int32(),
        available: reader.int32(),
        name: reader.string8(),
      };
    case MessageCode.ShowerStartReply:
      return {
        code,
        status: reader.uint16(),
        holdId: reader.uint64(),
        authorised: reader.uint32(),
        balance: reader.int32(),
      };
    case MessageCode.ShowerEndReply:
      return {
        code,
        status: reader.uint16(),
        charged: reader.uint32(),
        released: reader.uint32(),
        balance: reader.int32(),
      };
    case MessageCode.ReversalReply:
      return {
        code,
        status: reader.uint16(),
        originalSequence: reader.uint32(),
        amount: reader.uint32(),
        balance: reader.int32(),
      };
    case MessageCode.BlocklistSyncReply:
      return { code, status: reader.uint16(), blocklist: readDelta(reader) };
    case MessageCode.BlocklistPush:
      return { code, fromVersion: reader.uint32(), blocklist: readDelta(reader) };
    case MessageCode.OfflineUploadReply:
      return {
        code,
        status: reader.uint16(),
        ackedSequence: reader.uint32(),
        applied: reader.uint8(),
        duplicates: reader.uint8(),
      };
    case MessageCode.OfflineUploadItemizedReply:
    case MessageCode.OfflineUploadMixedReply: {
      const head = {
        code,
        status: reader.uint16(),
        ackedSequence: reader.uint32(),
        duplicates: reader.uint8(),
      };
      const n = reader.uint8();
      const results: OfflineResult[] = [];
      for (let i = 0; i < n; i++) {
        results.push({
          offlineSequence: reader.uint32(),
          result: reader.uint16(),
          charged: reader.uint32(),
        });
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
