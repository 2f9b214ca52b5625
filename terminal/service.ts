/**
 * What each request does. Money moves only through the wallet; cards are read through the card
 * module. Every money-moving request is recorded with its reply under (terminal, sequence), so a
 * retry gets the same reply bytes and moves nothing, on any server instance, after any restart.
 */
import { sql } from "kysely";
import type { Config } from "../modules/platform/config.ts";
import { databaseKind, type Db } from "../modules/platform/database.ts";
import { logger } from "../modules/platform/log.ts";
import type { Terminal, TerminalKind } from "../modules/merchant/mod.ts";
import {
  blocklistSince,
  checkCardPassword,
  type ChipCard,
  currentBlocklistVersion,
  findCardByChip,
  payableChipKey,
  payableChipOfSql,
  payableChipSql,
} from "../modules/card/mod.ts";
import {
  getBalance,
  holdFunds,
  holdFundsRecorded,
  payFromCard,
  payFromCardsRecorded,
  redeemPaymentCode,
  redeemPaymentCodeRecorded,
  releaseHold,
  reverseByReference,
  settleHold,
  settleHoldRecorded,
  WalletError,
} from "../modules/wallet/mod.ts";
import { currentShowerTariff, showerTariffSql } from "../modules/billing/mod.ts";
import {
  MAX_BLOCKLIST_ENTRIES,
  type Message,
  MessageCode,
  messageName,
  Status,
  statusName,
} from "./messages.ts";
import type { RawFrame } from "./parser.ts";
import { GroupCommit } from "./batch.ts";
import { envInt, type LookupAllowance } from "./limits.ts";
import { applyOfflineUpload, blocklistAcksWritten, noteBlocklistHeld } from "./offline.ts";
import { serializeBody } from "./serializer.ts";
import {
  findRequest,
  findShower,
  listRequests,
  recordedWithBody,
  recordPaidRequestsSql,
  recordRequestSql,
  recordShowerSql,
  type ReplyField,
  saveRequest,
  saveShower,
  showerUsageSql,
  type StoredRequest,
} from "./repository.ts";

const log = logger("terminal.service");

/** Parameters given to readers at sign-on and the server's own limits. */
export interface ProtocolSettings {
  /** A frame's timestamp may differ from server time by at most this many seconds. */
  timestampWindowSeconds: number;
  /** Card payments above this amount (fen) need the card password. */
  passwordThreshold: number;
  /** Offline: most a reader may accept for one payment (fen). */
  offlinePaymentLimit: number;
  /** Offline: most a reader may accept in total before it must upload (fen). */
  offlineTotalLimit: number;
  /** Offline: most records a reader may hold. */
  offlineMaxRecords: number;
  /** Offline: a record paid longer ago than this (seconds before its upload) is not charged. */
  offlineMaxAgeSeconds: number;
  heartbeatSeconds: number;
  /** A shower hold whose end never arrives is released after this many seconds. */
  showerHoldSeconds: number;
}

/** The settings from the environment (see README), with overrides (tests). */
export function protocolSettings(
  config: Config,
  overrides: Partial<ProtocolSettings> = {},
): ProtocolSettings {
  const env = config.env ?? {};
  return {
    timestampWindowSeconds: envInt(env, "TERMINAL_TIMESTAMP_WINDOW", 300),
    passwordThreshold: envInt(env, "TERMINAL_PASSWORD_THRESHOLD", 2000),
    offlinePaymentLimit: envInt(env, "TERMINAL_OFFLINE_PAYMENT_LIMIT", 1500),
    offlineTotalLimit: envInt(env, "TERMINAL_OFFLINE_TOTAL_LIMIT", 10000),
    offlineMaxRecords: envInt(env, "TERMINAL_OFFLINE_MAX_RECORDS", 200),
    offlineMaxAgeSeconds: envInt(env, "TERMINAL_OFFLINE_MAX_AGE", 7 * 86_400),
    heartbeatSeconds: envInt(env, "TERMINAL_HEARTBEAT_SECONDS", 30),
    showerHoldSeconds: envInt(env, "SHOWER_HOLD_TIMEOUT", 3600),
    ...overrides,
  };
}

export interface ServiceContext {
  db: Db;
  config: Config;
  settings: ProtocolSettings;
  /**
   * The blocklist version this server last pushed to its readers (at most a poll interval
   * behind the database), or null before it knows: a reader heartbeating at that version is
   * current without asking the database, and any later change reaches it by push.
   */
  pushedBlocklistVersion?: () => number | null;
  /**
   * Each terminal's allowance of answers that tell whether a chip exists (PROTOCOL.md §4.5);
   * unlimited when absent.
   */
  lookups?: LookupAllowance;
  /**
   * The protocol's clock (ms): server time in replies. Money and its times (holds, the ledger)
   * keep the real clock and the database's. Tests replaying PROTOCOL.md §6 fix it.
   */
  clock?: () => number;
}

