/**
 * Shower controllers (PROTOCOL.md §4.6, §4.7): a card swipe holds the pre-authorisation, the end
 * charges the usage at the tariff the shower started under and releases the rest. Each is one
 * `MoneyRequest`, its common case group-committed: many readers' starts in one statement, many
 * readers' ends in another, each with its records (as card payments are, payments.ts).
 */
import { sql } from "kysely";
import { databaseKind, type Db } from "../modules/platform/database.ts";
import type { Terminal } from "../modules/merchant/mod.ts";
import { findCardByChip, payableChipKey, payableChipOfSql } from "../modules/card/mod.ts";
import {
  balanceAtMerchant,
  type HeldRecorded,
  holdFunds,
  holdFundsRecorded,
  type SettledRecorded,
  settleHold,
  settleHoldRecorded,
} from "../modules/wallet/mod.ts";
import { currentShowerTariff, showerTariffSql } from "../modules/billing/mod.ts";
import { type Message, MessageCode, type MessageOf, Status } from "./messages.ts";
import type { RawFrame } from "./parser.ts";
import { inOneBatch, perDatabase } from "./batch.ts";
import { replyOf, requestReference, type ServiceContext } from "./context.ts";
import { type MoneyRequest, type Outcome, requestRecord } from "./once.ts";
import { cardRefusal, lookupAllowed, lookupSpent, walletRefusal } from "./refusals.ts";
import {
  findShower,
  recordRequestsSql,
  recordShowersSql,
  replyFields,
  saveShower,
  showerUsageOfSql,
  unrecordedSql,
} from "./repository.ts";

type ShowerStart = MessageOf<0x20>;
type ShowerEnd = MessageOf<0x21>;

/** A ShowerStartReply: the fields 0 unless given. */
function startReply(
  status: number,
  fields: Partial<{ holdId: number; authorised: number; balance: number }> = {},
): Message {
  return {
    code: MessageCode.ShowerStartReply,
    status,
    holdId: fields.holdId ?? 0,
    authorised: fields.authorised ?? 0,
    balance: fields.balance ?? 0,
  };
}

/** When a hold started now is released if its end never arrives (§4.6). */
function holdExpiry(ctx: ServiceContext): Date {
  return new Date(Date.now() + ctx.settings.showerHoldSeconds * 1000);
}

/** ShowerStart `0x20`. */
export const showerStart: MoneyRequest<ShowerStart> = {
  refuseEarly(ctx, terminal) {
    return lookupAllowed(ctx, terminal) ? null : startReply(Status.RateLimited);
  },

  /**
   * In a batch of readers' starts, one statement finds each chip's card (if it may pay) and the
   * tariff in force, holds the whole pre-authorisation, and records the shower and the request
   * with its reply.
   */
  async inOneStatement(ctx, terminal, frame, request) {
    const held = await startBatcher(ctx.db).submit({
      terminal,
      frame,
      request,
      expiresAt: holdExpiry(ctx),
    });
    return held
      ? startReply(Status.Ok, {
        holdId: held.holdId,
        authorised: held.authorised,
        balance: held.balance,
      })
      : null;
  },

  async handle(ctx, terminal, frame, request) {
    // Every refusal here follows the chip lookup: it takes one from the allowance (§4.5).
    const refuse = (status: number, balance = 0, cardAccountId: number | null = null): Outcome => {
      lookupSpent(ctx, terminal);
      return { message: startReply(status, { balance }), amount: 0, cardAccountId };
    };
    const card = await findCardByChip(ctx.db, request.chip);
    const refusal = cardRefusal(card);
    if (refusal !== null || !card) return refuse(refusal ?? Status.UnknownChip);
    const tariff = await currentShowerTariff(ctx.db);
    try {
      const hold = await holdFunds(ctx.db, {
        cardAccountId: card.cardAccountId,
        amount: tariff.preauthAmount,
        merchantId: terminal.merchantId,
        terminalId: terminal.id,
        reference: requestReference(terminal.id, frame.sequence),
        expiresAt: holdExpiry(ctx),
      });
      await saveShower(ctx.db, {
        holdId: hold.holdId,
        terminalId: terminal.id,
        sequence: frame.sequence,
        cardAccountId: card.cardAccountId,
        tariffId: tariff.tariffId,
        fenPerUnit: tariff.fenPerUnit,
      });
      const b = await balanceAtMerchant(ctx.db, card.cardAccountId, terminal.merchantId);
      return {
        message: startReply(Status.Ok, {
          holdId: hold.holdId,
          authorised: hold.authorised,
          balance: b.balance,
        }),
        amount: hold.authorised,
        cardAccountId: card.cardAccountId,
      };
    } catch (err) {
      const r = walletRefusal(err);
      if (!r) throw err;
      return refuse(r.status, r.balance, card.cardAccountId);
    }
  },
};

