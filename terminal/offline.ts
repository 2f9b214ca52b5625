/**
 * Offline uploads (PROTOCOL.md §4.11): the payments a POS accepted while it could not reach the
 * server, acknowledged in the reader's own offline sequence, each once. The server trusts none of
 * them beyond its key: each record is checked against what SignOn announced (per-record limit,
 * password threshold, what the reader held at once), against time, and against the chip's state
 * when it was paid. A record that passes is charged; one that fails is acknowledged, charged
 * nothing, and filed for 财务处's review (finance may still charge it, under the same reference).
 */
import { logger } from "../modules/platform/log.ts";
import type { Terminal } from "../modules/merchant/mod.ts";
import { blocklistedAt, findCardByChip } from "../modules/card/mod.ts";
import { applyOfflinePayment } from "../modules/wallet/mod.ts";
import { fileOfflineReview, type OfflineReviewReason } from "../modules/finance/mod.ts";
import {
  isChipNumber,
  type Message,
  MessageCode,
  type MessageOf,
  type OfflineRecord,
  type OfflineResult,
  Status,
} from "./messages.ts";
import type { RawFrame } from "./parser.ts";
import {
  heldBlocklistVersion,
  offlineAcked,
  offlineHeldAt,
  offlineResults,
  saveBlocklistAck,
  saveOfflineRecord,
} from "./repository.ts";
import type { ServiceContext } from "./context.ts";
import type { MoneyRequest, Outcome } from "./once.ts";
import type { ProtocolSettings } from "./settings.ts";

const log = logger("terminal.offline");

/** The ledger reference of an offline record: unique per (terminal, offline sequence). */
export function offlineReference(terminalId: number, offlineSequence: number): string {
  return `T${terminalId}:O${offlineSequence}`;
}

/**
 * An offline record's chip as the database keeps it (its record, finance's review): a chip number
 * as it is; anything else with every character outside printable ASCII, and the backslash, written
 * as `\u{hex}`, so that a text column can hold it (no NUL) and finance reads what arrived.
 */