/** A reply to send: the message code, its body, and the header timestamp when not the echo. */
export interface Reply {
  code: number;
  body: Uint8Array;
  status?: number;
  timestamp?: number;
}

const ALL: TerminalKind[] = ["canteen_pos", "supermarket_pos", "qr_scanner", "shower"];
const POS: TerminalKind[] = ["canteen_pos", "supermarket_pos"];
const ALLOWED: Record<number, TerminalKind[]> = {
  [MessageCode.SignOn]: ALL,
  [MessageCode.Heartbeat]: ALL,
  [MessageCode.BlocklistSync]: ALL,
  [MessageCode.Reversal]: ALL,
  [MessageCode.CardPayment]: POS,
  [MessageCode.OfflineUpload]: POS,
  [MessageCode.OfflineUploadItemized]: POS,
  [MessageCode.QrPayment]: [...POS, "qr_scanner"],
  [MessageCode.BalanceInquiry]: [...POS, "shower"],
  [MessageCode.ShowerStart]: ["shower"],
  [MessageCode.ShowerEnd]: ["shower"],
};

/** Whether a terminal of `kind` may send request `code`. */
export function allowedFor(kind: TerminalKind, code: number): boolean {
  return ALLOWED[code]?.includes(kind) ?? false;
}

/** The wallet reference of a reader request: unique per (terminal, sequence). */
export function requestReference(terminalId: number, sequence: number): string {
  return `T${terminalId}:${sequence}`;
}

/** "张*" / "李*明": enough for the holder to recognise, not enough to identify. */
export function maskName(name: string): string {
  const chars = [...name];
  if (chars.length <= 1) return name;
  if (chars.length === 2) return `${chars[0]}*`;
  return `${chars[0]}${"*".repeat(chars.length - 2)}${chars[chars.length - 1]}`;
}

/** Server time for a reply body, in Unix seconds. */
function serverTime(ctx: ServiceContext): number {
  return Math.floor((ctx.clock ?? Date.now)() / 1000);
}

function reply(m: Message, status?: number): Reply {
  return {
    code: m.code,
    body: serializeBody(m),
    status: status ?? ("status" in m ? m.status : undefined),
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function fromStored(
  ctx: ServiceContext,
  s: StoredRequest,
  type: number,
  body: Uint8Array,
): Reply {
  if (s.type !== type || !sameBytes(new Uint8Array(s.request), body)) {
    // An Error's header echoes the request's timestamp like every reply (PROTOCOL.md §2).
    return reply({
      code: MessageCode.Error,
      status: Status.SequenceReused,
      serverTime: serverTime(ctx),
    });
  }
  return {
    code: s.reply_type,
    body: new Uint8Array(s.reply),
    status: s.status,
    timestamp: s.reply_timestamp,
  };
}

/** The refusal status of a card by its chip, or null when the card may pay. */
function cardRefusal(card: ChipCard | null): number | null {
  if (!card) return Status.UnknownChip;
  // The account's state first: a loss report marks its chips lost too, and says more.
  if (card.cardStatus === "loss_reported") return Status.CardLossReported;
  if (card.cardStatus === "cancelled") return Status.CardCancelled;
  if (card.chipStatus === "lost") return Status.ChipLost;
  if (card.chipStatus === "cancelled") return Status.ChipCancelled;
  return null;
}

export interface Outcome {
  message: Message;
  amount: number;
  cardAccountId: number | null;
}

/**
 * Runs a money-moving request once per (terminal, sequence): a recorded one answers from the
 * record; a new one runs, is recorded, and answers. If another instance recorded it first, its
 * record wins (the wallet's reference made sure money moved at most once).
 */
async function once(
  ctx: ServiceContext,
  t: Terminal,
  f: RawFrame,
  run: (ctx: ServiceContext) => Promise<Outcome>,
): Promise<Reply> {
  // No lookup first: the record is inserted in the same transaction as the money, so a retry's
  // insert conflicts, its transaction (and any money it moved) rolls back, and the stored reply
  // answers it. The common case, a new request, costs no extra round trip.
  const record = async (db: Db, outcome: Outcome): Promise<Reply | null> => {
    const r = reply(outcome.message);
    const saved = await saveRequest(db, {
      terminalId: t.id,
      sequence: f.sequence,
      type: f.type,
      request: f.body,
      status: r.status ?? 0,
      replyType: r.code,
      replyTimestamp: f.timestamp,
      reply: r.body,
      amount: outcome.amount,
      cardAccountId: outcome.cardAccountId,
    });
    return saved ? r : null;
  };
  let r: Reply | null;
  try {
    // The money and its record commit together: one commit (one WAL flush) per request.
    r = await ctx.db.transaction().execute(async (trx) => {
      const recorded = await record(trx, await run({ ...ctx, db: trx }));
      if (!recorded) throw new AlreadyRecorded();
      return recorded;
    });
  } catch (err) {
    if (!(err instanceof AlreadyRecorded) && !isDatabaseError(err)) throw err;
    // Another instance recorded it first, or a first-use case the wallet resolves only outside a
    // transaction (its counter account missing, a concurrent duplicate reference): run it plainly;
    // the wallet's reference keeps the money moving at most once.
    const first = await findRequest(ctx.db, t.id, f.sequence);
    if (first) return fromStored(ctx, first, f.type, f.body);
    r = await record(ctx.db, await run(ctx));
  }
  if (r) return r;
  const first = await findRequest(ctx.db, t.id, f.sequence);
  if (!first) {
    throw new Error(`Cannot find the record of request ${requestReference(t.id, f.sequence)}`);
  }
  return fromStored(ctx, first, f.type, f.body);
}

/** (terminal, sequence) was recorded by someone else while this request ran. */
class AlreadyRecorded extends Error {}

/** An error raised by PostgreSQL itself (it carries a SQLSTATE code). */
function isDatabaseError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code);
}