/** A ShowerEndReply: the fields 0 unless given. */
function endReply(
  status: number,
  fields: Partial<{ charged: number; released: number; balance: number }> = {},
): Message {
  return {
    code: MessageCode.ShowerEndReply,
    status,
    charged: fields.charged ?? 0,
    released: fields.released ?? 0,
    balance: fields.balance ?? 0,
  };
}

/** ShowerEnd `0x21`. */
export const showerEnd: MoneyRequest<ShowerEnd> = {
  /**
   * In a batch of readers' ends, one statement prices each usage at the tariff its shower started
   * under, settles the terminal's active hold (charging at most the hold, releasing the rest) and
   * records the request with its reply. An unknown, settled or timed-out hold is not the common
   * case.
   */
  async inOneStatement(ctx, terminal, frame, request) {
    const settled = await endBatcher(ctx.db).submit({ terminal, frame, request });
    return settled
      ? endReply(Status.Ok, {
        charged: settled.charged,
        released: settled.released,
        balance: settled.balanceAfter,
      })
      : null;
  },

  async handle(ctx, terminal, frame, request) {
    const shower = await findShower(ctx.db, terminal.id, request.holdId);
    if (!shower) return refusedEnd(Status.HoldNotFound);
    // More units than the hold allows is charged as the whole hold (§4.7): the wallet caps the
    // charge at the authorised amount, so any u32 of units settles, never InvalidAmount.
    const usage = Math.min(request.units * shower.fen_per_unit, Number.MAX_SAFE_INTEGER);
    try {
      const s = await settleHold(ctx.db, {
        holdId: request.holdId,
        amount: usage,
        reference: requestReference(terminal.id, frame.sequence),
      });
      return {
        message: endReply(Status.Ok, {
          charged: s.charged,
          released: s.released,
          balance: s.balanceAfter,
        }),
        amount: s.charged,
        cardAccountId: shower.card_account_id,
      };
    } catch (err) {
      const r = walletRefusal(err);
      if (!r) throw err;
      return refusedEnd(r.status);
    }
  },
};

function refusedEnd(status: number): Outcome {
  return { message: endReply(status), amount: 0, cardAccountId: null };
}

/** Most starts, or ends, in one batch statement. */
const SHOWER_BATCH_MAX = 128;

/**
 * Batches of each kind in flight at once on PostgreSQL (each holds one pooled connection); PGlite
 * has one connection (payments.ts says why).
 */
const SHOWER_BATCHES_IN_FLIGHT = 4;

/** A reader's shower start waiting for its batch. */
interface StartItem {
  terminal: Terminal;
  frame: RawFrame;
  request: ShowerStart;
  expiresAt: Date;
}

/** A reader's shower end waiting for its batch. */
interface EndItem {
  terminal: Terminal;
  frame: RawFrame;
  request: ShowerEnd;
}

function inFlight(db: Db): number {
  return databaseKind(db) === "postgres" ? SHOWER_BATCHES_IN_FLIGHT : 1;
}

