/**
 * Money back to a card: refunds of payments (partial or full, never more than the original),
 * the one refund of a utility payment, and a reader's reversal of a payment whose reply it lost.
 * Each locks its original in a transaction; on its own a concurrent duplicate returns the first.
 * Money goes back to the purses that paid (`giveBackParts`, _purses.ts): cash first, then the
 * lots; a lot that has expired meanwhile takes it back and the expiry worker returns it to its
 * funding account.
 */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import {
  checkReference,
  chinaDay,
  ensureSystemAccount,
  inTransaction,
  transferByReference,
  type Trx,
} from "./_common.ts";
import { checkAmount } from "./_amounts.ts";
import { giveBackParts, type LotParts } from "./_purses.ts";
import {
  NotRefundableError,
  ReferenceConflictError,
  RefundExceedsOriginalError,
  TransferNotFoundError,
} from "./errors.ts";
import { creditCard, getBalance, type PaymentResult, sameRequest } from "./ledger.ts";
import type { Channel, TransferKind } from "./tables.ts";

/** Sum already given back (refunds and reversals, or the kinds named) of a transfer. */
async function returnedOf(
  trx: Trx,
  transferId: number,
  kinds: TransferKind[] = ["refund", "reversal"],
): Promise<number> {
  const row = await trx.selectFrom("ledger_transfers")
    .select((eb) => eb.fn.coalesce(eb.fn.sum<number>("amount"), sql<number>`0`).as("total"))
    .where("related_transfer_id", "=", transferId).where("kind", "in", kinds)
    .executeTakeFirstOrThrow();
  return Number(row.total);
}

/** What of `amount` given back of transfer `original` goes back to each lot (the rest is cash). */
async function giveBackLots(
  trx: Trx,
  original: { id: number; amount: number },
  amount: number,
): Promise<LotParts> {
  const { rows: paid } = await sql<{ lot_id: number; amount: number }>`
    select pl.lot_id, -pl.amount as amount
    from purse_legs pl join purse_lots l on l.id = pl.lot_id
    join purse_kinds pk on pk.code = l.purse
    where pl.transfer_id = ${original.id}
    order by pk.spend_order, l.valid_until, l.id`.execute(trx);
  if (paid.length === 0) return [];
  const { rows: back } = await sql<{ lot_id: number | null; amount: number }>`
    select pl.lot_id, coalesce(sum(pl.amount), 0) as amount from ledger_transfers r
    left join purse_legs pl on pl.transfer_id = r.id
    where r.related_transfer_id = ${original.id} and r.kind in ('refund', 'reversal', 'utility_refund')
    group by pl.lot_id`.execute(trx);
  const returned = await returnedOf(trx, original.id, ["refund", "reversal", "utility_refund"]);
  const lots = new Map<number, number>();
  for (const b of back) if (b.lot_id !== null) lots.set(Number(b.lot_id), Number(b.amount));
  const toLots = [...lots.values()].reduce((a, b) => a + b, 0);
  const parts = paid.map((p) => ({ lotId: Number(p.lot_id), amount: Number(p.amount) }));
  const fromLots = parts.reduce((a, p) => a + p.amount, 0);
  return giveBackParts(
    { cash: original.amount - fromLots, lots: parts },
    { cash: returned - toLots, lots },
    amount,
  ).lots;
}

/**
 * Refunds a card payment (purchase or shower), in part or in full: the refunds and reversals of
 * one transfer never add up to more than it. Money goes from the merchant back to the card.
 */