/** Maps a wallet refusal of a payment to a status and the balance to show. */
function paymentRefusal(err: unknown): { status: number; balance: number } | null {
  if (!(err instanceof WalletError)) return null;
  const e = err as WalletError & { balance?: number; available?: number; limit?: string };
  switch (e.code) {
    case "insufficient_funds":
    case "hold_below_minimum":
      return { status: Status.InsufficientBalance, balance: e.available ?? e.balance ?? 0 };
    case "negative_balance":
      return { status: Status.InsufficientBalance, balance: e.balance ?? 0 };
    case "limit_exceeded":
    case "code_over_limit":
      return {
        status: e.limit === "daily" ? Status.OverDailyLimit : Status.OverPaymentLimit,
        balance: 0,
      };
    case "invalid_amount":
      return { status: Status.InvalidAmount, balance: 0 };
    case "reversed":
      return { status: Status.Reversed, balance: 0 };
    case "code_unknown":
    case "no_bound_card":
      return { status: Status.CodeInvalid, balance: 0 };
    case "code_expired":
    case "code_frozen":
      return { status: Status.CodeExpired, balance: 0 };
    case "code_used":
      return { status: Status.CodeUsed, balance: 0 };
    case "hold_not_found":
    case "hold_settled":
      return { status: Status.HoldNotFound, balance: 0 };
    case "reference_conflict":
      return { status: Status.SequenceReused, balance: 0 };
    default:
      return null;
  }
}

const MAX_AMOUNT = 100_000_000;

/**
 * Whether terminal `t` may have a chip looked up now (PROTOCOL.md §4.5): when its allowance is
 * used up, a card payment or shower start is answered RateLimited before any lookup, paying or
 * not, so its answer says nothing about the chip.
 */
function lookupAllowed(ctx: ServiceContext, t: Terminal): boolean {
  return ctx.lookups?.has(t.id) ?? true;
}

/** Where the balance sits in a CardPaymentReply body: after status (2) and amount (4). */
const CARD_REPLY_BALANCE_OFFSET = 6;

/** A reader's card payment waiting for its batch, with its reply as stored (balance zero). */
interface CardBatchItem {
  t: Terminal;
  f: RawFrame;
  m: Extract<Message, { code: 0x10 }>;
  template: Reply;
}

/** Most payments in one batch statement. */
const CARD_BATCH_MAX = 128;

/**
 * Batches in flight at once on PostgreSQL (each holds one pooled connection): while one commits,
 * the next is already running, and at low load a payment never waits for another's batch.
 * PGlite has one connection: a second batch would only wait for it, smaller.
 */
const CARD_BATCHES_IN_FLIGHT = 4;

const cardBatches = new WeakMap<Db, GroupCommit<CardBatchItem, number | null>>();

/** The group commit of one database's card payments. */
function cardBatcher(db: Db): GroupCommit<CardBatchItem, number | null> {
  let batcher = cardBatches.get(db);
  if (!batcher) {
    batcher = new GroupCommit({
      maxBatch: CARD_BATCH_MAX,
      maxInFlight: databaseKind(db) === "postgres" ? CARD_BATCHES_IN_FLIGHT : 1,
      // One statement updates a card row once, and a request is recorded once: a second payment
      // of the same chip, or a retry of the same request, waits for the next batch.
      keys: (i) => [`chip:${payableChipKey(i.m.chip)}`, `request:${i.t.id}:${i.f.sequence}`],
      run: (items) => payCardBatch(db, items),
    });
    cardBatches.set(db, batcher);
  }
  return batcher;
}

/**
 * One statement for a batch: each payment's chip check, debit and request record (money and
 * record commit together). Returns each payment's balance after, or null where it did not pay. If
 * the statement fails as a whole (a retry racing its first request on another instance, a
 * balance outside int32, …), nothing was written and every payment gets null: each then goes
 * the ordinary way on its own.
 */
