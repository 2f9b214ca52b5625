import { type RawBuilder, sql } from "kysely";
import { type Db, PREPARED } from "../platform/database.ts";
import {
  checkAmount,
  checkReference,
  ensureMerchantAccount,
  inTransaction,
  isUniqueViolation,
  MAX_AMOUNT,
} from "./_common.ts";
import {
  HoldAlreadySettledError,
  HoldBelowMinimumError,
  HoldNotFoundError,
  InvalidAmountError,
  NegativeBalanceError,
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
  try {
    return await inTransaction(db, async (trx) => {
      const w = await trx.selectFrom("ledger_accounts").select([
        "id",
        "balance",
        "held",
        "overdraft",
      ])
        .where("card_account_id", "=", input.cardAccountId).forUpdate().executeTakeFirst();
      if (!w) throw new HoldBelowMinimumError(0, minimum);
      if (w.overdraft > 0) throw new NegativeBalanceError(w.balance - w.overdraft);
      const available = w.balance - w.held;
      const authorised = Math.min(amount, available);
      if (authorised < minimum) throw new HoldBelowMinimumError(available, minimum);
      await trx.updateTable("ledger_accounts").set({ held: sql`held + ${authorised}` }).where(
        "id",
        "=",
        w.id,
      ).execute();
      const hold = await trx.insertInto("ledger_holds").values({
        reference,
        card_account_id: input.cardAccountId,
        merchant_id: input.merchantId,
        terminal_id: input.terminalId ?? null,
        requested: amount,
        amount: authorised,
        expires_at: input.expiresAt,
      }).returning("id").executeTakeFirstOrThrow();
      return { holdId: hold.id, authorised, duplicate: false };
    });
  } catch (err) {
    if (!isUniqueViolation(err) || db.isTransaction) throw err;
    const again = await existing();
    if (again) return again;
    throw err;
  }
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
  try {
    return await inTransaction(db, async (trx) => {
      const hold = await trx.selectFrom("ledger_holds").selectAll().where("id", "=", input.holdId)
        .forUpdate()
        .executeTakeFirst();
      if (!hold) throw new HoldNotFoundError(input.holdId);
      if (hold.settle_reference !== null) {
        if (hold.settle_reference !== reference) throw new HoldAlreadySettledError(hold.id);
        const t = hold.settle_transfer_id === null ? null : await trx.selectFrom("ledger_transfers")
          .select("balance_after").where("id", "=", hold.settle_transfer_id).executeTakeFirst();
        const b = await trx.selectFrom("ledger_accounts").select(["balance", "overdraft"])
          .where("card_account_id", "=", hold.card_account_id).executeTakeFirstOrThrow();
        return {
          charged: hold.charged ?? 0,
          released: hold.close_reason === "settled" ? hold.amount - (hold.charged ?? 0) : 0,
          balanceAfter: t?.balance_after ?? b.balance - b.overdraft,
          uncollected: hold.uncollected ?? 0,
          transferId: hold.settle_transfer_id,
          duplicate: true,
        };
      }
      const w = await trx.selectFrom("ledger_accounts").select([
        "id",
        "balance",
        "held",
        "overdraft",
      ])
        .where("card_account_id", "=", hold.card_account_id).forUpdate().executeTakeFirstOrThrow();
      const wanted = Math.min(usage, hold.amount);
      const active = hold.state === "active";
      const free = w.overdraft > 0 ? 0 : w.balance - w.held;
      const charged = active ? wanted : Math.min(wanted, Math.max(0, free));
      const released = active ? hold.amount - charged : 0;
      const newHeld = active ? w.held - hold.amount : w.held;
      let transferId: number | null = null;
      const balanceAfter = w.balance - charged - w.overdraft;
      await trx.updateTable("ledger_accounts").set({ balance: w.balance - charged, held: newHeld })
        .where("id", "=", w.id).execute();
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
    });
  } catch (err) {
    if (!isUniqueViolation(err) || db.isTransaction) throw err;
    // The settle reference collides with another hold's or transfer's reference.
    throw new ReferenceConflictError(reference);
  }
}

