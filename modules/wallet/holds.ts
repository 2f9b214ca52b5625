/**
 * Shower pre-authorisations: a hold (money set aside on the card, shown on 余额), its end (the
 * usage charged, the rest released), a release, and the timeout that releases forgotten ones.
 * The one-statement forms of a shower controller's common case are in holds_recorded.ts.
 */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { getMerchant } from "../merchant/mod.ts";
import {
  checkReference,
  ensureMerchantAccount,
  inTransaction,
  transferByReference,
  type Trx,
} from "./_common.ts";
import { checkAmount } from "./_amounts.ts";
import { readWallet } from "./_refusals.ts";
import {
  balanceOf,
  holdable,
  lateCharge,
  merchantAccountSql,
  merchantPlaceSql,
  NO_LIMITS,
  reserveSql,
  settleSetSql,
  type SpendAt,
} from "./_rules.ts";
import { debitCard, oneAskSql } from "./ledger.ts";
import { settleStatement } from "./holds_recorded.ts";
import type { HoldLot } from "./tables.ts";
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

/** Where a payment to a merchant is spent (its category), for the purse rule. */
async function placeOf(db: Db, merchantId: number): Promise<SpendAt> {
  return (await getMerchant(db, merchantId))?.category ?? null;
}

/**
 * Holds money on a card for a shower: up to `amount`, or what is available there if less, but
 * refused below `minimum` (default ¥1); the lots that may pay at the shower are set aside first.
 * The held money shows on 余额 and no payment can take it.
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
  const at = await placeOf(db, input.merchantId);
  const hold = async (trx: Trx): Promise<HoldResult> => {
    const { wallet, spendable, refusal } = await readWallet(
      trx,
      input.cardAccountId,
      minimum,
      { ...NO_LIMITS, at },
      { lock: true },
    );
    if (refusal) {
      throw refusal instanceof InsufficientFundsError
        ? new HoldBelowMinimumError(refusal.available, minimum)
        : refusal;
    }
    const authorised = holdable(wallet!, amount, spendable);
    const { rows: [row] } = await sql<{ id: number }>`
      with ${
      oneAskSql({
        cardAccountId: sql`${input.cardAccountId}`,
        amount: authorised,
        at: sql`${at}`,
        reference,
      })
    }, ${reserveSql({})}, h as (
        insert into ledger_holds (reference, card_account_id, merchant_id, terminal_id,
          requested, amount, expires_at, lots)
        select w.reference, w.card_account_id, ${input.merchantId}, ${input.terminalId ?? null},
          ${amount}, w.amount, ${input.expiresAt}, w.lots
        from w
        returning id
      )
      select id from h`.execute(trx);
    if (!row) throw new Error(`Cannot hold on card account ${input.cardAccountId}: row refused`);
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
  /** The balance the shower sees after (its cash and the lots that may pay there). */
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
      const b = await trx.selectFrom("ledger_accounts")
        .select(["balance", "held", "overdraft", "lots", "lots_held"])
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
    const at = await placeOf(trx, hold.merchant_id);
    if (hold.state === "active" && wanted > 0) {
      // The common case, as a reader's one statement does it (the hold is locked: it settles).
      const [done] = await settleStatement(trx, {
        // The usage is given: the terminal and units are not read.
        settlements: [{ holdId: hold.id, terminalId: hold.terminal_id ?? 0, units: 0, reference }],
        usageOf: () => sql`${wanted}`,
        records: [],
      });
      if (!done) {
        if (await transferByReference(trx, reference)) throw new ReferenceConflictError(reference);
        throw new Error(`Cannot settle hold ${hold.id}: its card has no wallet row`);
      }
      return {
        charged: done.charged,
        released: done.released,
        balanceAfter: done.here,
        uncollected: 0,
        transferId: done.transfer_id,
        duplicate: false,
      };
    }
    // Locked (lots, then the row): a card's transfer ids follow the order its balance changed in.
    const read = await readWallet(trx, hold.card_account_id, wanted || 1, { ...NO_LIMITS, at }, {
      lock: true,
    });
    if (!read.wallet) throw new Error(`Cannot settle hold ${hold.id}: its card has no wallet row`);
    const active = hold.state === "active";
    // A timed-out hold gave its money back: its late end takes only what is free now.
    const charged = active ? 0 : lateCharge(read.wallet, wanted, read.spendable);
    const released = active ? hold.amount : 0;
    if (active) await releaseStatement(trx, hold);
    let transferId: number | null = null;
    let balanceAfter = balanceOf(read.wallet, read.spendable).balance;
    if (charged > 0) {
      await ensureMerchantAccount(trx, hold.merchant_id, { allowInactive: true });
      const paid = await debitCard(trx, {
        cardAccountId: hold.card_account_id,
        amount: charged,
        reference,
        kind: "shower",
        channel: "card",
        at: merchantPlaceSql(sql`${hold.merchant_id}`),
        counterAccount: merchantAccountSql(sql`${hold.merchant_id}`, { allowInactive: true }),
        merchantId: hold.merchant_id,
        terminalId: hold.terminal_id,
        details: { holdId: hold.id, authorised: hold.amount, usage, late: true },
        rule: NO_LIMITS,
      }, () => Promise.resolve());
      transferId = paid.transferId;
      balanceAfter = paid.balanceHere;
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

/**
 * Gives an active hold (locked by the caller) back to its card: its lots' parts back to them,
 * the rest to cash. The lots, then the card's row, are locked in that order.
 */
async function releaseStatement(
  trx: Trx,
  hold: { card_account_id: number; amount: number; lots: HoldLot[] | null },
): Promise<void> {
  const parts = hold.lots ?? [];
  const ids = parts.map((p) => p.lot);
  const amounts = parts.map((p) => p.amount);
  const reserved = amounts.reduce((a, b) => a + b, 0);
  // The card's row, then the hold's lots, locked (the purse rule's order); written relative to the
  // rows, by the hold's own parts.
  await sql`
    with lk as (
      select id from ledger_accounts where card_account_id = ${hold.card_account_id} for update
    ), ll as (
      select id from purse_lots
      where id = any(${ids}::bigint[]) and (select count(*) from lk) >= 0
      order by id for update
    ), w as (
      update ledger_accounts la set ${
    settleSetSql(sql`0`, sql`${hold.amount}`, sql`0`, sql`${reserved}`)
  }
      where la.card_account_id = ${hold.card_account_id} and (select count(*) from ll) >= 0
      returning la.id
    )
    update purse_lots l set held = l.held - p.amount
    from unnest(${ids}::bigint[], ${amounts}::bigint[]) as p(lot, amount), w
    where l.id = p.lot`.execute(trx);
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
      "lots",
    ])
      .where("id", "=", input.holdId).forUpdate().executeTakeFirst();
    if (!hold) throw new HoldNotFoundError(input.holdId);
    if (hold.state !== "active") return { released: 0 };
    await releaseStatement(trx, hold);
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
    // The holds, then their cards' rows, then their lots: the order every path that ends a hold
    // locks in (settleHold, releaseHold, settleStatement).
    const result = await sql<{ n: number }>`
      with due as (
        select id from ledger_holds where state = 'active' and expires_at <= ${now}
        order by id limit 200 for update skip locked
      ), expired as (
        update ledger_holds h set state = 'expired', closed_at = now(), close_reason = 'timeout'
        from due where h.id = due.id
        returning h.card_account_id, h.amount, h.lots
      ), parts as (
        select e.card_account_id, x.lot, x.amount
        from expired e cross join lateral
          jsonb_to_recordset(coalesce(e.lots, '[]'::jsonb)) as x(lot bigint, amount bigint)
      ), per_card as (
        select e.card_account_id, sum(e.amount) as total, count(*) as n,
          coalesce((select sum(p.amount) from parts p
            where p.card_account_id = e.card_account_id), 0) as lots
        from expired e group by e.card_account_id
      ), lk as (
        select id from ledger_accounts
        where card_account_id in (select card_account_id from per_card)
        order by id for update
      ), ll as (
        select id from purse_lots
        where id in (select lot from parts) and (select count(*) from lk) >= 0
        order by id for update
      ), unheld as (
        update ledger_accounts la set ${
      settleSetSql(sql`0`, sql`per_card.total`, sql`0`, sql`per_card.lots`)
    }
        from per_card where la.card_account_id = per_card.card_account_id
          and (select count(*) from ll) >= 0
        returning per_card.n
      ), lots_unheld as (
        update purse_lots l set held = l.held - p.amount
        from (select lot, sum(amount) as amount from parts group by lot) p
        where l.id = p.lot and exists (select 1 from unheld)
        returning 1
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