async function payCardBatch(db: Db, items: CardBatchItem[]): Promise<Array<number | null>> {
  try {
    const paid = await payFromCardsRecorded(db, {
      payments: items.map((i) => ({
        payer: payableChipKey(i.m.chip),
        merchantId: i.t.merchantId,
        amount: i.m.amount,
        reference: requestReference(i.t.id, i.f.sequence),
        terminalId: i.t.id,
      })),
      channel: "card",
      cardAccountOf: payableChipOfSql,
      record: (rows) =>
        recordPaidRequestsSql(
          items.map((i) => ({
            terminalId: i.t.id,
            sequence: i.f.sequence,
            type: i.f.type,
            request: i.f.body,
            status: i.template.status ?? 0,
            replyType: i.template.code,
            replyTimestamp: i.f.timestamp,
            reply: i.template.body,
            amount: i.m.amount,
          })),
          CARD_REPLY_BALANCE_OFFSET,
          rows,
        ),
    });
    return paid.map((p) => p?.balanceAfter ?? null);
  } catch (err) {
    if (!isDatabaseError(err)) {
      log.error("card payment batch failed", { size: items.length, err: String(err) });
    }
    return items.map(() => null);
  }
}

/**
 * The common case without a transaction of its own: the payment joins the next group commit,
 * where one statement finds the chip's card (if it may pay), debits it and records the request
 * with its reply (money and record commit together, as in `once`). Anything else (a refused chip
 * or card, funds, limits, a password, a retry, a failed batch) returns null, nothing written for
 * it, and the ordinary path answers it.
 */
async function paidAtOnce(
  ctx: ServiceContext,
  t: Terminal,
  f: RawFrame,
  m: Extract<Message, { code: 0x10 }>,
): Promise<Reply | null> {
  if (m.amount <= 0 || m.amount > MAX_AMOUNT || m.amount > ctx.settings.passwordThreshold) {
    return null;
  }
  if (!lookupAllowed(ctx, t)) return null;
  const approved = (balance: number) =>
    reply({
      code: MessageCode.CardPaymentReply,
      status: Status.Ok,
      amount: m.amount,
      balance,
      triesLeft: 0,
      retryAfter: 0,
    });
  const balance = await cardBatcher(ctx.db).submit({ t, f, m, template: approved(0) });
  // The same bytes the statement stored: the template with the balance in its place.
  return balance === null ? null : approved(balance);
}

async function cardPayment(
  ctx: ServiceContext,
  t: Terminal,
  f: RawFrame,
  m: Extract<Message, { code: 0x10 }>,
) {
  return await paidAtOnce(ctx, t, f, m) ?? await once(ctx, t, f, async (ctx) => {
    const refuse = (
      status: number,
      extra: Partial<{ balance: number; triesLeft: number; retryAfter: number }> = {},
      cardAccountId: number | null = null,
    ): Outcome => ({
      message: {
        code: MessageCode.CardPaymentReply,
        status,
        amount: m.amount,
        balance: extra.balance ?? 0,
        triesLeft: extra.triesLeft ?? 0,
        retryAfter: extra.retryAfter ?? 0,
      },
      amount: 0,
      cardAccountId,
    });
    if (m.amount <= 0 || m.amount > MAX_AMOUNT) return refuse(Status.InvalidAmount);
    const needsPassword = m.amount > ctx.settings.passwordThreshold;
    // Both before the chip is looked up: neither answer depends on the chip (§4.3).
    if (needsPassword && !m.password) return refuse(Status.PasswordRequired);
    if (!lookupAllowed(ctx, t)) return refuse(Status.RateLimited);
    // From here every refusal says the chip exists or not: it draws on the allowance.
    const refuseAfterLookup: typeof refuse = (...args) => {
      ctx.lookups?.take(t.id);
      return refuse(...args);
    };
    const card = await findCardByChip(ctx.db, m.chip);
    const refusal = cardRefusal(card);
    if (refusal !== null || !card) return refuseAfterLookup(refusal ?? Status.UnknownChip);
    if (needsPassword) {
      const check = await checkCardPassword(
        ctx.db,
        { config: ctx.config },
        card.cardAccountId,
        m.password,
      );
      if (!check.ok) {
        return check.locked
          ? refuseAfterLookup(
            Status.PasswordLocked,
            { retryAfter: check.retryAfter },
            card.cardAccountId,
          )
          : refuseAfterLookup(
            Status.WrongPassword,
            { triesLeft: check.remaining },
            card.cardAccountId,
          );
      }
    }
    try {
      const paid = await payFromCard(ctx.db, {
        cardAccountId: card.cardAccountId,
        merchantId: t.merchantId,
        amount: m.amount,
        reference: requestReference(t.id, f.sequence),
        terminalId: t.id,
        channel: "card",
      });
      return {
        message: {
          code: MessageCode.CardPaymentReply,
          status: Status.Ok,
          amount: m.amount,
          balance: paid.balanceAfter,
          triesLeft: 0,
          retryAfter: 0,
        },
        amount: m.amount,
        cardAccountId: card.cardAccountId,
      };
    } catch (err) {
      const r = paymentRefusal(err);
      if (!r) throw err;
      return refuseAfterLookup(r.status, { balance: r.balance }, card.cardAccountId);
    }
  });
}

