/**
 * Offline uploads (PROTOCOL.md §4.11): the payments a POS accepted while it could not reach the
 * server, acknowledged in the reader's own offline sequence, each once. The server trusts none of
 * them beyond its key: each record is checked against what SignOn announced (per-record limit,
 * password threshold, what the reader held at once), against time, and against the chip's state
 * when it was paid, or (1.2) the 离线付款码 it carries, verified by the wallet at the time it was
 * paid. A record that passes is charged; one that fails is acknowledged, charged nothing, and
 * filed for 财务处's review (finance may still charge it, under the same reference).
 */
import { logger } from "../modules/platform/log.ts";
import type { Terminal } from "../modules/merchant/mod.ts";
import { blocklistedAt, findCardByChip } from "../modules/card/mod.ts";
import { applyOfflineCodePayment, applyOfflinePayment } from "../modules/wallet/mod.ts";
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
import { walletRefusal } from "./refusals.ts";

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
 * The checks of §4.11 that hold for every record, card or code (steps 1 to 6; step 3, the card
 * password, for cards only), in their order; null when they pass.
 */
async function readerLimitsRefusal(
  ctx: ServiceContext,
  terminal: Terminal,
  record: OfflineRecord,
  input: { uploadedAt: number; ackedBefore: number; byCode: boolean },
): Promise<Refusal | null> {
  const s = ctx.settings;
  if (record.amount === 0) return refusal(Status.InvalidAmount, "invalid_amount");
  if (record.amount > s.offlinePaymentLimit) {
    return refusal(Status.OfflineOverPaymentLimit, "over_payment_limit");
  }
  // A card's password cannot be checked offline; a code needs none.
  if (!input.byCode && record.amount > s.passwordThreshold) {
    return refusal(Status.OfflinePasswordRequired, "over_password_threshold");
  }
  if (record.occurredAt > input.uploadedAt + s.timestampWindowSeconds) {
    return refusal(Status.OfflineTimeAhead, "future_time");
  }
  if (record.occurredAt < input.uploadedAt - s.offlineMaxAgeSeconds) {
    return refusal(Status.OfflineTooOld, "too_old");
  }
  // What the reader held when it took this one: everything after the last record acknowledged
  // by then, this one included.
  const held = await offlineHeldAt(ctx.db, {
    terminalId: terminal.id,
    at: new Date(record.occurredAt * 1000),
    ackedBefore: input.ackedBefore,
  });
  if (record.offlineSequence - held.from > s.offlineMaxRecords) {
    return refusal(Status.OfflineOverRecordLimit, "over_record_limit");
  }
  if (held.charged + record.amount > s.offlineTotalLimit) {
    return refusal(Status.OfflineOverTotalLimit, "over_total_limit");
  }
  return null;
}

/**
 * The checks of §4.11 in their order for a card's record; null when the record may be charged.
 * `uploadedAt` is the upload frame's timestamp (already within the clock window of server time);
 * `ackedBefore` the acknowledgement when this upload began.
 */