export function storedChip(chip: string): string {
  if (isChipNumber(chip)) return chip;
  return chip.replace(/[^\x20-\x5b\x5d-\x7e]/gu, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}

/** Why a record is not charged: the reader's status and finance's reason. */
interface Refusal {
  status: number;
  reason: OfflineReviewReason;
}

const refusal = (status: number, reason: OfflineReviewReason): Refusal => ({ status, reason });

/**
 * The checks of §4.11 in their order; null when the record may be charged. `uploadedAt` is the
 * upload frame's timestamp (already within the clock window of server time); `ackedBefore` the
 * acknowledgement when this upload began.
 */
async function judge(
  ctx: ServiceContext,
  terminal: Terminal,
  record: OfflineRecord,
  input: { uploadedAt: number; ackedBefore: number },
): Promise<{ refusal: Refusal | null; cardAccountId: number | null }> {
  const s = ctx.settings;
  // Looked up first: finance needs the card of any refused record to charge it on review. A chip
  // outside the format (a NUL, lower case, …) is no card's and is never looked up: lower case is
  // not upper-cased into someone's card, and a NUL never reaches the database.
  const card = isChipNumber(record.chip) ? await findCardByChip(ctx.db, record.chip) : null;
  const cardAccountId = card?.cardAccountId ?? null;
  const none = (x: Refusal) => ({ refusal: x, cardAccountId });
  if (record.amount === 0) return none(refusal(Status.InvalidAmount, "invalid_amount"));
  if (record.amount > s.offlinePaymentLimit) {
    return none(refusal(Status.OfflineOverPaymentLimit, "over_payment_limit"));
  }
  if (record.amount > s.passwordThreshold) {
    return none(refusal(Status.OfflinePasswordRequired, "over_password_threshold"));
  }
  if (record.occurredAt > input.uploadedAt + s.timestampWindowSeconds) {
    return none(refusal(Status.OfflineTimeAhead, "future_time"));
  }
  if (record.occurredAt < input.uploadedAt - s.offlineMaxAgeSeconds) {
    return none(refusal(Status.OfflineTooOld, "too_old"));
  }
  const at = new Date(record.occurredAt * 1000);
  // What the reader held when it took this one: everything after the last record acknowledged
  // by then, this one included.
  const held = await offlineHeldAt(ctx.db, {
    terminalId: terminal.id,
    at,
    ackedBefore: input.ackedBefore,
  });
  if (record.offlineSequence - held.from > s.offlineMaxRecords) {
    return none(refusal(Status.OfflineOverRecordLimit, "over_record_limit"));
  }
  if (held.charged + record.amount > s.offlineTotalLimit) {
    return none(refusal(Status.OfflineOverTotalLimit, "over_total_limit"));
  }
  if (!card) return none(refusal(Status.UnknownChip, "unknown_chip"));
  const found = (x: Refusal | null) => ({ refusal: x, cardAccountId: card.cardAccountId });
  // A closed account's balance was paid out: nothing is charged to it without finance.
  if (card.cardStatus === "cancelled") {
    return found(refusal(Status.CardCancelled, "card_cancelled"));
  }
  // Paid before the chip went onto the blocklist: the holder's payment, whatever happened since.
  const listed = await blocklistedAt(ctx.db, record.chip, at);
  if (!listed) return found(null);
  const status = card.chipStatus === "cancelled" ? Status.ChipCancelled : Status.ChipLost;
  const known = await heldBlocklistVersion(ctx.db, {
    terminalId: terminal.id,
    version: listed.version,
    at,
  });
  if (!known) return found(refusal(status, "listed_not_yet_known"));
  return found(refusal(status, status === Status.ChipLost ? "chip_lost" : "chip_cancelled"));
}

/** OfflineUpload `0x50` and OfflineUploadItemized `0x51`: recorded once, as any money request. */
export const offlineUpload: MoneyRequest<MessageOf<0x50 | 0x51>> = { handle: acknowledge };

/** Acknowledges an upload's records (inside the request's transaction) and returns its reply. */
async function acknowledge(
  ctx: ServiceContext,
  terminal: Terminal,
  frame: RawFrame,
  upload: MessageOf<0x50 | 0x51>,
): Promise<Outcome> {
  const ackedBefore = await offlineAcked(ctx.db, terminal.id);
  let acked = ackedBefore;
  let duplicates = 0;
  let applied = 0;
  let total = 0;
  const results: OfflineResult[] = [];
  const records = [...upload.records].sort((a, b) => a.offlineSequence - b.offlineSequence);
  const earlier = await offlineResults(
    ctx.db,
    terminal.id,
    records.filter((r) => r.offlineSequence <= ackedBefore).map((r) => r.offlineSequence),
  );
  for (const r of records) {
    if (r.offlineSequence <= acked) {
      duplicates++;
      const first = earlier.get(r.offlineSequence) ??
        results.find((x) => x.offlineSequence === r.offlineSequence);
      results.push({
        offlineSequence: r.offlineSequence,
        result: first?.result ?? Status.Ok,
        charged: first?.charged ?? 0,
      });
      continue;
    }
    // A gap: what follows waits until the missing record arrives (the ack tells the reader).
    if (r.offlineSequence !== acked + 1) {
      results.push({
        offlineSequence: r.offlineSequence,
        result: Status.OfflineNotAcknowledged,
        charged: 0,
      });
      continue;
    }
    const verdict = await judge(ctx, terminal, r, { uploadedAt: frame.timestamp, ackedBefore });
    const reference = offlineReference(terminal.id, r.offlineSequence);
    const occurredAt = new Date(r.occurredAt * 1000);
    let balanceAfter: number | null = null;
    if (verdict.refusal === null) {
      const paid = await applyOfflinePayment(ctx.db, {
        cardAccountId: verdict.cardAccountId!,
        merchantId: terminal.merchantId,
        terminalId: terminal.id,
        amount: r.amount,
        reference,
        occurredAt,
      });
      balanceAfter = paid.balanceAfter;
      applied++;
      total += r.amount;
    } else {
      await fileOfflineReview(ctx.db, {
        reference,
        terminalId: terminal.id,
        terminalName: terminal.name,
        merchantId: terminal.merchantId,
        merchantName: terminal.merchantName,
        offlineSequence: r.offlineSequence,
        chip: storedChip(r.chip),
        cardAccountId: verdict.cardAccountId,
        amount: r.amount,
        occurredAt,
        reason: verdict.refusal.reason,
      });
      log.warn("offline record not charged, filed for review", {
        terminal: terminal.id,
        offlineSequence: r.offlineSequence,
        reason: verdict.refusal.reason,
      });
    }
    const charged = verdict.refusal === null ? r.amount : 0;
    const result = verdict.refusal?.status ?? Status.Ok;
    await saveOfflineRecord(ctx.db, {
      terminalId: terminal.id,
      offlineSequence: r.offlineSequence,
      occurredAt,
      chip: storedChip(r.chip),
      amount: r.amount,
      cardAccountId: verdict.cardAccountId,
      outcome: verdict.refusal === null ? "applied" : "held",
      result,
      charged,
      balanceAfter,
    });
    results.push({ offlineSequence: r.offlineSequence, result, charged });
    acked = r.offlineSequence;
  }
  const message: Message = upload.code === MessageCode.OfflineUpload
    ? {
      code: MessageCode.OfflineUploadReply,
      status: Status.Ok,
      ackedSequence: acked,
      applied,
      duplicates,
    }
    : {
      code: MessageCode.OfflineUploadItemizedReply,
      status: Status.Ok,
      ackedSequence: acked,
      duplicates,
      results,
    };
  return { message, amount: total, cardAccountId: null };
}

// Per server (its settings object is made once at start): the versions already written.
const heldVersions = new WeakMap<ProtocolSettings, Map<number, number>>();
const writing = new Map<number, Promise<void>>();

/**
 * Remembers that a reader said (Heartbeat, BlocklistSync) it holds blocklist `version`: from then
 * on an offline payment for a chip listed at or below it is refused. Written once per version and
 * terminal, in the background: the reply does not wait for it (a current reader's heartbeat is
 * answered from memory). The caller passes only a version the server handed out.
 */
export function noteBlocklistHeld(ctx: ServiceContext, terminalId: number, version: number): void {
  if (version <= 0) return;
  let seen = heldVersions.get(ctx.settings);
  if (!seen) heldVersions.set(ctx.settings, seen = new Map());
  const before = seen.get(terminalId) ?? 0;
  if (before >= version) return;
  seen.set(terminalId, version);
  // After the terminal's previous write: awaiting the last one awaits them all.
  const previous = writing.get(terminalId) ?? Promise.resolve();
  const write = previous.then(() => saveBlocklistAck(ctx.db, terminalId, version)).catch((err) => {
    if (seen.get(terminalId) === version) seen.set(terminalId, before);
    log.warn("blocklist acknowledgement not recorded", {
      terminal: terminalId,
      version,
      err: (err as Error).message,
    });
  }).finally(() => {
    if (writing.get(terminalId) === write) writing.delete(terminalId);
  });
  writing.set(terminalId, write);
}

/**
 * Waits for this process's acknowledgement writes of a terminal, so its upload sees what it said
 * before (call outside a transaction: the write may need the same connection).
 */
export async function blocklistAcksWritten(terminalId: number): Promise<void> {
  await writing.get(terminalId);
}