/** The request fields of a reader's record, and the reply stored with it (filled in by SQL). */
function recordOf(t: Terminal, f: RawFrame, template: Reply) {
  return {
    terminalId: t.id,
    sequence: f.sequence,
    type: f.type,
    request: f.body,
    status: template.status ?? 0,
    replyType: template.code,
    replyTimestamp: f.timestamp,
    reply: template.body,
  };
}

/** A QrPaymentReply's balance: after status (2) and amount (4). */
const QR_REPLY_FIELDS: ReplyField[] = [{ offset: 6, bytes: 4, column: "balance_after" }];

/**
 * A QR payment's common case in one round trip: one statement redeems the code (live, not frozen,
 * within the limits and the funds), debits the card and records the request with its reply.
 * Anything else (a refusal, a retry, a database error) returns null, nothing written, and `once`
 * answers it as before.
 */
async function qrPaidAtOnce(
  ctx: ServiceContext,
  t: Terminal,
  f: RawFrame,
  m: Extract<Message, { code: 0x11 }>,
): Promise<Reply | null> {
  if (m.amount <= 0 || m.amount > MAX_AMOUNT) return null;
  const approved = (balance: number) =>
    reply({ code: MessageCode.QrPaymentReply, status: Status.Ok, amount: m.amount, balance });
  const template = approved(0);
  let paid;
  try {
    paid = await redeemPaymentCodeRecorded(ctx.db, {
      code: m.paymentCode,
      amount: m.amount,
      merchantId: t.merchantId,
      terminalId: t.id,
      reference: requestReference(t.id, f.sequence),
      record: (row) =>
        recordRequestSql(recordOf(t, f, template), row, {
          fields: QR_REPLY_FIELDS,
          amount: m.amount,
          cardAccountId: "card_account_id",
        }),
    });
  } catch (err) {
    if (isDatabaseError(err)) return null;
    throw err;
  }
  // The same bytes the statement stored: the template with the balance in its place.
  return paid ? approved(paid.balanceAfter) : null;
}

/** A ShowerStartReply's hold id (8 bytes), authorised amount and balance, after status (2). */
const SHOWER_START_FIELDS: ReplyField[] = [
  { offset: 2, bytes: 8, column: "id" },
  { offset: 10, bytes: 4, column: "amount" },
  { offset: 14, bytes: 4, column: "balance" },
];

/**
 * A shower start's common case in one round trip: one statement finds the chip's card (if it may
 * pay) and the tariff in force, holds the whole pre-authorisation, and records the shower and the
 * request with its reply. Anything else (a refused chip, less available than the
 * pre-authorisation, a retry, a database error) returns null, nothing written, and `once`
 * answers it as before.
 */
async function showerStartedAtOnce(
  ctx: ServiceContext,
  t: Terminal,
  f: RawFrame,
  m: Extract<Message, { code: 0x20 }>,
): Promise<Reply | null> {
  if (!lookupAllowed(ctx, t)) return null;
  const started = (holdId: number, authorised: number, balance: number) =>
    reply({ code: MessageCode.ShowerStartReply, status: Status.Ok, holdId, authorised, balance });
  const template = started(0, 0, 0);
  const tariff = showerTariffSql();
  let held;
  try {
    held = await holdFundsRecorded(ctx.db, {
      cardAccountId: payableChipSql(m.chip),
      amount: sql<number | null>`(select preauth_amount from ${tariff} tf)`,
      merchantId: t.merchantId,
      terminalId: t.id,
      reference: requestReference(t.id, f.sequence),
      expiresAt: new Date(Date.now() + ctx.settings.showerHoldSeconds * 1000),
      record: (h) => [
        recordShowerSql({ terminalId: t.id, sequence: f.sequence }, h, tariff),
        recordRequestSql(recordOf(t, f, template), h, {
          fields: SHOWER_START_FIELDS,
          amount: "amount",
          cardAccountId: "card_account_id",
        }),
      ],
    });
  } catch (err) {
    if (isDatabaseError(err)) return null;
    throw err;
  }
  return held ? started(held.holdId, held.authorised, held.balance) : null;
}

/** A ShowerEndReply's charged, released and balance, after status (2). */
const SHOWER_END_FIELDS: ReplyField[] = [
  { offset: 2, bytes: 4, column: "charged" },
  { offset: 6, bytes: 4, column: "released" },
  { offset: 10, bytes: 4, column: "balance_after" },
];

