/**
 * Shower controllers' common case, group-committed: many readers' starts (each holding the whole
 * pre-authorisation) in one statement, many ends (each charging an active hold) in another, with
 * the caller's own records. Anything else returns null for that one and the caller takes
 * holds.ts's ordinary path, which says why.
 *
 * Each statement runs on one generic plan (PREPARED) with its arrays' length as a LIMIT that is
 * never reached, so every hold's card, lots and reference are found by their indexes (the comment
 * in batch.ts says why).
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
import type { Unrecorded } from "./batch.ts";

/** One shower start of a batch. */
export interface BatchHold {
  /** What `cardAccountOf` turns into the card account to hold on (e.g. a chip number). */
  payer: string;
  merchantId: number;
  terminalId: number;
  reference: string;
  expiresAt: Date;
}

/** What `holdFundsRecorded` held for one start. */
export interface HeldRecorded {
  holdId: number;
  cardAccountId: number;
  authorised: number;
  /** The balance the shower sees (its cash and the lots that may pay there; a hold changes none). */
  balance: number;
}

function validId(value: number): boolean {
  return Number.isSafeInteger(value) && value > 0;
}

/**
 * `holdFunds` of the whole `amount` and the caller's own records of it, for many shower starts in
 * one statement: one round trip, one commit. `cardAccountOf(payer)` is SQL for the card account
 * of a start's `payer` column (NULL holds nothing), `amount` SQL for what every start holds (the
 * tariff's pre-authorisation, looked up in the same statement). `record(held)` returns the
 * caller's `insert … select … from ${held}` statements, where `held` has `ord` (the start's
 * 1-based position in `holds`), `id` (the hold), `card_account_id`, `amount` and `balance`, and a
 * row only where the money was held. `unrecorded(ord)`, when given, leaves out a start already
 * answered (refused before, say), so its record cannot fail the batch.
 *
 * Returns, per start, what it held, or null, nothing written for it, for anything else (an
 * unknown or refused card, less available than the amount, a negative balance, a retry, a
 * missing merchant account): the caller then runs `holdFunds`, which holds less or says why. The
 * same card row must not appear twice in one batch (PostgreSQL updates a row once per statement:
 * the second returns null). Database errors (a record already there) are thrown, nothing written.
 */
export async function holdFundsRecorded(
  db: Db,
  input: {
    holds: BatchHold[];
    cardAccountOf: (payer: RawBuilder<string>) => RawBuilder<number | null>;
    amount: RawBuilder<number | null>;
    record: (held: RawBuilder<unknown>) => RawBuilder<unknown>[];
    unrecorded?: Unrecorded;
  },
): Promise<Array<HeldRecorded | null>> {
  const out: Array<HeldRecorded | null> = input.holds.map(() => null);
  const runs = input.holds.map((h, i) => ({ h, i })).filter(({ h }) =>
    h.expiresAt instanceof Date && !isNaN(h.expiresAt.getTime()) && validId(h.terminalId) &&
    validId(h.merchantId)
  );
  // Only valid starts go in; `ord` is still each start's position in `holds`.
  const n = runs.length;
  if (n === 0) return out;
  const references = runs.map(({ h }) => checkReference(h.reference));
  const records = input.record(sql.raw("held")).map((r, i) =>
    sql`, ${sql.raw(`recorded_${i}`)} as (${r})`
  );
  const result = await sql<
    { reference: string; id: number; card_account_id: number; amount: number; balance: number }
  >`${sql.raw(PREPARED)}
    with ask as materialized (
      select i.ord, (${input.cardAccountOf(sql.raw("i.payer"))})::bigint as card_account_id,
        (${input.amount})::bigint as amount, ${merchantPlaceSql(sql`i.merchant_id`)} as at,
        i.reference, i.merchant_id, i.terminal_id, i.expires_at,
        ${merchantAccountSql(sql`i.merchant_id`)} as merchant_account,
        exists (select 1 from ledger_holds lh where lh.reference = i.reference) as used
      from (
        select * from unnest(${runs.map(({ h }) => String(h.payer))}::text[],
          ${runs.map(({ h }) => h.merchantId)}::bigint[], ${
    runs.map(({ h }) => h.terminalId)
  }::bigint[],
          ${references}::text[], ${runs.map(({ h }) => h.expiresAt)}::timestamptz[],
          ${runs.map(({ i }) => i + 1)}::bigint[])
          as u(payer, merchant_id, terminal_id, reference, expires_at, ord)
        limit ${n}
      ) i
    ), ${
    reserveSql({
      also: [
        sql`a.amount between 1 and ${MAX_AMOUNT}`,
        sql`a.merchant_account is not null`,
        sql`not a.used`,
        ...(input.unrecorded ? [input.unrecorded(sql`a.ord`)] : []),
      ],
      returning: sql`, a.merchant_id, a.terminal_id, a.expires_at`,
    })
  }, h as (
      insert into ledger_holds (reference, card_account_id, merchant_id, terminal_id, requested,
        amount, expires_at, lots)
      select w.reference, w.card_account_id, w.merchant_id, w.terminal_id, w.amount, w.amount,
        w.expires_at, w.lots
      from w
      returning id, reference, card_account_id, amount
    ), held as (
      select w.ord, h.reference, h.id, h.card_account_id, h.amount, w.here as balance
      from h join w on w.reference = h.reference
    )${sql.join(records, sql``)}
    select reference, id, card_account_id, amount, balance from held`.execute(db);
  // Data-modifying CTEs run to completion whether read or not: every hold has its records.
  // Results are matched back by reference (unique in a batch).
  const position = new Map(runs.map(({ i }, k) => [references[k], i]));
  for (const row of result.rows) {
    const i = position.get(row.reference);
    if (i !== undefined) {
      out[i] = {
        holdId: row.id,
        cardAccountId: row.card_account_id,
        authorised: row.amount,
        balance: row.balance,
      };
    }
  }
  return out;
}

