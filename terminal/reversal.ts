/**
 * Reversal (PROTOCOL.md §4.9): a reader gives up on a request whose reply it lost. A payment is
 * refunded, a shower start's hold released, and a request that never arrived has its number spent
 * (its late original is refused `Reversed`). The reply says what this Reversal gave back: never
 * the same money twice.
 */
import {
  balanceAtMerchant,
  releaseHold,
  reverseByReference,
  WalletError,
} from "../modules/wallet/mod.ts";
import { MessageCode, type MessageOf, Status } from "./messages.ts";
import { requestReference } from "./context.ts";
import type { MoneyRequest, Outcome } from "./once.ts";
import { findRequest, findShowerStartedBy, recordedWithBody } from "./repository.ts";

type Reversal = MessageOf<0x30>;

/** Reversal `0x30`. */
export const reversal: MoneyRequest<Reversal> = {
  async handle(ctx, terminal, frame, request) {
    const done = (
      status: number,
      amount = 0,
      balance = 0,
      cardAccountId: number | null = null,
    ): Outcome => ({
      message: {
        code: MessageCode.ReversalReply,
        status,
        originalSequence: request.originalSequence,
        amount,
        balance,
      },
      amount,
      cardAccountId,
    });
    if (request.originalSequence === frame.sequence) return done(Status.NotReversible);
    const original = await findRequest(ctx.db, terminal.id, request.originalSequence);
    if (original && original.type === MessageCode.ShowerStart) {
      const shower = await findShowerStartedBy(ctx.db, terminal.id, request.originalSequence);
      if (!shower) return done(Status.Ok);
      const released = await releaseHold(ctx.db, {
        holdId: shower.hold_id,
        reason: `reversed by ${requestReference(terminal.id, frame.sequence)}`,
      });
      // Already ended or released: nothing comes back now.
      if (released.released === 0) return done(Status.Ok);
      const b = await balanceAtMerchant(ctx.db, shower.card_account_id, terminal.merchantId);
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
        originalReference: requestReference(terminal.id, request.originalSequence),
        reference: requestReference(terminal.id, frame.sequence),
      });
      // The wallet answers a second reversal of one payment with the first one's transfer. It was
      // another Reversal of this terminal that gave the money back (recorded in the transaction
      // that moved it), not this one: nothing came back now.
      if (
        r.amount === 0 ||
        (r.duplicate &&
          await recordedWithBody(ctx.db, terminal.id, MessageCode.Reversal, frame.body))
      ) {
        return done(Status.Ok);
      }
      // The balance this merchant sees, as every reply says it (§4.3).
      const b = r.cardAccountId === null
        ? r.balanceAfter ?? 0
        : (await balanceAtMerchant(ctx.db, r.cardAccountId, terminal.merchantId)).balance;
      return done(Status.Ok, r.amount, b);
    } catch (err) {
      if (
        err instanceof WalletError &&
        (err.code === "not_refundable" || err.code === "refund_exceeds_original")
      ) {
        return done(Status.NotReversible);
      }
      throw err;
    }
  },
};