/** Ends a hold without charging (a shower that never ran). Returns what it gave back. */
export async function releaseHold(
  db: Db,
  input: { holdId: number; reason: string },
): Promise<{ released: number }> {
  return await inTransaction(db, async (trx) => {
    const hold = await trx.selectFrom("ledger_holds").select([
      "id",
      "state",
      "amount",
      "card_account_id",
    ])
      .where("id", "=", input.holdId).forUpdate().executeTakeFirst();
    if (!hold) throw new HoldNotFoundError(input.holdId);
    if (hold.state !== "active") return { released: 0 };
    await trx.updateTable("ledger_accounts").set({ held: sql`held - ${hold.amount}` })
      .where("card_account_id", "=", hold.card_account_id).execute();
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
        update ledger_accounts a set held = a.held - per_card.total
        from per_card where a.card_account_id = per_card.card_account_id
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

/** What `holdFundsRecorded` held. */
export interface HeldRecorded {
  holdId: number;
  cardAccountId: number;
  authorised: number;
  /** The card's signed balance (a hold does not change it). */
  balance: number;
}

/**
 * `holdFunds` and the caller's own records of it in one statement, for a shower controller's hot
 * path: one round trip, one commit. `cardAccountId` and `amount` are SQL (the reader's chip and
 * the tariff's pre-authorisation, looked up in the same statement). Only the whole amount is held
 * here; `record(held)` returns the caller's `insert … select … from ${held}` statements, where
 * `held` has `id` (the hold), `card_account_id`, `amount` and `balance`, and a row only when the
 * money was held. Returns null, nothing written, for anything else (an unknown or refused card,
 * less available than the amount, a negative balance, a retry, a conflict, a missing merchant
 * account): the caller then runs `holdFunds`, which holds less or says why.
 */
export async function holdFundsRecorded(
  db: Db,
  input: {
    cardAccountId: RawBuilder<number | null>;
    amount: RawBuilder<number | null>;
    merchantId: number;
    terminalId: number;
    reference: string;
    expiresAt: Date;
    record: (held: RawBuilder<unknown>) => RawBuilder<unknown>[];
  },
): Promise<HeldRecorded | null> {
  const reference = checkReference(input.reference);
  if (
    !(input.expiresAt instanceof Date) || isNaN(input.expiresAt.getTime()) ||
    !Number.isSafeInteger(input.terminalId) || input.terminalId <= 0
  ) {
    return null;
  }
  const records = input.record(sql.raw("held")).map((r, i) =>
    sql`, ${sql.raw(`recorded_${i}`)} as (${r})`
  );
  const result = await sql<
    { id: number; card_account_id: number; amount: number; balance: number }
  >`${sql.raw(PREPARED)}
    with ask as (
      select (${input.cardAccountId})::bigint as card_account_id, (${input.amount})::bigint as amount
    ), w as (
      update ledger_accounts a set held = a.held + ask.amount
      from ask
      where a.card_account_id = ask.card_account_id and a.overdraft = 0
        and ask.amount between 1 and ${MAX_AMOUNT} and a.balance - a.held >= ask.amount
        and exists (select 1 from ledger_accounts la join merchants m on m.id = la.merchant_id
          where la.merchant_id = ${input.merchantId} and m.active)
        and not exists (select 1 from ledger_holds where reference = ${reference})
      returning a.card_account_id, ask.amount, a.balance - a.overdraft as balance
    ), h as (
      insert into ledger_holds (reference, card_account_id, merchant_id, terminal_id, requested,
        amount, expires_at)
      select ${reference}, w.card_account_id, ${input.merchantId}, ${input.terminalId}, w.amount,
        w.amount, ${input.expiresAt}
      from w
      returning id, card_account_id, amount
    ), held as (
      select h.id, h.card_account_id, h.amount, w.balance from h, w
    )${sql.join(records, sql``)}
    select id, card_account_id, amount, balance from held`.execute(db);
  const row = result.rows[0];
  return row
    ? {
      holdId: row.id,
      cardAccountId: row.card_account_id,
      authorised: row.amount,
      balance: row.balance,
    }
    : null;
}

/** What `settleHoldRecorded` charged and gave back. */
export interface SettledRecorded {
  cardAccountId: number;
  charged: number;
  released: number;
  balanceAfter: number;
  transferId: number;
}

/**
 * `settleHold` and the caller's own record of it in one statement, for a shower controller's hot
 * path: an active hold, never settled, charged a usage of at least 1 fen (at most the hold; the
 * rest is released). `usage` is SQL (the controller's units at the start's tariff, looked up in
 * the same statement); NULL refuses. `record(settled)` returns the caller's
 * `insert … select … from ${settled}` statements, where `settled` has `card_account_id`,
 * `charged`, `released` and `balance_after`, and a row only when the hold was settled. Returns
 * null, nothing written, for anything else (no such hold, settled, timed out, zero usage, a
 * retry, a conflict): the caller then runs `settleHold`, which answers those.
 */
export async function settleHoldRecorded(
  db: Db,
  input: {
    holdId: number;
    usage: RawBuilder<number | null>;
    reference: string;
    record: (settled: RawBuilder<unknown>) => RawBuilder<unknown>[];
  },
): Promise<SettledRecorded | null> {
  const reference = checkReference(input.reference);
  if (!Number.isSafeInteger(input.holdId) || input.holdId <= 0) return null;
  const records = input.record(sql.raw("settled")).map((r, i) =>
    sql`, ${sql.raw(`recorded_${i}`)} as (${r})`
  );
  // The transfer's id is drawn in the hold's update, so the hold names it in its one update (a row
  // cannot be updated twice in one statement). The card's wallet row is locked before that (lk):
  // a card's transfer ids must follow the order its balance changed in (the verifier reads each
  // card's balance-after chain in id order), and two showers of one card may end at once.
  const result = await sql<{
    card_account_id: number;
    charged: number;
    released: number;
    balance_after: number;
    transfer_id: number;
  }>`${sql.raw(PREPARED)}
    with u as (
      select (${input.usage})::bigint as usage
    ), lk as (
      select a.id from ledger_accounts a
      where a.card_account_id = (select card_account_id from ledger_holds where id = ${input.holdId})
      for update
    ), h as (
      update ledger_holds set state = 'settled', settle_reference = ${reference},
        settle_transfer_id = nextval(pg_get_serial_sequence('ledger_transfers', 'id')),
        charged = least(u.usage, ledger_holds.amount), uncollected = 0, closed_at = now(),
        close_reason = 'settled'
      from u, lk
      where ledger_holds.id = ${input.holdId} and ledger_holds.state = 'active'
        and ledger_holds.settle_reference is null and u.usage between 1 and ${MAX_AMOUNT}
        and not exists (select 1 from ledger_transfers where reference = ${reference})
      returning ledger_holds.id, ledger_holds.card_account_id, ledger_holds.merchant_id,
        ledger_holds.terminal_id, ledger_holds.amount, ledger_holds.charged,
        ledger_holds.settle_transfer_id, u.usage
    ), w as (
      update ledger_accounts a set balance = a.balance - h.charged, held = a.held - h.amount
      from h where a.card_account_id = h.card_account_id
      returning a.id, a.balance - a.overdraft as after
    ), t as (
      insert into ledger_transfers (id, reference, kind, channel, debit_account_id,
        credit_account_id, amount, card_account_id, card_delta, balance_after, merchant_id,
        terminal_id, details)
      overriding system value
      select h.settle_transfer_id, ${reference}, 'shower', 'card', w.id,
        (select la.id from ledger_accounts la where la.merchant_id = h.merchant_id), h.charged,
        h.card_account_id, -h.charged, w.after, h.merchant_id, h.terminal_id,
        jsonb_build_object('holdId', h.id, 'authorised', h.amount, 'usage', h.usage,
          'late', false)
      -- Without a wallet row lk is empty and nothing is updated: the caller's fallback answers.
      from h left join w on true
      returning id, card_account_id, amount, balance_after
    ), settled as (
      select t.id as transfer_id, t.card_account_id, t.amount as charged,
        h.amount - t.amount as released, t.balance_after
      from t, h
    )${sql.join(records, sql``)}
    select transfer_id, card_account_id, charged, released, balance_after from settled`.execute(db);
  const row = result.rows[0];
  return row
    ? {
      cardAccountId: row.card_account_id,
      charged: row.charged,
      released: row.released,
      balanceAfter: row.balance_after,
      transferId: row.transfer_id,
    }
    : null;
}