/** One shower end of a batch. */
export interface BatchSettlement {
  holdId: number;
  /** The terminal reporting the end and its `units` of usage, for the caller's `usageOf`. */
  terminalId: number;
  units: number;
  reference: string;
}

/** A row of `settleStatement`, one per hold it settled. */
interface SettledRow {
  reference: string;
  card_account_id: number;
  charged: number;
  released: number;
  balance_after: number;
  here: number;
  transfer_id: number;
}

/** The columns of a settlement that `usageOf` may read. */
export interface SettlementColumns {
  holdId: RawBuilder<number>;
  terminalId: RawBuilder<number>;
  units: RawBuilder<number>;
}

/**
 * One statement that ends active holds, never settled, each with a usage (SQL) of at least 1 fen:
 * charges the usage (at most the hold; the lots it set aside pay first, in the order it drew
 * them, then cash), releases the rest and records the shower's transfer and legs, then the
 * caller's `records` (CTE text over `settled`). A hold that does not end here has no row and
 * nothing written for it; nor has a hold whose card has an earlier hold in the same statement
 * (a card's row is updated once per statement). `settled` has `ord`, `reference`,
 * `card_account_id`, `charged`, `released`, `balance_after` (the balance the shower sees after)
 * and `transfer_id`. Also the ordinary `settleHold`'s, for an active hold.
 */