export async function refundTransfer(
  db: Db,
  input: {
    transferId: number;
    amount: number;
    reference: string;
    reason: string;
    staffId: number | null;
  },
): Promise<PaymentResult> {
  const amount = checkAmount(input.amount);
  const reference = checkReference(input.reference);
  return await inTransaction(db, async (trx) => {
    const first = await transferByReference(trx, reference);
    const original = await trx.selectFrom("ledger_transfers")
      .select([
        "id",
        "kind",
        "amount",
        "card_account_id",
        "credit_account_id",
        "merchant_id",
        "terminal_id",
      ])
      .where("id", "=", input.transferId).forUpdate().executeTakeFirst();
    if (!original) throw new TransferNotFoundError(String(input.transferId));
    if (first) {
      if (first.related_transfer_id !== original.id) throw new ReferenceConflictError(reference);
      return sameRequest(first, {
        cardAccountId: original.card_account_id!,
        amount,
        kinds: ["refund"],
      });
    }
    if (!["purchase", "shower"].includes(original.kind) || original.card_account_id === null) {
      throw new NotRefundableError(original.id, original.kind);
    }
    const left = original.amount - await returnedOf(trx, original.id);
    if (amount > left) throw new RefundExceedsOriginalError(original.id, left, amount);
    return await creditCard(trx, {
      cardAccountId: original.card_account_id,
      amount,
      reference,
      lots: await giveBackLots(trx, original, amount),
      kind: "refund",
      channel: null,
      counterAccountId: original.credit_account_id,
      merchantId: original.merchant_id,
      terminalId: original.terminal_id,
      relatedTransferId: original.id,
      details: { reason: String(input.reason ?? "").slice(0, 200), staffId: input.staffId },
    });
  }, async (own, err) => {
    const first = await transferByReference(own, reference);
    if (!first || first.related_transfer_id !== input.transferId) throw err;
    const balanceAfter = first.balance_after ?? 0;
    return { transferId: first.id, balanceAfter, balanceHere: balanceAfter, duplicate: true };
  });
}

/**
 * Gives a utility payment back to the card, exactly once per original whatever the reference:
 * a second call (any reference) returns the first refund.
 */
export async function refundUtility(
  db: Db,
  input: { originalReference: string; reference: string },
): Promise<PaymentResult> {
  const reference = checkReference(input.reference);
  const originalReference = checkReference(input.originalReference);
  const refund = async (trx: Trx): Promise<PaymentResult> => {
    const original = await trx.selectFrom("ledger_transfers")
      .select(["id", "kind", "amount", "card_account_id", "credit_account_id", "details"])
      .where("reference", "=", originalReference).forUpdate().executeTakeFirst();
    if (!original) throw new TransferNotFoundError(originalReference);
    if (!["electricity", "water"].includes(original.kind)) {
      throw new NotRefundableError(original.id, original.kind);
    }
    const done = await trx.selectFrom("ledger_transfers").select(["id", "balance_after"])
      .where("related_transfer_id", "=", original.id).where("kind", "=", "utility_refund")
      .executeTakeFirst();
    if (done) {
      const balanceAfter = done.balance_after ?? 0;
      return { transferId: done.id, balanceAfter, balanceHere: balanceAfter, duplicate: true };
    }
    return await creditCard(trx, {
      cardAccountId: original.card_account_id!,
      amount: original.amount,
      reference,
      lots: await giveBackLots(trx, original, original.amount),
      kind: "utility_refund",
      channel: null,
      counterAccountId: original.credit_account_id,
      merchantId: null,
      terminalId: null,
      relatedTransferId: original.id,
      details: { utility: original.kind, originalDetails: original.details ?? null },
    });
  };
  const attempt = (left: number): Promise<PaymentResult> =>
    inTransaction(db, refund, () => {
      if (left > 1) return attempt(left - 1);
      throw new Error(
        `Cannot refund utility payment ${originalReference}: gave up after repeated conflicts`,
      );
    });
  return await attempt(3);
}

/** What a reversal did: reversed an applied payment, or left a tombstone for one not yet arrived. */
export interface ReversalResult {
  status: "reversed" | "tombstoned";
  /** The reversal transfer (when money moved back). */
  transferId: number | null;
  amount: number;
  balanceAfter: number | null;
  /** The card given back to (null for a tombstone). */
  cardAccountId: number | null;
  duplicate: boolean;
}

/**
 * Cancels an earlier card or code payment whose reply a reader lost. Idempotent. When the
 * original has not arrived, a zero-amount void transfer takes its reference, so the original is
 * refused when it comes (the unique reference index decides any race between the two).
 */
