/**
 * Card payments and QR payments (PROTOCOL.md §4.3, §4.4). Money moves only through the wallet;
 * cards are read through the card module. Each is one `MoneyRequest`: its checks before any
 * lookup, its common case in one statement (the payments of many readers in one group commit),
 * and every case the ordinary way; both ways build the same replies.
 */
import type { RawBuilder } from "kysely";
import { databaseKind, type Db } from "../modules/platform/database.ts";
import type { Terminal } from "../modules/merchant/mod.ts";
import {
  checkCardPassword,
  findCardByChip,
  payableChipKey,
  payableChipOfSql,
} from "../modules/card/mod.ts";
import {
  isPaymentCodeShape,
  payFromCard,
  payFromCardsRecorded,
  redeemPaymentCode,
  redeemPaymentCodesRecorded,
} from "../modules/wallet/mod.ts";
import { type Message, MessageCode, type MessageOf, Status } from "./messages.ts";
import type { RawFrame } from "./parser.ts";
import { bodySlot } from "./serializer.ts";
import { inOneBatch, perDatabase } from "./batch.ts";
import { replyOf, requestReference, type ServiceContext } from "./context.ts";
import { type MoneyRequest, type Outcome, requestRecord } from "./once.ts";
import { cardRefusal, lookupAllowed, lookupSpent, validAmount, walletRefusal } from "./refusals.ts";
import { recordPaidRequestsSql, unrecordedSql } from "./repository.ts";

type CardPayment = MessageOf<0x10>;
type QrPayment = MessageOf<0x11>;

/** A CardPaymentReply to `request`: `amount` as requested, the other fields 0 unless given. */
function cardReply(
  request: CardPayment,
  status: number,
  fields: Partial<{ balance: number; triesLeft: number; retryAfter: number }> = {},
): Message {
  return {
    code: MessageCode.CardPaymentReply,
    status,
    amount: request.amount,
    balance: fields.balance ?? 0,
    triesLeft: fields.triesLeft ?? 0,
    retryAfter: fields.retryAfter ?? 0,
  };
}

function needsPassword(ctx: ServiceContext, request: CardPayment): boolean {
  return request.amount > ctx.settings.passwordThreshold;
}

/** CardPayment `0x10`, in §4.3's order of checks. */
export const cardPayment: MoneyRequest<CardPayment> = {
  refuseEarly(ctx, terminal, request) {
    if (!validAmount(request.amount)) return cardReply(request, Status.InvalidAmount);
    // Before the chip is looked up: neither answer depends on the chip.
    if (needsPassword(ctx, request) && !request.password) {
      return cardReply(request, Status.PasswordRequired);
    }
    if (!lookupAllowed(ctx, terminal)) return cardReply(request, Status.RateLimited);
    return null;
  },

  async inOneStatement(ctx, terminal, frame, request) {
    // A password to check is never the common case.
    if (needsPassword(ctx, request)) return null;
    const balance = await cardBatcher(ctx.db).submit({ terminal, frame, request });
    return balance === null ? null : cardReply(request, Status.Ok, { balance });
  },

  async handle(ctx, terminal, frame, request) {
    // Every refusal from here on says whether the chip exists: it takes a lookup (§4.5).
    const refuse = (
      status: number,
      fields: Parameters<typeof cardReply>[2] = {},
      cardAccountId: number | null = null,
    ): Outcome => {
      lookupSpent(ctx, terminal);
      return { message: cardReply(request, status, fields), amount: 0, cardAccountId };
    };
    const card = await findCardByChip(ctx.db, request.chip);
    const refusal = cardRefusal(card);
    if (refusal !== null || !card) return refuse(refusal ?? Status.UnknownChip);
    if (needsPassword(ctx, request)) {
      const check = await checkCardPassword(
        ctx.db,
        { config: ctx.config },
        card.cardAccountId,
        request.password,
      );
      if (!check.ok) {
        return check.locked
          ? refuse(Status.PasswordLocked, { retryAfter: check.retryAfter }, card.cardAccountId)
          : refuse(Status.WrongPassword, { triesLeft: check.remaining }, card.cardAccountId);
      }
    }
    try {
      const paid = await payFromCard(ctx.db, {
        cardAccountId: card.cardAccountId,
        merchantId: terminal.merchantId,
        amount: request.amount,
        reference: requestReference(terminal.id, frame.sequence),
        terminalId: terminal.id,
        channel: "card",
      });
      return {
        message: cardReply(request, Status.Ok, { balance: paid.balanceHere }),
        amount: request.amount,
        cardAccountId: card.cardAccountId,
      };
    } catch (err) {
      const r = walletRefusal(err);
      if (!r) throw err;
      return refuse(r.status, { balance: r.balance }, card.cardAccountId);
    }
  },
};

/** A reader's payment waiting for its batch. */
interface BatchItem<M extends CardPayment | QrPayment> {
  terminal: Terminal;
  frame: RawFrame;
  request: M;
}

/** Most payments in one batch statement. */
const BATCH_MAX = 128;

/**
 * Batches in flight at once on PostgreSQL (each holds one pooled connection): while one commits,
 * the next is already running, and at low load a payment never waits for another's batch.
 * PGlite has one connection: a second batch would only wait for it, smaller.
 */
const BATCHES_IN_FLIGHT = 4;

function inFlight(db: Db): number {
  return databaseKind(db) === "postgres" ? BATCHES_IN_FLIGHT : 1;
}

