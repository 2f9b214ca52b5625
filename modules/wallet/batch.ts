/**
 * Group commit of card and 付款码 payments: many readers' approved payments in one statement, so
 * they share one round trip, one commit and one WAL flush. Each payment is checked on its own card
 * row; a refused one simply does not pay and the others do.
 */
import { type RawBuilder, sql } from "kysely";
import { type Db, PREPARED } from "../platform/database.ts";
import { paymentCodeFrozenSql } from "../card/mod.ts";
import { merchantRowSql } from "../merchant/mod.ts";
import { checkReference } from "./_common.ts";
import { checkAmount } from "./_amounts.ts";
import { debitSql, merchantAccountSql, merchantPlaceSql, pricedAskSql } from "./_rules.ts";
import { debitLegsSql } from "./_purses.ts";
import { InvalidAmountError } from "./errors.ts";
import type { PaymentResult } from "./ledger.ts";

/** One payment of a batch. */
export interface BatchPayment {
  /**
   * Who pays: what `cardAccountOf` turns into the paying card account (e.g. a chip number), or
   * for 付款码 payments the code.
   */
  payer: string;
  merchantId: number;
  amount: number;
  reference: string;
  terminalId: number | null;
}

/** One payment of a batch that moved money, as the statement returned it. */
export interface BatchPaid {
  transferId: number;
  cardAccountId: number;
  /** The card's signed balance after, all purses. */
  balanceAfter: number;
  /** The balance the merchant sees after (see `PaymentResult`). */
  balanceHere: number;
  /** The price in force it took. */
  charged: number;
  /** The merchant's name (付款码 payments only: the code's page is told where it paid). */
  merchantName: string;
}

/**
 * The caller's condition that the payment at `ord` (its 1-based position in the batch) is still to
 * be answered, e.g. that its request has no record yet: a payment failing it is left out (null),
 * so one request answered before cannot fail the batch's records and with them every payment.
 */
export type Unrecorded = (ord: RawBuilder<number>) => RawBuilder<boolean>;

/** The caller's records of a batch (see `payFromCardsRecorded`). */
export interface Recording {
  record: (paid: RawBuilder<unknown>) => RawBuilder<unknown>;
  unrecorded?: Unrecorded;
}

/** How a batch finds its payers and what else it checks and writes. */
interface BatchKind {
  channel: "card" | "qr";
  /** SQL for the card account of one payment's `payer` column (NULL pays nothing). */
  cardAccountOf: (payer: RawBuilder<string>) => RawBuilder<number | null>;
  /** The payers are 付款码: checked live and not frozen, and used by the payment. */
  codes: boolean;
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
 * or not at all. `unrecorded(ord)`, when given, leaves out a payment already answered.
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
    cardAccountOf: (payer: RawBuilder<string>) => RawBuilder<number | null>;
    record: (paid: RawBuilder<unknown>) => RawBuilder<unknown>;
    unrecorded?: Unrecorded;
  },
): Promise<Array<PaymentResult | null>> {
  const paid = await payInOneStatement(db, input.payments, input, {
    channel: "card",
    cardAccountOf: input.cardAccountOf,
    codes: false,
  });
  return paid.map((p) =>
    p && {
      transferId: p.transferId,
      balanceAfter: p.balanceAfter,
      balanceHere: p.balanceHere,
      duplicate: false,
      charged: p.charged,
    }
  );
}

/**
 * 付款码 redemptions (`redeemPaymentCode`'s rules: the code live and not frozen, then the debit
 * rule with the holder's limits) with the caller's records, many in one statement; each `payer` is
 * a code of the 付款码 shape (the caller checks). `record` and the results as
 * `payFromCardsRecorded`'s; a code used, expired, frozen or refused returns null. The same code
 * must not appear twice in one batch. Internal to the wallet: `redeemPaymentCodesRecorded` tells
 * the code's page.
 */
export async function redeemCodesInOneStatement(
  db: Db,
  payments: BatchPayment[],
  caller: Recording,
): Promise<Array<BatchPaid | null>> {
  return await payInOneStatement(db, payments, caller, {
    channel: "qr",
    cardAccountOf: (code) =>
      sql<number | null>`(select pc.card_account_id from payment_codes pc
        where pc.code = ${code} and pc.used_at is null and pc.superseded_at is null
          and pc.expires_at > now())`,
    codes: true,
  });
}

