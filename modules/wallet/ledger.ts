/**
 * The ledger's two movements of a card: a debit (money leaves the card under the debit rule of
 * _rules.ts) and a credit (an offline overdraft is paid off first), each one statement that
 * changes the wallet row and records the transfer, idempotent on its reference.
 */
import { type RawBuilder, sql } from "kysely";
import { type Db, PREPARED } from "../platform/database.ts";
import { getMerchant } from "../merchant/mod.ts";
import {
  ensureCardWallet,
  isNotNullViolation,
  isUniqueViolation,
  joinedOrOwn,
  transferByReference,
  type TransferRow,
} from "./_common.ts";
import { readWallet, whyPricedRefused, whyRefused } from "./_refusals.ts";
import {
  type Balance,
  balanceOf,
  creditSql,
  type DebitRule,
  debitSql,
  pricedAskSql,
  signedBalanceSql,
  type SpendAt,
} from "./_rules.ts";
import { debitLegsSql, type LotParts } from "./_purses.ts";
import { InvalidAmountError, PaymentReversedError, ReferenceConflictError } from "./errors.ts";
import type { Channel, TransferKind } from "./tables.ts";

export type { Balance } from "./_rules.ts";

/** The outcome of a debit or credit of a card: the transfer and the card's balance after it. */
export interface PaymentResult {
  transferId: number;
  /** The card's signed balance after it, all purses (the transfer's balance-after). */
  balanceAfter: number;
  /**
   * The balance the payment's place sees after it (its cash and the lots that may pay there: what
   * a reader shows); `balanceAfter` for a credit, a retry, or a debit of cash only.
   */
  balanceHere: number;
  /** True when this reference had already been applied: nothing moved this time. */
  duplicate: boolean;
  /** A debit: what it took (priced, 卡类别 and 餐次: at most the list price asked). */
  charged?: number;
}

/**
 * The balance of a card account (zero for a card account that never had money). At a place
 * (`at`: a merchant's category, "utilities") `balance` and `available` are what it sees: cash and
 * the lots that may pay there; without, `available` counts every lot valid now.
 */
export async function getBalance(
  db: Db,
  cardAccountId: number,
  at?: SpendAt,
): Promise<Balance> {
  if (at !== undefined) {
    const r = await readWallet(db, cardAccountId, 1, { limits: false, today: "", at });
    return balanceOf(r.wallet, r.spendable);
  }
  const row = await db.selectFrom("ledger_accounts")
    .select(["balance", "held", "overdraft", "lots", "lots_held"])
    .where("card_account_id", "=", cardAccountId).executeTakeFirst();
  const b = balanceOf(row);
  if (!row || row.lots === 0) return b;
  const { rows: [v] } = await sql<{ free: number }>`
    select coalesce(sum(remaining - held), 0) as free from purse_lots
    where card_account_id = ${cardAccountId} and remaining > held
      and valid_from <= now() and now() < valid_until`.execute(db);
  return { ...b, available: balanceOf(row, { free: Number(v.free), remaining: 0 }).available };
}

/**
 * The balance of a card account as a merchant sees it (a reader's BalanceInquiry, a reply's
 * balance): its cash and the lots that may be spent at the merchant's category.
 */
export async function balanceAtMerchant(
  db: Db,
  cardAccountId: number,
  merchantId: number,
): Promise<Balance> {
  return await getBalance(db, cardAccountId, (await getMerchant(db, merchantId))?.category ?? null);
}

/** Card accounts whose balance went below zero through offline uploads, most negative first. */
export async function listNegativeBalances(
  db: Db,
): Promise<Array<{ cardAccountId: number; balance: number; overdraft: number }>> {
  const rows = await db.selectFrom("ledger_accounts")
    .select(["card_account_id", "balance", "held", "overdraft", "lots", "lots_held"])
    .where("kind", "=", "card").where("overdraft", ">", 0).orderBy("overdraft", "desc").execute();
  return rows.map((r) => ({
    cardAccountId: r.card_account_id!,
    balance: balanceOf(r).balance,
    overdraft: r.overdraft,
  }));
}

/** What a retried reference must match to count as the same request. */
export interface Expect {
  cardAccountId: number;
  amount: number;
  kinds: TransferKind[];
}