export async function reverseByReference(
  db: Db,
  input: { originalReference: string; reference: string },
): Promise<ReversalResult> {
  const reference = checkReference(input.reference);
  const originalReference = checkReference(input.originalReference);
  if (reference === originalReference) {
    throw new ReferenceConflictError(reference, "same as the original");
  }
  for (let attempt = 0; attempt < 5; attempt++) {
    // On its own, a concurrent duplicate (or the original arriving meanwhile) goes again.
    const out = await inTransaction(db, async (trx): Promise<ReversalResult | null> => {
      const mine = await transferByReference(trx, reference);
      if (mine) {
        if (mine.kind !== "reversal") throw new ReferenceConflictError(reference);
        return {
          status: "reversed",
          transferId: mine.id,
          amount: mine.amount,
          balanceAfter: mine.balance_after,
          cardAccountId: mine.card_account_id,
          duplicate: true,
        };
      }
      const original = await trx.selectFrom("ledger_transfers")
        .select([
          "id",
          "kind",
          "channel",
          "amount",
          "card_account_id",
          "credit_account_id",
          "merchant_id",
          "terminal_id",
          "created_at",
          "details",
        ])
        .where("reference", "=", originalReference).forUpdate().executeTakeFirst();
      if (!original) {
        const voidAccount = await ensureSystemAccount(trx, "void", "void", "撤销占位");
        const inserted = await trx.insertInto("ledger_transfers").values({
          reference: originalReference,
          kind: "void",
          debit_account_id: voidAccount,
          credit_account_id: voidAccount,
          amount: 0,
          details: JSON.stringify({ reversalReference: reference }),
        }).onConflict((oc) => oc.column("reference").doNothing()).returning("id")
          .executeTakeFirst();
        if (!inserted) return null; // the original arrived meanwhile: go again and reverse it
        return {
          status: "tombstoned",
          transferId: null,
          amount: 0,
          balanceAfter: null,
          cardAccountId: null,
          duplicate: false,
        };
      }
      if (original.kind === "void") {
        return {
          status: "tombstoned",
          transferId: null,
          amount: 0,
          balanceAfter: null,
          cardAccountId: null,
          duplicate: true,
        };
      }
      if (
        original.kind !== "purchase" || original.channel === "offline" ||
        original.card_account_id === null
      ) {
        throw new NotRefundableError(original.id, original.kind);
      }
      const done = await trx.selectFrom("ledger_transfers").select([
        "id",
        "amount",
        "balance_after",
      ])
        .where("related_transfer_id", "=", original.id).where("kind", "=", "reversal")
        .executeTakeFirst();
      if (done) {
        return {
          status: "reversed",
          transferId: done.id,
          amount: done.amount,
          balanceAfter: done.balance_after,
          cardAccountId: original.card_account_id,
          duplicate: true,
        };
      }
      const amount = original.amount - await returnedOf(trx, original.id);
      if (amount <= 0) {
        const b = await getBalance(trx, original.card_account_id);
        return {
          status: "reversed",
          transferId: null,
          amount: 0,
          balanceAfter: b.balance,
          cardAccountId: original.card_account_id,
          duplicate: false,
        };
      }
      const r = await creditCard(trx, {
        cardAccountId: original.card_account_id,
        amount,
        reference,
        lots: await giveBackLots(trx, original, amount),
        kind: "reversal",
        channel: original.channel as Channel,
        counterAccountId: original.credit_account_id,
        merchantId: original.merchant_id,
        terminalId: original.terminal_id,
        relatedTransferId: original.id,
        details: { originalReference },
        undoSpendOn: chinaDay(original.created_at.getTime()),
      });
      return {
        status: "reversed",
        transferId: r.transferId,
        amount,
        balanceAfter: r.balanceAfter,
        cardAccountId: original.card_account_id,
        duplicate: false,
      };
    }, () => Promise.resolve(null));
    if (out) return out;
  }
  throw new Error(`Cannot reverse ${originalReference}: gave up after repeated conflicts`);
}
