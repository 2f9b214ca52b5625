/**
 * Group commit of card payments: many readers' approved payments in one statement, so they share
 * one round trip, one commit and one WAL flush. Each payment is checked on its own card row; a
 * refused one simply does not pay and the others do.
 */
import { type RawBuilder, sql } from "kysely";
import { type Db, PREPARED } from "../platform/database.ts";
import { checkReference } from "./_common.ts";
import { checkAmount } from "./_amounts.ts";
import { debitSql, merchantAccountSql, merchantPlaceSql, pricedAskSql } from "./_rules.ts";
import { debitLegsSql } from "./_purses.ts";
import { InvalidAmountError } from "./errors.ts";
import type { PaymentResult } from "./ledger.ts";

/** One payment of a batch. */
export interface BatchPayment {
  /** What `cardAccountOf` turns into the paying card account (e.g. a chip number). */
  payer: string;
  merchantId: number;
  amount: number;
  reference: string;
  terminalId: number | null;
}

function checkId(value: number | null, what: string): number | null {
  if (value === null) return null;
  if (!Number.isSafeInteger(value) || value <= 0) throw new InvalidAmountError(value, what);
  return value;
}

/**
 * Card payments (`payFromCard`'s debit rule) with the caller's records, many in one statement.
 * `cardAccountOf(payer)` is SQL for the card account of one payment's `payer` column (NULL pays
 * nothing), e.g. card's payable chip.
 * `record(paid)` returns an `insert … select … from ${paid}`: `paid` holds one row per payment
 * that moved money, with `ord` (the payment's 1-based position in `payments`), `id`,
 * `card_account_id` and `balance_after` (the balance its merchant sees after it: the card's
 * cash and the lots that may pay there, what a reader shows); the record commits with the money
 * or not at all.
 *
 * Returns, per payment, its result or null when it did not pay (refused by its card row, the
 * reference already used, no card, no active merchant account); the caller takes the ordinary path
 * for those, which says why. The same card row must not appear twice in one batch: PostgreSQL
 * updates a row once per statement, so only one of them would pay (the other returns null).
 * Database errors (a duplicate reference or record) are thrown with nothing written.
 */
export async function payFromCardsRecorded(
  db: Db,
  input: {
    payments: BatchPayment[];
    channel: "card" | "qr";
    cardAccountOf: (payer: RawBuilder<string>) => RawBuilder<number | null>;
    record: (paid: RawBuilder<unknown>) => RawBuilder<unknown>;
  },
): Promise<Array<PaymentResult | null>> {
  const n = input.payments.length;
  if (n === 0) return [];
  const payers: string[] = [];
  const merchants: number[] = [];
  const amounts: number[] = [];
  const references: string[] = [];
  const terminals: Array<number | null> = [];
  for (const p of input.payments) {
    payers.push(String(p.payer));
    merchants.push(checkId(p.merchantId, "merchantId")!);
    amounts.push(checkAmount(p.amount));
    references.push(checkReference(p.reference));
    terminals.push(checkId(p.terminalId, "terminalId"));
  }
  const now = new Date();
  const priced = pricedAskSql(now);
  // The statement runs on one generic plan (PREPARED), planned without the arrays' length: to
  // PostgreSQL a bare unnest of a parameter is 10 rows, and against a few thousand cards (a small
  // campus, the bench) hash joins then look cheaper than index lookups, so a batch of even one
  // payment read and hashed the whole of ledger_accounts and purse_lots (and, while the ledger was
  // small, all of ledger_transfers for `used`). A LIMIT by a parameter (never reached: it is the
  // number of payments) is planned as a tenth of that, one row: each payment's card, lots and
  // reference are then found by their indexes, which is right for a batch of any size.
  const result = await sql<
    { reference: string; id: number; balance_after: number; here: number; amount: number }
  >`${sql.raw(PREPARED)}
    with listed as materialized (
      select i.ord, i.amount, i.reference, i.merchant_id, i.terminal_id,
        ${input.cardAccountOf(sql.raw("i.payer"))} as card_account_id,
        ${merchantAccountSql(sql`i.merchant_id`)} as merchant_account,
        ${merchantPlaceSql(sql`i.merchant_id`)} as at,
        exists (select 1 from ledger_transfers t where t.reference = i.reference) as used
      from (
        select * from unnest(${payers}::text[], ${merchants}::bigint[], ${amounts}::bigint[],
          ${references}::text[], ${terminals}::bigint[])
          with ordinality as u(payer, merchant_id, amount, reference, terminal_id, ord)
        limit ${n}
      ) i
    ), ask as materialized (
      select ${priced.columns}, i.ord, i.reference, i.merchant_id, i.terminal_id,
        i.card_account_id, i.merchant_account, i.at, i.used
      from listed i ${priced.join}
    ), ${
    debitSql({
      rule: priced.rule,
      also: [sql`a.merchant_account is not null`, sql`not a.used`],
      returning: sql`, a.merchant_id, a.terminal_id, a.merchant_account, a.price`,
    })
  }, t as (
      insert into ledger_transfers (reference, kind, channel, debit_account_id, credit_account_id,
        amount, card_account_id, card_delta, balance_after, merchant_id, terminal_id, details)
      select w.reference, 'purchase', ${input.channel}::text, w.account_id, w.merchant_account,
        w.amount, w.card_account_id, -w.amount, w.after, w.merchant_id, w.terminal_id,
        ${priced.details(sql`'null'::jsonb`)}
      from w
      returning id, reference, balance_after
    ), ${debitLegsSql()}, paid as (
      select w.ord, t.id, w.card_account_id, w.here as balance_after, w.amount
      from w join t on t.reference = w.reference
    ), recorded as (${input.record(sql.raw("paid"))})
    select t.reference, t.id, t.balance_after, w.here, w.amount
    from t join w on w.reference = t.reference`.execute(db);
  // Data-modifying CTEs run to completion whether read or not: every debited row has its
  // transfer and its record. Results are matched back by reference (unique in a batch).
  const position = new Map(references.map((r, i) => [r, i]));
  const out: Array<PaymentResult | null> = new Array(n).fill(null);
  for (const row of result.rows) {
    const i = position.get(row.reference);
    if (i !== undefined) {
      out[i] = {
        transferId: row.id,
        balanceAfter: row.balance_after,
        balanceHere: row.here,
        duplicate: false,
        charged: Number(row.amount),
      };
    }
  }
  return out;
}
