/**
 * Shower pre-authorisations: a hold (money set aside on the card, shown on 余额), its end (the
 * usage charged, the rest released), a release, and the timeout that releases forgotten ones.
 * The one-statement forms of a shower controller's common case are in holds_recorded.ts.
 */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { checkReference, ensureMerchantAccount, inTransaction, type Trx } from "./_common.ts";
import {
  balanceOf,
  checkAmount,
  holdable,
  lateCharge,
  NO_LIMITS,
  readWallet,
  reserveSetSql,
  settleSetSql,
  signedBalanceSql,
} from "./_rules.ts";
import {
  HoldAlreadySettledError,
  HoldBelowMinimumError,
  HoldNotFoundError,
  InsufficientFundsError,
  InvalidAmountError,
  ReferenceConflictError,
} from "./errors.ts";

/** The least a shower may start with: ¥1. */
export const MIN_HOLD = 100;

/** A pre-authorisation (a shower start). */
export interface HoldResult {
  holdId: number;
  /** What was held: the amount asked, or less down to what was available. */
  authorised: number;
  duplicate: boolean;
}

/**
 * Holds money on a card for a shower: up to `amount`, or what is available if less, but refused
 * below `minimum` (default ¥1). The held money shows on 余额 and no payment can take it.
 */
export async function holdFunds(
  db: Db,
  input: {
    cardAccountId: number;
    amount: number;
    merchantId: number;
    terminalId?: number | null;
    reference: string;
    expiresAt: Date;
    minimum?: number;
  },
): Promise<HoldResult> {
  const amount = checkAmount(input.amount);
  const reference = checkReference(input.reference);
  const minimum = Math.min(
    input.minimum === undefined ? MIN_HOLD : checkAmount(input.minimum, "minimum"),
    amount,
  );
  if (!(input.expiresAt instanceof Date) || isNaN(input.expiresAt.getTime())) {
    throw new InvalidAmountError(String(input.expiresAt), "expiresAt");
  }
  const existing = async () => {
    const h = await db.selectFrom("ledger_holds").select([
      "id",
      "amount",
      "card_account_id",
      "requested",
    ])
      .where("reference", "=", reference).executeTakeFirst();
    if (!h) return null;
    if (h.card_account_id !== input.cardAccountId || h.requested !== amount) {
      throw new ReferenceConflictError(reference);
    }
    return { holdId: h.id, authorised: h.amount, duplicate: true };
  };
  const first = await existing();
  if (first) return first;
  await ensureMerchantAccount(db, input.merchantId);
  const hold = async (trx: Trx): Promise<HoldResult> => {
    const { wallet, refusal } = await readWallet(trx, input.cardAccountId, minimum, NO_LIMITS, {
      lock: true,
    });
    if (refusal) {
      throw refusal instanceof InsufficientFundsError
        ? new HoldBelowMinimumError(refusal.available, minimum)
        : refusal;
    }
    const authorised = holdable(wallet!, amount);
    await sql`update ledger_accounts la set ${reserveSetSql(sql`${authorised}`)}
      where la.id = ${wallet!.id}`.execute(trx);
    const row = await trx.insertInto("ledger_holds").values({
      reference,
      card_account_id: input.cardAccountId,
      merchant_id: input.merchantId,
      terminal_id: input.terminalId ?? null,
      requested: amount,
      amount: authorised,
      expires_at: input.expiresAt,
    }).returning("id").executeTakeFirstOrThrow();
    return { holdId: row.id, authorised, duplicate: false };
  };
  return await inTransaction(db, hold, async (_own, err) => {
    const again = await existing();
    if (again) return again;
    throw err;
  });
}

/** The outcome of a shower end. */
export interface SettleResult {
  /** Charged to the card. */
  charged: number;
  /** Given back from the hold by this settle (0 when the hold had already timed out). */
  released: number;
  /** The card's signed balance after. */
  balanceAfter: number;
  /** Usage the card could not cover after a timed-out hold (written off, recorded on the hold). */
  uncollected: number;
  transferId: number | null;
  duplicate: boolean;
}

/**
 * Ends a shower: charges the usage (at most the authorised amount) and releases the rest.
 * Idempotent on `reference`; a second settle under another reference is refused.
 *
 * A settle that arrives after the hold timed out and was released still charges, once, but only
 * from what the card has available then: the online rule (never below zero) holds. What it cannot
 * cover is recorded as `uncollected` on the hold for finance, not pushed into an overdraft.
 */