/**
 * The group commit of each database's shower starts. A start that does not hold there (a refused
 * chip or card, less than the pre-authorisation available, a retry, a failed batch) gets null,
 * nothing written for it, and the ordinary way answers it.
 */
const startBatcher = perDatabase<StartItem, HeldRecorded | null>((db) => ({
  maxBatch: SHOWER_BATCH_MAX,
  maxInFlight: inFlight(db),
  // One statement updates a card row once, and a request is recorded once.
  keys: (i) => [
    `chip:${payableChipKey(i.request.chip)}`,
    `request:${i.terminal.id}:${i.frame.sequence}`,
  ],
  run: (items) => startBatch(db, items),
}));

/**
 * One statement for a batch of starts (`inOneBatch`): each chip's check, hold, shower row and
 * request record.
 */
function startBatch(db: Db, items: StartItem[]): Promise<Array<HeldRecorded | null>> {
  return inOneBatch("shower start", items.length, async () => {
    const approval = startReply(Status.Ok);
    const tariff = showerTariffSql();
    const rows = items.map((i) => ({ terminalId: i.terminal.id, sequence: i.frame.sequence }));
    return await holdFundsRecorded(db, {
      holds: items.map((i) => ({
        payer: payableChipKey(i.request.chip),
        merchantId: i.terminal.merchantId,
        terminalId: i.terminal.id,
        reference: requestReference(i.terminal.id, i.frame.sequence),
        expiresAt: i.expiresAt,
      })),
      cardAccountOf: payableChipOfSql,
      amount: sql<number | null>`(select preauth_amount from ${tariff} tf)`,
      // A start answered before (refused, then retried) is left out, not failing the batch.
      unrecorded: (ord) => unrecordedSql(rows, ord),
      record: (held) => [
        recordShowersSql(rows, held, tariff),
        recordRequestsSql(
          items.map((i) => requestRecord(i.terminal, i.frame, replyOf(approval))),
          held,
          {
            fields: replyFields(approval, {
              holdId: "id",
              authorised: "amount",
              balance: "balance",
            }),
            amount: "amount",
            cardAccountId: "card_account_id",
          },
        ),
      ],
    });
  });
}

/**
 * The group commit of each database's shower ends. An end that does not settle there (an unknown,
 * settled or timed-out hold, no usage, a retry, a later end of a card already in the batch, a
 * failed batch) gets null, nothing written for it, and the ordinary way answers it.
 */
const endBatcher = perDatabase<EndItem, SettledRecorded | null>((db) => ({
  maxBatch: SHOWER_BATCH_MAX,
  maxInFlight: inFlight(db),
  // A hold is settled once, and a request is recorded once.
  keys: (i) => [`hold:${i.request.holdId}`, `request:${i.terminal.id}:${i.frame.sequence}`],
  run: (items) => endBatch(db, items),
}));

/**
 * One statement for a batch of ends (`inOneBatch`): each usage priced, each hold settled, each
 * request recorded.
 */
function endBatch(db: Db, items: EndItem[]): Promise<Array<SettledRecorded | null>> {
  return inOneBatch("shower end", items.length, async () => {
    const approval = endReply(Status.Ok);
    const rows = items.map((i) => ({ terminalId: i.terminal.id, sequence: i.frame.sequence }));
    return await settleHoldRecorded(db, {
      settlements: items.map((i) => ({
        holdId: i.request.holdId,
        terminalId: i.terminal.id,
        units: i.request.units,
        reference: requestReference(i.terminal.id, i.frame.sequence),
      })),
      usageOf: showerUsageOfSql,
      unrecorded: (ord) => unrecordedSql(rows, ord),
      record: (settled) => [
        recordRequestsSql(
          items.map((i) => requestRecord(i.terminal, i.frame, replyOf(approval))),
          settled,
          {
            fields: replyFields(approval, {
              charged: "charged",
              released: "released",
              balance: "balance_after",
            }),
            amount: "charged",
            cardAccountId: "card_account_id",
          },
        ),
      ],
    });
  });
}