async function payInOneStatement(
  db: Db,
  payments: BatchPayment[],
  { record, unrecorded }: Recording,
  kind: BatchKind,
): Promise<Array<BatchPaid | null>> {
  const n = payments.length;
  if (n === 0) return [];
  const payers: string[] = [];
  const merchants: number[] = [];
  const amounts: number[] = [];
  const references: string[] = [];
  const terminals: Array<number | null> = [];
  for (const p of payments) {
    payers.push(String(p.payer));
    merchants.push(checkId(p.merchantId, "merchantId")!);
    amounts.push(checkAmount(p.amount));
    references.push(checkReference(p.reference));
    terminals.push(checkId(p.terminalId, "terminalId"));
  }
  const now = new Date();
  const priced = pricedAskSql(now);
  const codes = kind.codes;
  // The statement runs on one generic plan (PREPARED), planned without the arrays' length: to
  // PostgreSQL a bare unnest of a parameter is 10 rows, and against a few thousand cards (a small
  // campus, the bench) hash joins then look cheaper than index lookups, so a batch of even one
  // payment read and hashed the whole of ledger_accounts and purse_lots (and, while the ledger was
  // small, all of ledger_transfers for `used`). A LIMIT by a parameter (never reached: it is the
  // number of payments) is planned as a tenth of that, one row: each payment's card, lots and
  // reference are then found by their indexes, which is right for a batch of any size.
  const result = await sql<
    {
      reference: string;
      id: number;
      balance_after: number;
      here: number;
      amount: number;
      card_account_id: number;
      merchant_name: string | null;
    }
  >`${sql.raw(PREPARED)}
    with listed as materialized (
      select i.ord, i.amount, i.reference, i.merchant_id, i.terminal_id, i.payer,
        ${kind.cardAccountOf(sql.raw("i.payer"))} as card_account_id,
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
      select ${priced.columns}, i.ord, i.reference, i.merchant_id, i.terminal_id, i.payer,
        i.card_account_id, i.merchant_account, i.at, i.used
      from listed i ${priced.join}
    ), ${
    debitSql({
      rule: priced.rule,
      also: [
        sql`a.merchant_account is not null`,
        sql`not a.used`,
        ...(unrecorded ? [unrecorded(sql`a.ord`)] : []),
        ...(codes
          ? [sql`not la.code_frozen`, sql`not ${paymentCodeFrozenSql(sql`la.card_account_id`)}`]
          : []),
      ],
      returning: sql`, a.merchant_id, a.terminal_id, a.merchant_account, a.price, a.payer`,
    })
  }, t as (
      insert into ledger_transfers (reference, kind, channel, debit_account_id, credit_account_id,
        amount, card_account_id, card_delta, balance_after, merchant_id, terminal_id, payment_code,
        details)
      select w.reference, 'purchase', ${kind.channel}::text, w.account_id, w.merchant_account,
        w.amount, w.card_account_id, -w.amount, w.after, w.merchant_id, w.terminal_id,
        ${codes ? sql`w.payer` : sql`null`}, ${priced.details(sql`'null'::jsonb`)}
      from w
      returning id, reference, balance_after, payment_code
    ), ${debitLegsSql()}, ${
    codes
      ? sql`used as (
      update payment_codes set used_at = now(), transfer_id = t.id
      from t where payment_codes.code = t.payment_code
      returning 1
    ), `
      : sql``
  }paid as (
      select w.ord, t.id, w.card_account_id, w.here as balance_after, w.amount
      from w join t on t.reference = w.reference
    ), recorded as (${record(sql.raw("paid"))})
    select t.reference, t.id, t.balance_after, w.here, w.amount, w.card_account_id,
      ${codes ? sql`(select m.name from ${merchantRowSql(sql`w.merchant_id`)} m)` : sql`null`}
        as merchant_name
    from t join w on w.reference = t.reference`.execute(db);
  // Data-modifying CTEs run to completion whether read or not: every debited row has its
  // transfer and its record. Results are matched back by reference (unique in a batch).
  const position = new Map(references.map((r, i) => [r, i]));
  const out: Array<BatchPaid | null> = new Array(n).fill(null);
  for (const row of result.rows) {
    const i = position.get(row.reference);
    if (i !== undefined) {
      out[i] = {
        transferId: row.id,
        cardAccountId: row.card_account_id,
        balanceAfter: row.balance_after,
        balanceHere: row.here,
        charged: Number(row.amount),
        merchantName: row.merchant_name ?? "",
      };
    }
  }
  return out;
}