/**
 * A shower end's common case in one round trip: one statement prices the usage at the tariff the
 * shower started under, settles this terminal's active hold (charging at most the hold, releasing
 * the rest) and records the request with its reply. Anything else (an unknown, settled or
 * timed-out hold, no usage, a retry, a database error) returns null, nothing written, and `once`
 * answers it as before.
 */
async function showerEndedAtOnce(
  ctx: ServiceContext,
  t: Terminal,
  f: RawFrame,
  m: Extract<Message, { code: 0x21 }>,
): Promise<Reply | null> {
  const ended = (charged: number, released: number, balance: number) =>
    reply({ code: MessageCode.ShowerEndReply, status: Status.Ok, charged, released, balance });
  const template = ended(0, 0, 0);
  let settled;
  try {
    settled = await settleHoldRecorded(ctx.db, {
      holdId: m.holdId,
      usage: showerUsageSql(t.id, m.holdId, m.units),
      reference: requestReference(t.id, f.sequence),
      record: (s) => [
        recordRequestSql(recordOf(t, f, template), s, {
          fields: SHOWER_END_FIELDS,
          amount: "charged",
          cardAccountId: "card_account_id",
        }),
      ],
    });
  } catch (err) {
    if (isDatabaseError(err)) return null;
    throw err;
  }
  return settled ? ended(settled.charged, settled.released, settled.balanceAfter) : null;
}

async function qrPayment(
  ctx: ServiceContext,
  t: Terminal,
  f: RawFrame,
  m: Extract<Message, { code: 0x11 }>,
) {
  return await qrPaidAtOnce(ctx, t, f, m) ?? await once(ctx, t, f, async (ctx) => {
    const refuse = (status: number, balance = 0): Outcome => ({
      message: { code: MessageCode.QrPaymentReply, status, amount: m.amount, balance },
      amount: 0,
      cardAccountId: null,
    });
    if (m.amount <= 0 || m.amount > MAX_AMOUNT) return refuse(Status.InvalidAmount);
    try {
      const paid = await redeemPaymentCode(ctx.db, {
        code: m.paymentCode,
        amount: m.amount,
        merchantId: t.merchantId,
        terminalId: t.id,
        reference: requestReference(t.id, f.sequence),
      });
      return {
        message: {
          code: MessageCode.QrPaymentReply,
          status: Status.Ok,
          amount: m.amount,
          balance: paid.balanceAfter,
        },
        amount: m.amount,
        cardAccountId: paid.cardAccountId ?? null,
      };
    } catch (err) {
      const r = paymentRefusal(err);
      if (!r) throw err;
      return refuse(r.status, r.balance);
    }
  });
}

async function balanceInquiry(
  ctx: ServiceContext,
  t: Terminal,
  m: Extract<Message, { code: 0x12 }>,
): Promise<Reply> {
  const refuse = (status: number) =>
    reply({ code: MessageCode.BalanceInquiryReply, status, balance: 0, available: 0, name: "" });
  // Before any lookup: a leaked key must not be able to walk the chip numbers (§4.5).
  if (ctx.lookups && !ctx.lookups.take(t.id)) return refuse(Status.RateLimited);
  const card = await findCardByChip(ctx.db, m.chip);
  const refusal = cardRefusal(card);
  if (refusal !== null || !card) return refuse(refusal ?? Status.UnknownChip);
  const b = await getBalance(ctx.db, card.cardAccountId);
  return reply({
    code: MessageCode.BalanceInquiryReply,
    status: Status.Ok,
    balance: b.balance,
    available: b.available,
    name: maskName(card.name),
  });
}

async function showerStart(
  ctx: ServiceContext,
  t: Terminal,
  f: RawFrame,
  m: Extract<Message, { code: 0x20 }>,
) {
  return await showerStartedAtOnce(ctx, t, f, m) ?? await once(ctx, t, f, async (ctx) => {
    const refuse = (status: number, balance = 0, cardAccountId: number | null = null): Outcome => {
      // Any refusal but RateLimited follows the chip lookup: it draws on the allowance (§4.5).
      if (status !== Status.RateLimited) ctx.lookups?.take(t.id);
      return {
        message: { code: MessageCode.ShowerStartReply, status, holdId: 0, authorised: 0, balance },
        amount: 0,
        cardAccountId,
      };
    };
    if (!lookupAllowed(ctx, t)) return refuse(Status.RateLimited);
    const card = await findCardByChip(ctx.db, m.chip);
    const refusal = cardRefusal(card);
    if (refusal !== null || !card) return refuse(refusal ?? Status.UnknownChip);
    const tariff = await currentShowerTariff(ctx.db);
    try {
      const hold = await holdFunds(ctx.db, {
        cardAccountId: card.cardAccountId,
        amount: tariff.preauthAmount,
        merchantId: t.merchantId,
        terminalId: t.id,
        reference: requestReference(t.id, f.sequence),
        expiresAt: new Date(Date.now() + ctx.settings.showerHoldSeconds * 1000),
      });
      await saveShower(ctx.db, {
        holdId: hold.holdId,
        terminalId: t.id,
        sequence: f.sequence,
        cardAccountId: card.cardAccountId,
        tariffId: tariff.tariffId,
        fenPerUnit: tariff.fenPerUnit,
      });
      const b = await getBalance(ctx.db, card.cardAccountId);
      return {
        message: {
          code: MessageCode.ShowerStartReply,
          status: Status.Ok,
          holdId: hold.holdId,
          authorised: hold.authorised,
          balance: b.balance,
        },
        amount: hold.authorised,
        cardAccountId: card.cardAccountId,
      };
    } catch (err) {
      const r = paymentRefusal(err);
      if (!r) throw err;
      return refuse(r.status, r.balance, card.cardAccountId);
    }
  });
}