/** The first result of a reference, if it was the same request; else why not. */
export function sameRequest(t: TransferRow, e: Expect): PaymentResult {
  if (t.kind === "void") throw new PaymentReversedError(t.reference);
  // A priced payment was asked its list price (`details.price.list`).
  const asked = (t.details as { price?: { list?: number } } | null)?.price?.list ?? t.amount;
  if (
    t.card_account_id !== e.cardAccountId || Number(asked) !== e.amount ||
    !e.kinds.includes(t.kind as TransferKind)
  ) {
    throw new ReferenceConflictError(t.reference);
  }
  const balanceAfter = t.balance_after ?? 0;
  return {
    transferId: t.id,
    balanceAfter,
    balanceHere: balanceAfter,
    duplicate: true,
    charged: Number(t.amount),
  };
}

/** A positive id or null; anything else is refused. */
export function optionalId(value: number | null | undefined, what: string): number | null {
  if (value === undefined || value === null) return null;
  if (!Number.isSafeInteger(value) || value <= 0) throw new InvalidAmountError(value, what);
  return value;
}

/** SQL: no transfer has this reference yet (a concurrent one still fails on the unique index). */
export function unusedReferenceSql(reference: string): RawBuilder<boolean> {
  return sql<boolean>`not exists (select 1 from ledger_transfers where reference = ${reference})`;
}

/** A debit of one card. */
export interface DebitSpec {
  cardAccountId: number;
  amount: number;
  reference: string;
  kind: TransferKind;
  channel: Channel | null;
  /** Where it is spent (SQL: a merchant's category, "utilities"; NULL: cash only). */
  at: RawBuilder<SpendAt>;
  /** SQL for the id of the account the money goes to; NULL makes the insert fail (missing account). */
  counterAccount: RawBuilder<number | null>;
  merchantId: number | null;
  terminalId: number | null;
  details: unknown;
  rule: DebitRule;
  /**
   * A payment to `merchantId` priced at this moment (卡类别, 餐次; `pricedAskSql`): `amount` is
   * the list price, and `rule` gives way to the priced rule (the limits and the period's caps).
   */
  pricedAt?: Date;
}

/**
 * The asks CTE of one card's movement: `ord` 1 (see _rules.ts `Asks`); named `name` (the listed
 * payment a priced ask reads).
 */
export function oneAskSql(p: {
  cardAccountId: RawBuilder<number | null>;
  amount: number;
  at: RawBuilder<SpendAt>;
  reference: string;
  merchantId?: number | null;
}, name = "ask"): RawBuilder<unknown> {
  return sql`${sql.raw(name)} as materialized (
      select 1 as ord, (${p.cardAccountId})::bigint as card_account_id,
        ${p.amount}::bigint as amount, (${p.at})::text as at, ${p.reference}::text as reference,
        ${p.merchantId ?? null}::bigint as merchant_id
    )`;
}

/**
 * One statement, one round trip: take the money from the card's purses where the debit rule
 * allows it (and the reference is new), and record the transfer with its legs. Returns null when
 * the row refused; a concurrent duplicate reference fails on the unique index and rolls the whole
 * statement back.
 */
async function debitStatement(
  db: Db,
  s: DebitSpec,
): Promise<{ id: number; balance_after: number; here: number; amount: number } | null> {
  const priced = s.pricedAt ? pricedAskSql(s.pricedAt) : null;
  const details = sql`${JSON.stringify(s.details ?? null)}::jsonb`;
  const ask = (name?: string) => oneAskSql({ ...s, cardAccountId: sql`${s.cardAccountId}` }, name);
  // PREPARED: planned once per connection, not on every call (about 1 ms of planning against a
  // third of that executing, seen in the close-out's payouts). The text varies only with the call
  // site's shape (priced or not, its counter account's and place's SQL, its rule); every value
  // is a parameter.
  const result = await sql<{ id: number; balance_after: number; here: number; amount: number }>`${
    sql.raw(PREPARED)
  }
    with ${
    priced
      ? sql`${ask("listed")}, ask as materialized (
          select ${priced.columns}, i.ord, i.card_account_id, i.merchant_id, i.at, i.reference
          from listed i ${priced.join})`
      : ask()
  }, ${
    debitSql({
      rule: priced?.rule ?? s.rule,
      also: [unusedReferenceSql(s.reference)],
      returning: priced ? sql`, a.price` : undefined,
    })
  }, t as (
      insert into ledger_transfers (reference, kind, channel, debit_account_id, credit_account_id,
        amount, card_account_id, card_delta, balance_after, merchant_id, terminal_id, details)
      select w.reference, ${s.kind}, ${s.channel}, w.account_id, (${s.counterAccount}), w.amount,
        w.card_account_id, -w.amount, w.after, ${s.merchantId}, ${s.terminalId},
        ${priced ? priced.details(details) : details}
      from w
      returning id, reference, balance_after
    ), ${debitLegsSql()}
    select t.id, t.balance_after, w.here, w.amount from t, w`.execute(db);
  return result.rows[0] ?? null;
}