export async function settleHold(
  db: Db,
  input: { holdId: number; amount: number; reference: string },
): Promise<SettleResult> {
  if (!Number.isSafeInteger(input.amount) || input.amount < 0) {
    throw new InvalidAmountError(input.amount);
  }
  const reference = checkReference(input.reference);
  const usage = input.amount;
  const settle = async (trx: Trx): Promise<SettleResult> => {
    const hold = await trx.selectFrom("ledger_holds").selectAll().where("id", "=", input.holdId)
      .forUpdate()
      .executeTakeFirst();
    if (!hold) throw new HoldNotFoundError(input.holdId);
    const wanted = Math.min(usage, hold.amount);
    if (hold.settle_reference !== null) {
      if (hold.settle_reference !== reference) throw new HoldAlreadySettledError(hold.id);
      const t = hold.settle_transfer_id === null ? null : await trx.selectFrom("ledger_transfers")
        .select("balance_after").where("id", "=", hold.settle_transfer_id).executeTakeFirst();
      const b = await trx.selectFrom("ledger_accounts").select(["balance", "held", "overdraft"])
        .where("card_account_id", "=", hold.card_account_id).executeTakeFirstOrThrow();
      return {
        charged: hold.charged ?? 0,
        released: hold.close_reason === "settled" ? hold.amount - (hold.charged ?? 0) : 0,
        balanceAfter: t?.balance_after ?? balanceOf(b).balance,
        uncollected: hold.uncollected ?? 0,
        transferId: hold.settle_transfer_id,
        duplicate: true,
      };
    }
    // Locked: the card's transfer ids must follow the order its balance changed in.
    const { wallet: w } = await readWallet(trx, hold.card_account_id, wanted, NO_LIMITS, {
      lock: true,
    });
    if (!w) throw new Error(`Cannot settle hold ${hold.id}: its card has no wallet row`);
    const active = hold.state === "active";
    // A timed-out hold gave its money back: its late end takes only what is free now.
    const charged = active ? wanted : lateCharge(w, wanted);
    const released = active ? hold.amount - charged : 0;
    let transferId: number | null = null;
    const { rows: [after] } = await sql<{ after: number }>`
      update ledger_accounts la set ${
      settleSetSql(sql`${charged}`, sql`${active ? hold.amount : 0}`)
    }
      where la.id = ${w.id} returning ${signedBalanceSql()} as after`.execute(trx);
    const balanceAfter = after.after;
    if (charged > 0) {
      const merchantAccount = await ensureMerchantAccount(trx, hold.merchant_id, {
        allowInactive: true,
      });
      const t = await trx.insertInto("ledger_transfers").values({
        reference,
        kind: "shower",
        channel: "card",
        debit_account_id: w.id,
        credit_account_id: merchantAccount,
        amount: charged,
        card_account_id: hold.card_account_id,
        card_delta: -charged,
        balance_after: balanceAfter,
        merchant_id: hold.merchant_id,
        terminal_id: hold.terminal_id,
        details: JSON.stringify({
          holdId: hold.id,
          authorised: hold.amount,
          usage,
          late: !active,
        }),
      }).returning("id").executeTakeFirstOrThrow();
      transferId = t.id;
    }
    await trx.updateTable("ledger_holds").set({
      state: "settled",
      settle_reference: reference,
      settle_transfer_id: transferId,
      charged,
      uncollected: wanted - charged,
      closed_at: active ? new Date() : hold.closed_at,
      close_reason: active ? "settled" : hold.close_reason,
    }).where("id", "=", hold.id).execute();
    return {
      charged,
      released,
      balanceAfter,
      uncollected: wanted - charged,
      transferId,
      duplicate: false,
    };
  };
  // The settle reference collides with another hold's or transfer's reference.
  return await inTransaction(db, settle, () => {
    throw new ReferenceConflictError(reference);
  });
}

/** Ends a hold without charging (a shower that never ran). Returns what it gave back. */
export async function releaseHold(
  db: Db,
  input: { holdId: number; reason: string },
): Promise<{ released: number }> {
  return await inTransaction(db, async (trx: Trx) => {
    const hold = await trx.selectFrom("ledger_holds").select([
      "id",
      "state",
      "amount",
      "card_account_id",
    ])
      .where("id", "=", input.holdId).forUpdate().executeTakeFirst();
    if (!hold) throw new HoldNotFoundError(input.holdId);
    if (hold.state !== "active") return { released: 0 };
    await sql`update ledger_accounts la set ${settleSetSql(sql`0`, sql`${hold.amount}`)}
      where la.card_account_id = ${hold.card_account_id}`.execute(trx);
    await trx.updateTable("ledger_holds").set({
      state: "released",
      closed_at: new Date(),
      close_reason: String(input.reason ?? "released").slice(0, 100),
    }).where("id", "=", hold.id).execute();
    return { released: hold.amount };
  });
}

/**
 * Releases every active hold whose time is up, in batches; safe to run on several instances at
 * once (SKIP LOCKED). Returns how many it released.
 */
export async function expireHolds(db: Db, now: Date = new Date()): Promise<number> {
  let total = 0;
  for (;;) {
    const result = await sql<{ n: number }>`
      with due as (
        select id from ledger_holds where state = 'active' and expires_at <= ${now}
        order by id limit 200 for update skip locked
      ), expired as (
        update ledger_holds h set state = 'expired', closed_at = now(), close_reason = 'timeout'
        from due where h.id = due.id
        returning h.card_account_id, h.amount
      ), per_card as (
        select card_account_id, sum(amount) as total, count(*) as n from expired group by card_account_id
      ), unheld as (
        update ledger_accounts la set ${settleSetSql(sql`0`, sql`per_card.total`)}
        from per_card where la.card_account_id = per_card.card_account_id
        returning per_card.n
      )
      select coalesce(sum(n), 0)::int as n from unheld`.execute(db);
    const n = Number(result.rows[0]?.n ?? 0);
    total += n;
    if (n < 200) return total;
  }
}

/** The active holds of a card (for 余额). */
export async function activeHolds(
  db: Db,
  cardAccountId: number,
): Promise<
  Array<{ id: number; amount: number; merchantId: number; createdAt: Date; expiresAt: Date }>
> {
  const rows = await db.selectFrom("ledger_holds").select([
    "id",
    "amount",
    "merchant_id",
    "created_at",
    "expires_at",
  ])
    .where("card_account_id", "=", cardAccountId).where("state", "=", "active").orderBy("id")
    .execute();
  return rows.map((r) => ({
    id: r.id,
    amount: r.amount,
    merchantId: r.merchant_id,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
  }));
}
