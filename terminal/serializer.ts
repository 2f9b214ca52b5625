/** Encodes messages into frame bodies and seals frames with their MAC. */
import { createHmac } from "node:crypto";
import { Writer } from "./buffer_writer.ts";
import {
  type BlocklistDelta,
  type FrameHeader,
  hexCode,
  MAC_SIZE,
  type Message,
  MessageCode,
} from "./messages.ts";

/** The MAC of a frame: HMAC-SHA256 under the terminal key over every byte before it, first 16 bytes. */
export function computeMac(key: Uint8Array, signed: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac("sha256", key).update(signed).digest().subarray(0, MAC_SIZE));
}

/** Compares two MACs in time independent of where they differ. */
export function macEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function writeDelta(writer: Writer, delta: BlocklistDelta): void {
  writer.addUint32(delta.version).addUint8(delta.complete ? 1 : 0);
  writer.addUint16(delta.added.length);
  for (const chip of delta.added) writer.addString8(chip);
  writer.addUint16(delta.removed.length);
  for (const chip of delta.removed) writer.addString8(chip);
}

/** Writes a message's body into `writer`. */
export function writeBody(writer: Writer, message: Message): Writer {
  switch (message.code) {
    case MessageCode.SignOn:
      return writer.addString8(message.firmware);
    case MessageCode.Heartbeat:
      return writer.addUint32(message.blocklistVersion).addUint16(message.offlineCount);
    case MessageCode.CardPayment:
      return writer.addString8(message.chip).addUint32(message.amount).addString8(message.password);
    case MessageCode.QrPayment:
      return writer.addString8(message.paymentCode).addUint32(message.amount);
    case MessageCode.BalanceInquiry:
    case MessageCode.ShowerStart:
      return writer.addString8(message.chip);
    case MessageCode.ShowerEnd:
      return writer.addUint64(message.holdId).addUint32(message.units);
    case MessageCode.Reversal:
      return writer.addUint32(message.originalSequence);
    case MessageCode.BlocklistSync:
      return writer.addUint32(message.fromVersion);
    case MessageCode.OfflineUpload:
    case MessageCode.OfflineUploadItemized:
    case MessageCode.OfflineUploadMixed:
      writer.addUint8(message.records.length);
      for (const r of message.records) {
        writer.addUint32(r.offlineSequence).addUint32(r.occurredAt).addString8(r.chip).addUint32(
          r.amount,
        );
        if (message.code === MessageCode.OfflineUploadMixed) writer.addString8(r.paymentCode ?? "");
      }
      return writer;
    case MessageCode.Error:
      return writer.addUint16(message.status).addUint32(message.serverTime);
    case MessageCode.SignOnReply:
      return writer.addUint16(message.status).addUint32(message.serverTime).addString8(
        message.merchantName,
      ).addUint32(
        message.blocklistVersion,
      )
        .addUint32(message.offlinePaymentLimit).addUint32(message.offlineTotalLimit).addUint16(
          message.offlineMaxRecords,
        )
        .addUint32(message.passwordThreshold).addUint32(message.showerUnitPrice).addString8(
          message.showerUnit,
        )
        .addUint32(message.showerHoldAmount).addUint16(message.heartbeatSeconds);
    case MessageCode.HeartbeatReply:
      writer.addUint16(message.status).addUint32(message.serverTime).addUint8(
        message.uploadOffline ? 1 : 0,
      );
      writeDelta(writer, message.blocklist);
      return writer;
    case MessageCode.CardPaymentReply:
      return writer.addUint16(message.status).addUint32(message.amount).addInt32(message.balance)
        .addUint8(message.triesLeft)
        .addUint32(message.retryAfter);
    case MessageCode.QrPaymentReply:
      return writer.addUint16(message.status).addUint32(message.amount).addInt32(message.balance);
    case MessageCode.BalanceInquiryReply:
      return writer.addUint16(message.status).addInt32(message.balance).addInt32(message.available)
        .addString8(message.name);
    case MessageCode.ShowerStartReply:
      return writer.addUint16(message.status).addUint64(message.holdId).addUint32(
        message.authorised,
      ).addInt32(message.balance);
    case MessageCode.ShowerEndReply:
      return writer.addUint16(message.status).addUint32(message.charged).addUint32(message.released)
        .addInt32(message.balance);
    case MessageCode.ReversalReply:
      return writer.addUint16(message.status).addUint32(message.originalSequence).addUint32(
        message.amount,
      ).addInt32(
        message.balance,
      );
    case MessageCode.BlocklistSyncReply:
      writer.addUint16(message.status);
      writeDelta(writer, message.blocklist);
      return writer;
    case MessageCode.BlocklistPush:
      writer.addUint32(message.fromVersion);
      writeDelta(writer, message.blocklist);
      return writer;
    case MessageCode.OfflineUploadReply:
      return writer.addUint16(message.status).addUint32(message.ackedSequence).addUint8(
        message.applied,
      ).addUint8(
        message.duplicates,
      );
    case MessageCode.OfflineUploadItemizedReply:
    case MessageCode.OfflineUploadMixedReply:
      writer.addUint16(message.status).addUint32(message.ackedSequence).addUint8(
        message.duplicates,
      );
      writer.addUint8(message.results.length);
      for (const r of message.results) {
        writer.addUint32(r.offlineSequence).addUint16(r.result).addUint32(r.charged);
      }
      return writer;
    default:
      throw new Error(
        `Cannot serialize message ${hexCode((message as { code: number }).code)}: unknown code`,
      );
  }
}