async function showerEnd(
  ctx: ServiceContext,
  t: Terminal,
  f: RawFrame,
  m: Extract<Message, { code: 0x21 }>,
) {
  return await showerEndedAtOnce(ctx, t, f, m) ?? await once(ctx, t, f, async (ctx) => {
    const refuse = (status: number): Outcome => ({
      message: { code: MessageCode.ShowerEndReply, status, charged: 0, released: 0, balance: 0 },
      amount: 0,
      cardAccountId: null,
    });
    const shower = await findShower(ctx.db, t.id, m.holdId);
    if (!shower) return refuse(Status.HoldNotFound);
    // More units than the hold allows is charged as the whole hold (§4.7): the wallet caps the
    // charge at the authorised amount, so any u32 of units settles, never InvalidAmount.
    const usage = Math.min(m.units * shower.fen_per_unit, Number.MAX_SAFE_INTEGER);
    try {
      const s = await settleHold(ctx.db, {
        holdId: m.holdId,
        amount: usage,
        reference: requestReference(t.id, f.sequence),
      });
      return {
        message: {
          code: MessageCode.ShowerEndReply,
          status: Status.Ok,
          charged: s.charged,
          released: s.released,
          balance: s.balanceAfter,
        },
        amount: s.charged,
        cardAccountId: shower.card_account_id,
      };
    } catch (err) {
      const r = paymentRefusal(err);
      if (!r) throw err;
      return refuse(r.status);
    }
  });
}

async function reversal(
  ctx: ServiceContext,
  t: Terminal,
  f: RawFrame,
  m: Extract<Message, { code: 0x30 }>,
) {
  return await once(ctx, t, f, async (ctx) => {
    const done = (
      status: number,
      amount = 0,
      balance = 0,
      cardAccountId: number | null = null,
    ): Outcome => ({
      message: {
        code: MessageCode.ReversalReply,
        status,
        originalSequence: m.originalSequence,
        amount,
        balance,
      },
      amount,
      cardAccountId,
    });
    if (m.originalSequence === f.sequence) return done(Status.NotReversible);
    const original = await findRequest(ctx.db, t.id, m.originalSequence);
    if (original && original.type === MessageCode.ShowerStart) {
      const shower = await ctx.db.selectFrom("terminal_showers").select([
        "hold_id",
        "card_account_id",
      ])
        .where("terminal_id", "=", t.id).where("start_sequence", "=", m.originalSequence)
        .executeTakeFirst();
      if (!shower) return done(Status.Ok);
      const released = await releaseHold(ctx.db, {
        holdId: shower.hold_id,
        reason: `reversed by ${requestReference(t.id, f.sequence)}`,
      });
      if (released.released === 0) return done(Status.Ok);
      const b = await getBalance(ctx.db, shower.card_account_id);
      return done(Status.Ok, released.released, b.balance, shower.card_account_id);
    }
    if (
      original && original.type !== MessageCode.CardPayment &&
      original.type !== MessageCode.QrPayment
    ) {
      return done(Status.NotReversible);
    }
    try {
      const r = await reverseByReference(ctx.db, {
        originalReference: requestReference(t.id, m.originalSequence),
        reference: requestReference(t.id, f.sequence),
      });
      // The wallet answers a second reversal of one payment with the first one's transfer. It was
      // another Reversal of this terminal that gave the money back (recorded in the transaction
      // that moved it), not this one: nothing came back now (§4.9).
      if (
        r.amount === 0 ||
        (r.duplicate && await recordedWithBody(ctx.db, t.id, MessageCode.Reversal, f.body))
      ) {
        return done(Status.Ok);
      }
      return done(Status.Ok, r.amount, r.balanceAfter ?? 0);
    } catch (err) {
      if (
        err instanceof WalletError &&
        (err.code === "not_refundable" || err.code === "refund_exceeds_original")
      ) {
        return done(Status.NotReversible);
      }
      throw err;
    }
  });
}