/**
 * Debits a card: the statement, then for the rare cases the first result of a duplicate
 * reference or the refusal read back from the row. On its own it also resolves a missing counter
 * account (`ensureCounter`, then again) and a concurrent duplicate; in the caller's transaction
 * those abort it and the caller retries.
 */
export async function debitCard(
  db: Db,
  s: DebitSpec,
  ensureCounter: (db: Db) => Promise<unknown>,
): Promise<PaymentResult> {
  return await joinedOrOwn(db, {
    joined: (trx) => debitAttempts(trx, s, null),
    own: (own) => debitAttempts(own, s, ensureCounter),
  });
}

async function debitAttempts(
  db: Db,
  s: DebitSpec,
  ensureCounter: ((db: Db) => Promise<unknown>) | null,
): Promise<PaymentResult> {
  const expect = { cardAccountId: s.cardAccountId, amount: s.amount, kinds: [s.kind] };
  // After an unexplained miss (the card's row changed meanwhile, see _purses.ts), the row is
  // locked by a statement of its own first.
  let locked = false;
  for (let attempt = 0; attempt < 5; attempt++) {
    let row;
    try {
      row = locked
        ? await withCardLocked(db, s.cardAccountId, (trx) => debitStatement(trx, s))
        : await debitStatement(db, s);
    } catch (err) {
      if (ensureCounter && isUniqueViolation(err)) {
        const first = await transferByReference(db, s.reference);
        if (first) return sameRequest(first, expect);
        continue;
      }
      if (ensureCounter && isNotNullViolation(err)) {
        await ensureCounter(db);
        continue;
      }
      throw err;
    }
    if (row) {
      return {
        transferId: row.id,
        balanceAfter: row.balance_after,
        balanceHere: row.here,
        duplicate: false,
        charged: Number(row.amount),
      };
    }
    const first = await transferByReference(db, s.reference);
    if (first) return sameRequest(first, expect);
    const at = await placeOf(db, s.at);
    const refusal = s.pricedAt && s.merchantId !== null
      ? await whyPricedRefused(db, { ...s, merchantId: s.merchantId, pricedAt: s.pricedAt, at })
      : await whyRefused(db, s.cardAccountId, s.amount, { ...s.rule, at });
    if (refusal) throw refusal;
    locked = true;
  }
  throw new Error(`Cannot debit card account ${s.cardAccountId}: gave up after repeated conflicts`);
}

/**
 * Runs `fn` with the card's wallet row locked by a statement before it (in the caller's
 * transaction, or one of its own): `fn`'s statements then begin after every change to the card
 * and its lots, so a draw from its lots is never refused as changed (_purses.ts).
 */
export async function withCardLocked<T>(
  db: Db,
  card: number | RawBuilder<number | null>,
  fn: (trx: Db) => Promise<T>,
): Promise<T> {
  const run = async (trx: Db) => {
    await sql`select id from ledger_accounts where card_account_id = ${card} for update`
      .execute(trx);
    return await fn(trx);
  };
  return await joinedOrOwn(db, { joined: run, own: (own) => own.transaction().execute(run) });
}

/** The place a debit's SQL names, read (for explaining a refusal). */
async function placeOf(db: Db, at: RawBuilder<SpendAt>): Promise<SpendAt> {
  const { rows: [r] } = await sql<{ at: SpendAt }>`select (${at})::text as at`.execute(db);
  return r?.at ?? null;
}

/** A credit of one card. */
export interface CreditSpec {
  cardAccountId: number;
  amount: number;
  reference: string;
  kind: TransferKind;
  channel: Channel | null;
  counterAccountId: number;
  merchantId: number | null;
  terminalId: number | null;
  relatedTransferId: number | null;
  details: unknown;
  /** Give the amount back to today's spending (a reversal of today's payment). */
  undoSpendOn?: string | null;
  /** The part of `amount` that goes back to lots (a give-back of a payment they paid); the rest is cash. */
  lots?: LotParts;
}