async function judge(
  ctx: ServiceContext,
  terminal: Terminal,
  record: OfflineRecord,
  input: { uploadedAt: number; ackedBefore: number },
): Promise<{ refusal: Refusal | null; cardAccountId: number | null }> {
  // Looked up first: finance needs the card of any refused record to charge it on review. A chip
  // outside the format (a NUL, lower case, …) is no card's and is never looked up: lower case is
  // not upper-cased into someone's card, and a NUL never reaches the database.
  const card = isChipNumber(record.chip) ? await findCardByChip(ctx.db, record.chip) : null;
  const cardAccountId = card?.cardAccountId ?? null;
  const none = (x: Refusal) => ({ refusal: x, cardAccountId });
  const limits = await readerLimitsRefusal(ctx, terminal, record, { ...input, byCode: false });
  if (limits) return none(limits);
  const at = new Date(record.occurredAt * 1000);
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

/** A card's record: charged when its checks (`judge`) pass. */
async function chargeCard(
  ctx: ServiceContext,
  terminal: Terminal,
  record: OfflineRecord,
  input: { uploadedAt: number; ackedBefore: number; reference: string },
): Promise<
  { refusal: Refusal | null; cardAccountId: number | null; balanceAfter: number | null }
> {
  const verdict = await judge(ctx, terminal, record, input);
  if (verdict.refusal !== null) return { ...verdict, balanceAfter: null };
  const paid = await applyOfflinePayment(ctx.db, {
    cardAccountId: verdict.cardAccountId!,
    merchantId: terminal.merchantId,
    terminalId: terminal.id,
    amount: record.amount,
    reference: input.reference,
    occurredAt: new Date(record.occurredAt * 1000),
  });
  return { ...verdict, balanceAfter: paid.balanceAfter };
}

/** Why the wallet did not charge a code's record, as finance reads it. */
const CODE_REVIEW_REASONS: Record<string, OfflineReviewReason> = {
  code_unknown: "code_invalid",
  code_clock_skew: "code_time",
  code_revoked: "code_revoked",
  code_frozen: "code_revoked",
  code_used: "code_used",
  offline_code_over_limit: "code_over_limit",
  code_over_limit: "code_over_limit",
  limit_exceeded: "code_over_limit",
  code_revoked_later: "code_revoked_later",
};

/**
 * A record paid with a 离线付款码 (1.2): the reader's limits as for a card, then the wallet verifies
 * the code at the time it was paid and charges it (even below zero, as any offline record) or says
 * why not; the card is known whenever the code names a device.
 */
async function chargeCode(
  ctx: ServiceContext,
  terminal: Terminal,
  record: OfflineRecord,
  input: { uploadedAt: number; ackedBefore: number; reference: string },
): Promise<
  { refusal: Refusal | null; cardAccountId: number | null; balanceAfter: number | null }
> {
  const limits = await readerLimitsRefusal(ctx, terminal, record, { ...input, byCode: true });
  if (limits) return { refusal: limits, cardAccountId: null, balanceAfter: null };
  const r = await applyOfflineCodePayment(ctx.db, {
    code: record.paymentCode ?? "",
    amount: record.amount,
    merchantId: terminal.merchantId,
    terminalId: terminal.id,
    reference: input.reference,
    occurredAt: new Date(record.occurredAt * 1000),
    appSecret: ctx.config.appSecret,
  });
  if (r.paid) {
    return { refusal: null, cardAccountId: r.cardAccountId, balanceAfter: r.balanceAfter };
  }
  const status = walletRefusal(r.refusal)?.status ?? Status.CodeInvalid;
  const reason = CODE_REVIEW_REASONS[r.refusal.code] ?? "code_invalid";
  return { refusal: refusal(status, reason), cardAccountId: r.cardAccountId, balanceAfter: null };
}

/** How a code's record is filed: the device's part of the code, never the whole code. */
function storedCode(code: string): string {
  return `付款码 ${storedChip(code.slice(0, 9))}…`;
}

/**
 * OfflineUpload `0x50`, OfflineUploadItemized `0x51` and OfflineUploadMixed `0x52`: recorded once,
 * as any money request.
 */
export const offlineUpload: MoneyRequest<MessageOf<0x50 | 0x51 | 0x52>> = {
  handle: acknowledge,
};

/** Acknowledges an upload's records (inside the request's transaction) and returns its reply. */
async function acknowledge(
  ctx: ServiceContext,
  terminal: Terminal,
  frame: RawFrame,
  upload: MessageOf<0x50 | 0x51 | 0x52>,
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
    const reference = offlineReference(terminal.id, r.offlineSequence);
    const occurredAt = new Date(r.occurredAt * 1000);
    const byCode = !!r.paymentCode;
    const input = { uploadedAt: frame.timestamp, ackedBefore, reference };
    const verdict = byCode
      ? await chargeCode(ctx, terminal, r, input)
      : await chargeCard(ctx, terminal, r, input);
    const chip = byCode ? storedCode(r.paymentCode!) : storedChip(r.chip);
    const balanceAfter = verdict.balanceAfter;
    if (verdict.refusal === null) {
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
        chip,
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
      chip,
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
      code: upload.code === MessageCode.OfflineUploadMixed
        ? MessageCode.OfflineUploadMixedReply
        : MessageCode.OfflineUploadItemizedReply,
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
