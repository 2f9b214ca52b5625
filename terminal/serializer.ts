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

function writeDelta(w: Writer, d: BlocklistDelta): void {
  w.addUint32(d.version).addUint8(d.complete ? 1 : 0);
  w.addUint16(d.added.length);
  for (const chip of d.added) w.addString8(chip);
  w.addUint16(d.removed.length);
  for (const chip of d.removed) w.addString8(chip);
}

/** Writes a message's body into `w`. */
export function writeBody(w: Writer, m: Message): Writer {
  switch (m.code) {
    case MessageCode.SignOn:
      return w.addString8(m.firmware);
    case MessageCode.Heartbeat:
      return w.addUint32(m.blocklistVersion).addUint16(m.offlineCount);
    case MessageCode.CardPayment:
      return w.addString8(m.chip).addUint32(m.amount).addString8(m.password);
    case MessageCode.QrPayment:
      return w.addString8(m.paymentCode).addUint32(m.amount);
    case MessageCode.BalanceInquiry:
    case MessageCode.ShowerStart:
      return w.addString8(m.chip);
    case MessageCode.ShowerEnd:
      return w.addUint64(m.holdId).addUint32(m.units);
    case MessageCode.Reversal:
      return w.addUint32(m.originalSequence);
    case MessageCode.BlocklistSync:
      return w.addUint32(m.fromVersion);
    case MessageCode.OfflineUpload:
    case MessageCode.OfflineUploadItemized:
      w.addUint8(m.records.length);
      for (const r of m.records) {
        w.addUint32(r.offlineSequence).addUint32(r.occurredAt).addString8(r.chip).addUint32(
          r.amount,
        );
      }
      return w;
    case MessageCode.Error:
      return w.addUint16(m.status).addUint32(m.serverTime);
    case MessageCode.SignOnReply:
      return w.addUint16(m.status).addUint32(m.serverTime).addString8(m.merchantName).addUint32(
        m.blocklistVersion,
      )
        .addUint32(m.offlinePaymentLimit).addUint32(m.offlineTotalLimit).addUint16(
          m.offlineMaxRecords,
        )
        .addUint32(m.passwordThreshold).addUint32(m.showerUnitPrice).addString8(m.showerUnit)
        .addUint32(m.showerHoldAmount).addUint16(m.heartbeatSeconds);
    case MessageCode.HeartbeatReply:
      w.addUint16(m.status).addUint32(m.serverTime).addUint8(m.uploadOffline ? 1 : 0);
      writeDelta(w, m.blocklist);
      return w;
    case MessageCode.CardPaymentReply:
      return w.addUint16(m.status).addUint32(m.amount).addInt32(m.balance).addUint8(m.triesLeft)
        .addUint32(m.retryAfter);
    case MessageCode.QrPaymentReply:
      return w.addUint16(m.status).addUint32(m.amount).addInt32(m.balance);
    case MessageCode.BalanceInquiryReply:
      return w.addUint16(m.status).addInt32(m.balance).addInt32(m.available).addString8(m.name);
    case MessageCode.ShowerStartReply:
      return w.addUint16(m.status).addUint64(m.holdId).addUint32(m.authorised).addInt32(m.balance);
    case MessageCode.ShowerEndReply:
      return w.addUint16(m.status).addUint32(m.charged).addUint32(m.released).addInt32(m.balance);
    case MessageCode.ReversalReply:
      return w.addUint16(m.status).addUint32(m.originalSequence).addUint32(m.amount).addInt32(
        m.balance,
      );
    case MessageCode.BlocklistSyncReply:
      w.addUint16(m.status);
      writeDelta(w, m.blocklist);
      return w;
    case MessageCode.BlocklistPush:
      w.addUint32(m.fromVersion);
      writeDelta(w, m.blocklist);
      return w;
    case MessageCode.OfflineUploadReply:
      return w.addUint16(m.status).addUint32(m.ackedSequence).addUint8(m.applied).addUint8(
        m.duplicates,
      );
    case MessageCode.OfflineUploadItemizedReply:
      w.addUint16(m.status).addUint32(m.ackedSequence).addUint8(m.duplicates);
      w.addUint8(m.results.length);
      for (const r of m.results) {
        w.addUint32(r.offlineSequence).addUint16(r.result).addUint32(r.charged);
      }
      return w;
    default:
      throw new Error(
        `Cannot serialize message ${hexCode((m as { code: number }).code)}: unknown code`,
      );
  }
}

const shared = new Writer(512);

/** The body bytes of a message. */
export function serializeBody(m: Message): Uint8Array {
  writeBody(shared, m);
  const body = shared.body();
  shared.frame({ type: 0, terminalId: 0, sequence: 0, timestamp: 0 });
  return body;
}

/** A whole frame: header from `header` (its type is the message code), body, MAC under `key`. */
export function encodeFrame(
  key: Uint8Array,
  header: Omit<FrameHeader, "type">,
  m: Message,
): Uint8Array {
  writeBody(shared, m);
  const out = shared.frame({ ...header, type: m.code });
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
export function encodeUnsealedFrame(header: Omit<FrameHeader, "type">, m: Message): Uint8Array {
  writeBody(shared, m);
  return shared.frame({ ...header, type: m.code });
}
