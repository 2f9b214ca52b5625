/**
 * A shower controller's common case, each in one statement with the caller's own records: a start
 * that holds the whole pre-authorisation, an end that charges an active hold. Anything else
 * returns null and the caller takes holds.ts's ordinary path, which says why.
 */
import { type RawBuilder, sql } from "kysely";
import { type Db, PREPARED } from "../platform/database.ts";
import { checkReference } from "./_common.ts";
import { MAX_AMOUNT } from "./_amounts.ts";
import {
  holdLotsSql,
  merchantAccountSql,
  merchantPlaceSql,
  reserveSql,
  settleSetSql,
} from "./_rules.ts";
import { spendableSql } from "./_purses.ts";

/** What `holdFundsRecorded` held. */
export interface HeldRecorded {
  holdId: number;
  cardAccountId: number;
  authorised: number;
  /** The balance the shower sees (its cash and the lots that may pay there; a hold changes none). */
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
    with ask as materialized (
      select 1 as ord, (${input.cardAccountId})::bigint as card_account_id,
        (${input.amount})::bigint as amount,
        ${merchantPlaceSql(sql`${input.merchantId}`)} as at, ${reference}::text as reference
    ), ${
    reserveSql({
      also: [
        sql`a.amount between 1 and ${MAX_AMOUNT}`,
        sql`${merchantAccountSql(sql`${input.merchantId}`)} is not null`,
        sql`not exists (select 1 from ledger_holds where reference = ${reference})`,
      ],
    })
  }, h as (
      insert into ledger_holds (reference, card_account_id, merchant_id, terminal_id, requested,
        amount, expires_at, lots)
      select w.reference, w.card_account_id, ${input.merchantId}, ${input.terminalId}, w.amount,
        w.amount, ${input.expiresAt}, w.lots
      from w
      returning id, card_account_id, amount
    ), held as (
      select h.id, h.card_account_id, h.amount, w.here as balance from h, w
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

/** A row of `settleStatement`. */
interface SettledRow {
  card_account_id: number;
  charged: number;
  released: number;
  balance_after: number;
  here: number;
  transfer_id: number;
}

/**
 * One statement that ends an active hold, never settled, with a usage (SQL) of at least 1 fen:
 * charges the usage (at most the hold; the lots it set aside pay first, in the order it drew
 * them, then cash), releases the rest and records the shower's transfer and legs, then the
 * caller's `records` (CTE text over `settled`). No row, nothing written, for anything else.
 * `settled` has `card_account_id`, `charged`, `released`, `balance_after` (the balance the shower
 * sees after) and `transfer_id`. Also the ordinary `settleHold`'s, for an active hold.
 */
export async function settleStatement(
  db: Db,
  p: {
    holdId: number;
    usage: RawBuilder<number | null>;
    reference: string;
    records: RawBuilder<unknown>[];
  },
): Promise<SettledRow | null> {
  const { holdId, reference } = p;
  // The transfer's id is drawn in the hold's update, so the hold names it in its one update (a row
  // cannot be updated twice in one statement). The card's wallet row, then its lots, are locked
  // before that (lk, ll): the purse rule's lock order, and a card's transfer ids must follow the
  // order its balance changed in (the verifier reads each card's balance-after chain in id order),
  // and two showers of one card may end at once. What it writes follows from the hold alone (its
  // amount, its lots' parts, the usage), relative to the rows it updates (_purses.ts).
  const place = merchantPlaceSql(sql`(select merchant_id from hl)`);
  const result = await sql<SettledRow>`${sql.raw(PREPARED)}
    with u as (
      select (${p.usage})::bigint as usage
    ), hl as (
      select card_account_id, merchant_id from ledger_holds where id = ${holdId}
    ), lk as (
      select a.id from ledger_accounts a
      where a.card_account_id = (select card_account_id from hl)
      for update
    ), ll as (
      select l.id, l.remaining, l.held, ${spendableSql(place)} as here
      from purse_lots l join purse_kinds pk on pk.code = l.purse
      where l.card_account_id = (select card_account_id from hl) and l.remaining > 0
        and (select count(*) from lk) > 0
      order by l.id
      for update of l
    ), h as (
      update ledger_holds set state = 'settled', settle_reference = ${reference},
        settle_transfer_id = nextval(pg_get_serial_sequence('ledger_transfers', 'id')),
        charged = least(u.usage, ledger_holds.amount), uncollected = 0, closed_at = now(),
        close_reason = 'settled'
      from u, lk
      where ledger_holds.id = ${holdId} and ledger_holds.state = 'active'
        and ledger_holds.settle_reference is null and u.usage between 1 and ${MAX_AMOUNT}
        and not exists (select 1 from ledger_transfers where reference = ${reference})
        and (select count(*) from ll) >= 0
      returning ledger_holds.id, ledger_holds.card_account_id, ledger_holds.merchant_id,
        ledger_holds.terminal_id, ledger_holds.amount, ledger_holds.charged,
        ledger_holds.settle_transfer_id, ledger_holds.lots, u.usage
    ), ${holdLotsSql()}, w as (
      update ledger_accounts la set ${
    settleSetSql(sql`h.charged`, sql`h.amount`, sql`hs.charge`, sql`hs.reserved`)
  }
      from h, hs where la.card_account_id = h.card_account_id
      returning la.id, la.balance - la.overdraft as after,
        la.balance - la.overdraft - la.lots + (select coalesce(sum(ll.remaining
          - coalesce((select hc.charge from hc where hc.lot = ll.id), 0)), 0)
          from ll where ll.here) as here
    ), hu as (
      update purse_lots l set held = l.held - hc.reserved, remaining = l.remaining - hc.charge
      from hc, w where l.id = hc.lot
      returning l.id
    ), t as (
      insert into ledger_transfers (id, reference, kind, channel, debit_account_id,
        credit_account_id, amount, card_account_id, card_delta, balance_after, merchant_id,
        terminal_id, details)
      overriding system value
      select h.settle_transfer_id, ${reference}, 'shower', 'card', w.id,
        ${merchantAccountSql(sql`h.merchant_id`, { allowInactive: true })}, h.charged,
        h.card_account_id, -h.charged, w.after, h.merchant_id, h.terminal_id,
        jsonb_build_object('holdId', h.id, 'authorised', h.amount, 'usage', h.usage,
          'late', false)
      -- Without a wallet row lk is empty and nothing is updated: the caller's fallback answers.
      from h left join w on true
      returning id, card_account_id, amount, balance_after
    ), legs as (
      insert into purse_legs (transfer_id, lot_id, amount)
      select t.id, hc.lot, -hc.charge from hc, t where hc.charge > 0
      returning 1
    ), settled as (
      select t.id as transfer_id, t.card_account_id, t.amount as charged,
        h.amount - t.amount as released, w.here as balance_after, t.balance_after as after
      from t, h, w
    )${sql.join(p.records, sql``)}
    select transfer_id, card_account_id, charged, released, after as balance_after,
      balance_after as here
    from settled`.execute(db);
  return result.rows[0] ?? null;
}

/** What `settleHoldRecorded` charged and gave back. */
export interface SettledRecorded {
  cardAccountId: number;
  charged: number;
  released: number;
  /** The balance the shower sees after (its cash and the lots that may pay there). */
  balanceAfter: number;
  transferId: number;
}

/**
 * `settleHold` and the caller's own record of it in one statement, for a shower controller's hot
 * path: an active hold, never settled, charged a usage of at least 1 fen (at most the hold; the
 * rest is released). `usage` is SQL (the controller's units at the start's tariff, looked up in
 * the same statement); NULL refuses. `record(settled)` returns the caller's
 * `insert … select … from ${settled}` statements, where `settled` has `card_account_id`,
 * `charged`, `released` and `balance_after` (the balance the shower sees after), and a row only
 * when the hold was settled. Returns
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
  const result = await settleStatement(db, {
    holdId: input.holdId,
    usage: input.usage,
    reference,
    records,
  });
  const row = result;
  return row
    ? {
      cardAccountId: row.card_account_id,
      charged: row.charged,
      released: row.released,
      balanceAfter: row.here,
      transferId: row.transfer_id,
    }
    : null;
}