async function offlineUpload(
  ctx: ServiceContext,
  t: Terminal,
  f: RawFrame,
  m: Extract<Message, { code: 0x50 | 0x51 }>,
) {
  await blocklistAcksWritten(t.id);
  return await once(ctx, t, f, (ctx) => applyOfflineUpload(ctx, t, f, m));
}

async function signOn(ctx: ServiceContext, t: Terminal): Promise<Reply> {
  const blocklistVersion = await currentBlocklistVersion(ctx.db);
  const tariff = await currentShowerTariff(ctx.db).catch(() => null);
  const s = ctx.settings;
  return reply({
    code: MessageCode.SignOnReply,
    status: Status.Ok,
    serverTime: serverTime(ctx),
    merchantName: t.merchantName,
    blocklistVersion,
    offlinePaymentLimit: s.offlinePaymentLimit,
    offlineTotalLimit: s.offlineTotalLimit,
    offlineMaxRecords: s.offlineMaxRecords,
    passwordThreshold: s.passwordThreshold,
    showerUnitPrice: tariff?.fenPerUnit ?? 0,
    showerUnit: tariff?.unit ?? "",
    showerHoldAmount: tariff?.preauthAmount ?? 0,
    heartbeatSeconds: s.heartbeatSeconds,
  });
}

async function heartbeat(
  ctx: ServiceContext,
  t: Terminal,
  m: Extract<Message, { code: 0x02 }>,
): Promise<Reply> {
  // Thousands of readers heartbeat every 30 s: one that holds the version already pushed is
  // answered from memory (an empty delta at its own version).
  const pushed = ctx.pushedBlocklistVersion?.() ?? null;
  const d = pushed !== null && m.blocklistVersion === pushed
    ? { version: pushed, complete: true, added: [], removed: [] }
    : await blocklistSince(ctx.db, m.blocklistVersion, MAX_BLOCKLIST_ENTRIES);
  // A version the server handed out (a future one restarts the delta from 0) is acknowledged.
  if (d.version >= m.blocklistVersion) noteBlocklistHeld(ctx, t.id, m.blocklistVersion);
  return reply({
    code: MessageCode.HeartbeatReply,
    status: Status.Ok,
    serverTime: serverTime(ctx),
    uploadOffline: m.offlineCount > 0,
    blocklist: { version: d.version, complete: d.complete, added: d.added, removed: d.removed },
  });
}

async function blocklistSync(
  ctx: ServiceContext,
  t: Terminal,
  m: Extract<Message, { code: 0x40 }>,
): Promise<Reply> {
  const d = await blocklistSince(ctx.db, m.fromVersion, MAX_BLOCKLIST_ENTRIES);
  if (d.version >= m.fromVersion) noteBlocklistHeld(ctx, t.id, m.fromVersion);
  return reply({
    code: MessageCode.BlocklistSyncReply,
    status: Status.Ok,
    blocklist: { version: d.version, complete: d.complete, added: d.added, removed: d.removed },
  });
}

/** Handles one authenticated request and returns the reply to send. */
export async function handleRequest(
  ctx: ServiceContext,
  t: Terminal,
  f: RawFrame,
  m: Message,
): Promise<Reply> {
  switch (m.code) {
    case MessageCode.SignOn:
      return await signOn(ctx, t);
    case MessageCode.Heartbeat:
      return await heartbeat(ctx, t, m);
    case MessageCode.BlocklistSync:
      return await blocklistSync(ctx, t, m);
    case MessageCode.CardPayment:
      return await cardPayment(ctx, t, f, m);
    case MessageCode.QrPayment:
      return await qrPayment(ctx, t, f, m);
    case MessageCode.BalanceInquiry:
      return await balanceInquiry(ctx, t, m);
    case MessageCode.ShowerStart:
      return await showerStart(ctx, t, f, m);
    case MessageCode.ShowerEnd:
      return await showerEnd(ctx, t, f, m);
    case MessageCode.Reversal:
      return await reversal(ctx, t, f, m);
    case MessageCode.OfflineUpload:
    case MessageCode.OfflineUploadItemized:
      return await offlineUpload(ctx, t, f, m);
    default:
      return reply({
        code: MessageCode.Error,
        status: Status.UnknownType,
        serverTime: serverTime(ctx),
      });
  }
}

/** Money-moving requests of a terminal for the staff pages, newest first. */
export async function terminalTransactions(db: Db, terminalId: number, limit: number) {
  const rows = await listRequests(db, terminalId, limit);
  return rows.map((r) => ({
    sequence: r.sequence,
    type: messageName(r.type) ?? String(r.type),
    status: statusName(r.status),
    amount: r.amount,
    at: r.created_at,
  }));
}