/** The CTE `t`: the transfer of a credit `w` (returning `account_id`, `after`). */
function creditTransferSql(s: CreditSpec): RawBuilder<unknown> {
  return sql`t as (
      insert into ledger_transfers (reference, kind, channel, debit_account_id, credit_account_id,
        amount, card_account_id, card_delta, balance_after, merchant_id, terminal_id,
        related_transfer_id, details)
      select ${s.reference}, ${s.kind}, ${s.channel}, ${s.counterAccountId}, w.account_id,
        ${s.amount}, ${s.cardAccountId}, ${s.amount}, w.after, ${s.merchantId}, ${s.terminalId},
        ${s.relatedTransferId}, ${JSON.stringify(s.details ?? null)}::jsonb
      from w
      returning id, balance_after
    )`;
}

/**
 * Credits a card in one statement (the credit rule of _rules.ts) and records the transfer; parts
 * that go back to lots (the card's row, then the lots, locked: the purse rule's order) are added
 * and given their legs.
 */
async function creditStatement(
  db: Db,
  s: CreditSpec,
): Promise<{ id: number; balance_after: number } | null> {
  const parts = s.lots ?? [];
  const toLots = parts.reduce((sum, p) => sum + p.amount, 0);
  const ids = parts.map((p) => p.lotId);
  const amounts = parts.map((p) => p.amount);
  if (!parts.length) {
    const result = await sql<{ id: number; balance_after: number }>`
      with w as (
        update ledger_accounts la set ${creditSql(sql`${s.amount}::bigint`, sql`0`, s.undoSpendOn)}
        where la.card_account_id = ${s.cardAccountId} and ${unusedReferenceSql(s.reference)}
        returning la.id as account_id, ${signedBalanceSql()} as after
      ), ${creditTransferSql(s)}
      select id, balance_after from t`.execute(db);
    return result.rows[0] ?? null;
  }
  // Back to lots: the card's row, then the lots, locked (the purse rule's order); written
  // relative to the rows, by the parts given.
  const result = await sql<{ id: number; balance_after: number }>`
    with lk as (
      select id from ledger_accounts where card_account_id = ${s.cardAccountId} for update
    ), ll as (
      select id from purse_lots
      where id = any(${ids}::bigint[]) and (select count(*) from lk) > 0
      order by id for update
    ), w as (
      update ledger_accounts la set ${
    creditSql(sql`${s.amount - toLots}::bigint`, sql`${toLots}::bigint`, s.undoSpendOn)
  }
      where la.card_account_id = ${s.cardAccountId} and ${unusedReferenceSql(s.reference)}
        and (select count(*) from ll) = ${parts.length}
      returning la.id as account_id, ${signedBalanceSql()} as after
    ), ${creditTransferSql(s)}, lu as (
      update purse_lots l set remaining = l.remaining + p.amount
      from unnest(${ids}::bigint[], ${amounts}::bigint[]) as p(lot_id, amount), w
      where l.id = p.lot_id
      returning l.id
    ), legs as (
      insert into purse_legs (transfer_id, lot_id, amount)
      select t.id, p.lot_id, p.amount
      from unnest(${ids}::bigint[], ${amounts}::bigint[]) as p(lot_id, amount), t
      returning 1
    )
    select id, balance_after from t`.execute(db);
  return result.rows[0] ?? null;
}

/**
 * Credits a card (its wallet row created on first use). A duplicate reference returns the first
 * result; a concurrent duplicate does too on its own, and aborts the caller's transaction in it.
 */
export async function creditCard(db: Db, s: CreditSpec): Promise<PaymentResult> {
  const expect = { cardAccountId: s.cardAccountId, amount: s.amount, kinds: [s.kind] };
  await ensureCardWallet(db, s.cardAccountId);
  const attempt = async (db: Db, concurrentFirst: boolean) => {
    try {
      const row = await creditStatement(db, s);
      if (row) {
        return {
          transferId: row.id,
          balanceAfter: row.balance_after,
          balanceHere: row.balance_after,
          duplicate: false,
        };
      }
    } catch (err) {
      if (!concurrentFirst || !isUniqueViolation(err, "ledger_transfers_reference_key")) throw err;
    }
    const first = await transferByReference(db, s.reference);
    if (!first) throw new Error(`Cannot credit card account ${s.cardAccountId}: no wallet row`);
    return sameRequest(first, expect);
  };
  return await joinedOrOwn(db, {
    joined: (trx) => attempt(trx, false),
    own: (own) => attempt(own, true),
  });
}