/** A request is recorded once: a retry of the same request waits for the next batch. */
function requestKey(i: BatchItem<CardPayment | QrPayment>): string {
  return `request:${i.terminal.id}:${i.frame.sequence}`;
}

/**
 * The group commit of one database's card payments: one statement finds each chip's card (if it
 * may pay), debits it and records the request with its reply (money and record commit together).
 * A payment that does not pay there (a refused chip or card, funds, limits, a retry, a failed
 * batch) gets null, nothing written for it, and the ordinary way answers it. One statement updates
 * a card row once: a second payment of the same chip waits for the next batch.
 */
const cardBatcher = perDatabase<BatchItem<CardPayment>, number | null>((db) => ({
  maxBatch: BATCH_MAX,
  maxInFlight: inFlight(db),
  keys: (i) => [`chip:${payableChipKey(i.request.chip)}`, requestKey(i)],
  run: (items) =>
    payBatch(
      "card",
      items,
      (i) => cardReply(i, Status.Ok),
      (recording) =>
        payFromCardsRecorded(db, {
          payments: items.map((i) => ({
            payer: payableChipKey(i.request.chip),
            merchantId: i.terminal.merchantId,
            amount: i.request.amount,
            reference: requestReference(i.terminal.id, i.frame.sequence),
            terminalId: i.terminal.id,
          })),
          cardAccountOf: payableChipOfSql,
          ...recording,
        }),
    ),
}));

/**
 * The group commit of one database's 付款码 payments, as card payments': one statement redeems
 * each code (live, not frozen, within the limits and the funds), debits its card and records the
 * request with its reply. A code is redeemed once: the same code twice waits for the next batch
 * (where the first has used it, and the ordinary way says so).
 */
const qrBatcher = perDatabase<BatchItem<QrPayment>, number | null>((db) => ({
  maxBatch: BATCH_MAX,
  maxInFlight: inFlight(db),
  keys: (i) => [`code:${i.request.paymentCode}`, requestKey(i)],
  run: (items) =>
    payBatch(
      "qr",
      items,
      (i) => qrReply(i, Status.Ok),
      (recording) =>
        redeemPaymentCodesRecorded(db, {
          redemptions: items.map((i) => ({
            code: i.request.paymentCode,
            amount: i.request.amount,
            merchantId: i.terminal.merchantId,
            terminalId: i.terminal.id,
            reference: requestReference(i.terminal.id, i.frame.sequence),
          })),
          ...recording,
        }),
    ),
}));

/**
 * One statement for a batch (`inOneBatch`): each payment's checks, debit and request record, the
 * record being its approval (`approve`) with the balance filled in by the statement. Returns each
 * payment's balance after, or null where it did not pay.
 */
function payBatch<M extends CardPayment | QrPayment>(
  kind: string,
  items: BatchItem<M>[],
  approve: (request: M) => Message,
  pay: (recording: {
    record: (paid: RawBuilder<unknown>) => RawBuilder<unknown>;
    unrecorded: (ord: RawBuilder<number>) => RawBuilder<boolean>;
  }) => Promise<Array<{ balanceHere: number } | null>>,
): Promise<Array<number | null>> {
  return inOneBatch(kind, items.length, async () => {
    const approvals = items.map((i) => approve(i.request));
    const balance = bodySlot(approvals[0], "balance");
    const rows = items.map((i, n) => ({
      ...requestRecord(i.terminal, i.frame, replyOf(approvals[n])),
      amount: i.request.amount,
    }));
    const paid = await pay({
      record: (paid) => recordPaidRequestsSql(rows, balance, paid),
      unrecorded: (ord) => unrecordedSql(rows, ord),
    });
    return paid.map((p) => p?.balanceHere ?? null);
  });
}

/** A QrPaymentReply to `request`: `amount` as requested; `balance` the payer's after, else 0. */
function qrReply(request: QrPayment, status: number, balance = 0): Message {
  return { code: MessageCode.QrPaymentReply, status, amount: request.amount, balance };
}

/** QrPayment `0x11`, in §4.4's order of checks. */
export const qrPayment: MoneyRequest<QrPayment> = {
  refuseEarly(_ctx, _terminal, request) {
    return validAmount(request.amount) ? null : qrReply(request, Status.InvalidAmount);
  },

  /**
   * In the group commit: one statement for many readers redeems each code (live, not frozen,
   * within the limits and the funds), debits the card and records the request with its reply.
   */
  async inOneStatement(ctx, terminal, frame, request) {
    if (!isPaymentCodeShape(request.paymentCode)) return null;
    const balance = await qrBatcher(ctx.db).submit({ terminal, frame, request });
    return balance === null ? null : qrReply(request, Status.Ok, balance);
  },

  async handle(ctx, terminal, frame, request) {
    try {
      const paid = await redeemPaymentCode(ctx.db, {
        code: request.paymentCode,
        amount: request.amount,
        merchantId: terminal.merchantId,
        terminalId: terminal.id,
        reference: requestReference(terminal.id, frame.sequence),
      });
      return {
        message: qrReply(request, Status.Ok, paid.balanceHere),
        amount: request.amount,
        cardAccountId: paid.cardAccountId ?? null,
      };
    } catch (err) {
      const r = walletRefusal(err);
      if (!r) throw err;
      return { message: qrReply(request, r.status, r.balance), amount: 0, cardAccountId: null };
    }
  },
};
