/**
 * Shower controllers (PROTOCOL.md §4.6, §4.7): a card swipe holds the pre-authorisation, the end
 * charges the usage at the tariff the shower started under and releases the rest. Each is one
 * `MoneyRequest`, its common case in one statement.
 */
import { sql } from "kysely";
import { findCardByChip, payableChipSql } from "../modules/card/mod.ts";
import {
  balanceAtMerchant,
  holdFunds,
  holdFundsRecorded,
  settleHold,
  settleHoldRecorded,
} from "../modules/wallet/mod.ts";
import { currentShowerTariff, showerTariffSql } from "../modules/billing/mod.ts";
import { type Message, MessageCode, type MessageOf, Status } from "./messages.ts";
import { replyOf, requestReference, type ServiceContext } from "./context.ts";
import { type MoneyRequest, type Outcome, requestRecord } from "./once.ts";
import {
  cardRefusal,
  isDatabaseError,
  lookupAllowed,
  lookupSpent,
  walletRefusal,
} from "./refusals.ts";
import {
  findShower,
  recordRequestSql,
  recordShowerSql,
  replyFields,
  saveShower,
  showerUsageSql,
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
   * One statement finds the chip's card (if it may pay) and the tariff in force, holds the whole
   * pre-authorisation, and records the shower and the request with its reply.
   */
  async inOneStatement(ctx, terminal, frame, request) {
    const approval = startReply(Status.Ok);
    const tariff = showerTariffSql();
    let held;
    try {
      held = await holdFundsRecorded(ctx.db, {
        cardAccountId: payableChipSql(request.chip),
        amount: sql<number | null>`(select preauth_amount from ${tariff} tf)`,
        merchantId: terminal.merchantId,
        terminalId: terminal.id,
        reference: requestReference(terminal.id, frame.sequence),
        expiresAt: holdExpiry(ctx),
        record: (hold) => [
          recordShowerSql({ terminalId: terminal.id, sequence: frame.sequence }, hold, tariff),
          recordRequestSql(requestRecord(terminal, frame, replyOf(approval)), hold, {
            fields: replyFields(approval, {
              holdId: "id",
              authorised: "amount",
              balance: "balance",
            }),
            amount: "amount",
            cardAccountId: "card_account_id",
          }),
        ],
      });
    } catch (err) {
      if (isDatabaseError(err)) return null;
      throw err;
    }
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
   * One statement prices the usage at the tariff the shower started under, settles this
   * terminal's active hold (charging at most the hold, releasing the rest) and records the
   * request with its reply. An unknown, settled or timed-out hold is not the common case.
   */
  async inOneStatement(ctx, terminal, frame, request) {
    const approval = endReply(Status.Ok);
    let settled;
    try {
      settled = await settleHoldRecorded(ctx.db, {
        holdId: request.holdId,
        usage: showerUsageSql(terminal.id, request.holdId, request.units),
        reference: requestReference(terminal.id, frame.sequence),
        record: (settlement) => [
          recordRequestSql(requestRecord(terminal, frame, replyOf(approval)), settlement, {
            fields: replyFields(approval, {
              charged: "charged",
              released: "released",
              balance: "balance_after",
            }),
            amount: "charged",
            cardAccountId: "card_account_id",
          }),
        ],
      });
    } catch (err) {
      if (isDatabaseError(err)) return null;
      throw err;
    }
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