export async function settleStatement(
  db: Db,
  p: {
    settlements: BatchSettlement[];
    /** Each settlement's `ord` in `settled` (default: its 1-based position). */
    ords?: number[];
    usageOf: (s: SettlementColumns) => RawBuilder<number | null>;
    records: RawBuilder<unknown>[];
    unrecorded?: Unrecorded;
  },
): Promise<SettledRow[]> {
  const n = p.settlements.length;
  if (n === 0) return [];
  const s = p.settlements;
  // The transfer's id is drawn in the hold's update, so the hold names it in its one update (a row
  // cannot be updated twice in one statement). The lock order is the holds' own, as expireHolds'
  // and settleHold's: the batch's holds first, in id order (hk), then the cards' wallet rows in id
  // order (lk), then their lots (ll), all before that update. Locking a card before its hold would
  // deadlock with a sweep or an ordinary settle that holds the hold and asks for the card. A hold
  // settled or timed out while hk waited is not updated (h rechecks its state on the newest row)
  // and goes the ordinary way. A card's transfer ids must follow the order its balance changed in
  // (the verifier reads each card's balance-after chain in id order), and two showers of one card
  // may end at once: both are settled by the card's lock. What it writes follows from the hold
  // alone (its amount, its lots' parts, the usage), relative to the rows it updates (_purses.ts).
  const usage = p.usageOf({
    holdId: sql.raw("i.hold_id"),
    terminalId: sql.raw("i.terminal_id"),
    units: sql.raw("i.units"),
  });
  const result = await sql<SettledRow>`${sql.raw(PREPARED)}
    with u as materialized (
      select i.ord, i.hold_id, i.reference, (${usage})::bigint as usage
      from (
        select * from unnest(${s.map((x) => x.holdId)}::bigint[],
          ${s.map((x) => x.terminalId)}::bigint[], ${s.map((x) => x.units)}::bigint[],
          ${s.map((x) => x.reference)}::text[], ${p.ords ?? s.map((_, i) => i + 1)}::bigint[])
          as x(hold_id, terminal_id, units, reference, ord)
        limit ${n}
      ) i
    ), hk as materialized (
      select lh.id, lh.card_account_id, lh.merchant_id from ledger_holds lh
      where lh.id in (select hold_id from u)
      order by lh.id
      for update
    ), hl as materialized (
      select x.ord, x.hold_id, x.reference, x.usage, x.card_account_id, x.merchant_id
      from (
        select u.*, hk.card_account_id, hk.merchant_id,
          row_number() over (partition by hk.card_account_id order by u.ord) as nth_of_card
        from u join hk on hk.id = u.hold_id
      ) x
      where x.nth_of_card = 1
    ), lk as (
      select a.id, a.card_account_id from ledger_accounts a
      where a.card_account_id in (select card_account_id from hl)
        and (select count(*) from hk) >= 0
      order by a.id
      for update
    ), ll as (
      select l.id, l.card_account_id, l.remaining, l.held,
        ${spendableSql(merchantPlaceSql(sql`hl.merchant_id`))} as here
      from hl join lk on lk.card_account_id = hl.card_account_id
      join purse_lots l on l.card_account_id = hl.card_account_id
      join purse_kinds pk on pk.code = l.purse
      where l.remaining > 0
      order by l.id
      for update of l
    ), h as (
      update ledger_holds set state = 'settled', settle_reference = hl.reference,
        settle_transfer_id = nextval(pg_get_serial_sequence('ledger_transfers', 'id')),
        charged = least(hl.usage, ledger_holds.amount), uncollected = 0, closed_at = now(),
        close_reason = 'settled'
      from hl join lk on lk.card_account_id = hl.card_account_id
      where ledger_holds.id = hl.hold_id and ledger_holds.state = 'active'
        and ledger_holds.settle_reference is null and hl.usage between 1 and ${MAX_AMOUNT}
        and not exists (select 1 from ledger_transfers lt where lt.reference = hl.reference)
        and (select count(*) from ll) >= 0 ${
    p.unrecorded ? sql`and ${p.unrecorded(sql`hl.ord`)}` : sql``
  }
      returning ledger_holds.id, ledger_holds.card_account_id, ledger_holds.merchant_id,
        ledger_holds.terminal_id, ledger_holds.amount, ledger_holds.charged,
        ledger_holds.settle_transfer_id, ledger_holds.lots, hl.usage, hl.reference, hl.ord
    ), ${holdLotsSql()}, w as (
      update ledger_accounts la set ${
    settleSetSql(sql`h.charged`, sql`h.amount`, sql`hs.charge`, sql`hs.reserved`)
  }
      from h join hs on hs.hold = h.id
      where la.card_account_id = h.card_account_id
      returning la.id, la.card_account_id, la.balance - la.overdraft as after,
        la.balance - la.overdraft - la.lots + (select coalesce(sum(ll.remaining
          - coalesce((select hc.charge from hc where hc.lot = ll.id), 0)), 0)
          from ll where ll.here and ll.card_account_id = la.card_account_id) as here
    ), hu as (
      update purse_lots l set held = l.held - hc.reserved, remaining = l.remaining - hc.charge
      from hc join h on h.id = hc.hold join w on w.card_account_id = h.card_account_id
      where l.id = hc.lot
      returning l.id
    ), t as (
      insert into ledger_transfers (id, reference, kind, channel, debit_account_id,
        credit_account_id, amount, card_account_id, card_delta, balance_after, merchant_id,
        terminal_id, details)
      overriding system value
      select h.settle_transfer_id, h.reference, 'shower', 'card', w.id,
        ${merchantAccountSql(sql`h.merchant_id`, { allowInactive: true })}, h.charged,
        h.card_account_id, -h.charged, w.after, h.merchant_id, h.terminal_id,
        jsonb_build_object('holdId', h.id, 'authorised', h.amount, 'usage', h.usage,
          'late', false)
      -- Without a wallet row lk is empty and nothing is updated: the caller's fallback answers.
      from h left join w on w.card_account_id = h.card_account_id
      returning id, card_account_id, amount, balance_after
    ), legs as (
      insert into purse_legs (transfer_id, lot_id, amount)
      select t.id, hc.lot, -hc.charge
      from hc join h on h.id = hc.hold join t on t.id = h.settle_transfer_id
      where hc.charge > 0
      returning 1
    ), settled as (
      select h.ord, h.reference, t.id as transfer_id, t.card_account_id, t.amount as charged,
        h.amount - t.amount as released, w.here as balance_after, t.balance_after as after
      from t join h on h.settle_transfer_id = t.id join w on w.card_account_id = t.card_account_id
    )${sql.join(p.records, sql``)}
    select reference, transfer_id, card_account_id, charged, released, after as balance_after,
      balance_after as here
    from settled`.execute(db);
  return result.rows;
}