/** Where a number field of a body is written: its offset in the body and its width, big-endian. */
export interface BodySlot {
  offset: number;
  bytes: 4 | 8;
}

/** A writer that notes where each 4- and 8-byte number goes. */
class SlotWriter extends Writer {
  readonly slots: BodySlot[] = [];
  override addUint32(n: number): Writer {
    this.slots.push({ offset: this.written, bytes: 4 });
    return super.addUint32(n);
  }
  override addInt32(n: number): Writer {
    this.slots.push({ offset: this.written, bytes: 4 });
    return super.addInt32(n);
  }
  override addUint64(n: number): Writer {
    this.slots.push({ offset: this.written, bytes: 8 });
    return super.addUint64(n);
  }
}

/**
 * Where `writeBody` puts the number field `field` of `message` (4 or 8 bytes, big-endian; an i32 in
 * two's complement). For a reply whose fields SQL fills in, in the statement that moves the money
 * (repository.ts): the offsets come from here, the one place that knows the layout. Found by
 * writing the body with the field at 0 and at 1 and taking the number written where they differ.
 */
export function bodySlot(message: Message, field: string): BodySlot {
  const write = (value: number) => {
    const writer = new SlotWriter(64);
    writeBody(writer, { ...message, [field]: value } as Message);
    return { slots: writer.slots, body: writer.body() };
  };
  const zero = write(0);
  const one = write(1).body;
  const at = zero.body.findIndex((b, i) => b !== one[i]);
  const slot = zero.slots.find((s) => s.offset <= at && at < s.offset + s.bytes);
  if (at < 0 || !slot || typeof (message as Record<string, unknown>)[field] !== "number") {
    throw new Error(`Cannot find number field ${field} in the body of ${hexCode(message.code)}`);
  }
  return slot;
}

const shared = new Writer(512);

/** The body bytes of a message. */
export function serializeBody(message: Message): Uint8Array {
  writeBody(shared, message);
  const body = shared.body();
  shared.frame({ type: 0, terminalId: 0, sequence: 0, timestamp: 0 });
  return body;
}

/** A whole frame: header from `header` (its type is the message code), body, MAC under `key`. */
export function encodeFrame(
  key: Uint8Array,
  header: Omit<FrameHeader, "type">,
  message: Message,
): Uint8Array {
  writeBody(shared, message);
  const out = shared.frame({ ...header, type: message.code });
  out.set(computeMac(key, out.subarray(0, out.length - MAC_SIZE)), out.length - MAC_SIZE);
  return out;
}

/** A frame around an already encoded body (stored replies are rebuilt this way). */
export function sealFrame(key: Uint8Array, header: FrameHeader, body: Uint8Array): Uint8Array {
  shared.addBytes(body);
  const out = shared.frame(header);
  out.set(computeMac(key, out.subarray(0, out.length - MAC_SIZE)), out.length - MAC_SIZE);
  return out;
}

/** A frame whose MAC is left as zeros: only for Error replies to frames whose key is unknown. */
export function encodeUnsealedFrame(
  header: Omit<FrameHeader, "type">,
  message: Message,
): Uint8Array {
  writeBody(shared, message);
  return shared.frame({ ...header, type: message.code });
}