/** What `settleHoldRecorded` charged and gave back for one end. */
export interface SettledRecorded {
  cardAccountId: number;
  charged: number;
  released: number;
  /** The balance the shower sees after (its cash and the lots that may pay there). */
  balanceAfter: number;
  transferId: number;
}

/**
 * `settleHold` and the caller's own record of it, for many shower ends in one statement: each an
 * active hold, never settled, charged a usage of at least 1 fen (at most the hold; the rest is
 * released). `usageOf` is SQL for an end's usage from its columns (the controller's units at the
 * start's tariff, looked up in the same statement); NULL refuses. `record(settled)` returns the
 * caller's `insert … select … from ${settled}` statements, where `settled` has `ord` (the end's
 * 1-based position in `settlements`), `card_account_id`, `charged`, `released` and
 * `balance_after` (the balance the shower sees after), and a row only where the hold was settled.
 * `unrecorded(ord)`, when given, leaves out an end already answered, as `holdFundsRecorded`'s.
 *
 * Returns, per end, what it did, or null, nothing written for it, for anything else (no such
 * hold, settled, timed out, zero usage, a retry, a later hold of a card in the batch): the
 * caller then runs `settleHold`, which answers those. Database errors (a record already there) are
 * thrown, nothing written.
 */
export async function settleHoldRecorded(
  db: Db,
  input: {
    settlements: BatchSettlement[];
    usageOf: (s: SettlementColumns) => RawBuilder<number | null>;
    record: (settled: RawBuilder<unknown>) => RawBuilder<unknown>[];
    unrecorded?: Unrecorded;
  },
): Promise<Array<SettledRecorded | null>> {
  const out: Array<SettledRecorded | null> = input.settlements.map(() => null);
  // A hold twice in a batch would be updated once: each hold, and each reference, goes in once.
  const holds = new Set<number>();
  const runs: number[] = [];
  const references: string[] = [];
  input.settlements.forEach((x, i) => {
    if (
      !validId(x.holdId) || !validId(x.terminalId) || !Number.isSafeInteger(x.units) ||
      x.units < 0 || holds.has(x.holdId)
    ) return;
    const reference = checkReference(x.reference);
    if (references.includes(reference)) return;
    holds.add(x.holdId);
    runs.push(i);
    references.push(reference);
  });
  if (runs.length === 0) return out;
  const records = input.record(sql.raw("settled")).map((r, i) =>
    sql`, ${sql.raw(`recorded_${i}`)} as (${r})`
  );
  const rows = await settleStatement(db, {
    settlements: runs.map((i, k) => ({ ...input.settlements[i], reference: references[k] })),
    ords: runs.map((i) => i + 1),
    usageOf: input.usageOf,
    records,
    unrecorded: input.unrecorded,
  });
  const position = new Map(runs.map((i, k) => [references[k], i]));
  for (const row of rows) {
    const i = position.get(row.reference);
    if (i !== undefined) {
      out[i] = {
        cardAccountId: row.card_account_id,
        charged: row.charged,
        released: row.released,
        balanceAfter: row.here,
        transferId: row.transfer_id,
      };
    }
  }
  return out;
}
