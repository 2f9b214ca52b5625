/**
 * A refused debit, explained: the card's wallet row read with the debit rule's own reason
 * (`refusalSql`, `offlineRecordRefusalSql` in _rules.ts) and turned into the error a reader's
 * status and a page's message come from. Reading the rule rather than restating it keeps the
 * condition and its explanation from drifting apart.
 */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { priceInForce } from "../card/mod.ts";
import {
  InsufficientFundsError,
  LimitExceededError,
  MealPeriodCapError,
  NegativeBalanceError,
  OfflineCodeOverLimitError,
  type WalletError,
} from "./errors.ts";
import { lockLotsSql, type LotMoney, spendableLotsQuery, type SpendAt } from "./_purses.ts";
import {
  available,
  balanceOf,
  type DebitRule,
  limitInForceSql,
  NOTHING,
  OFFLINE_DAILY_LIMIT,
  OFFLINE_PAY_LIMIT,
  type OfflineCodeRule,
  offlineRecordRefusalSql,
  pricedAskSql,
  type Refusal,
  refusalSql,
  type Spendable,
  type WalletMoney,
} from "./_rules.ts";

/** The reason of `refusalSql` as the error a reader's status and a page's message come from. */
function refusalError(
  reason: Refusal,
  w: WalletRow,
  spendable: Spendable,
  amount: number,
): WalletError {
  switch (reason) {
    case "negative_balance":
      return new NegativeBalanceError(w.balance - w.overdraft);
    case "offline_per_payment":
      return new OfflineCodeOverLimitError("per_payment", w.offline_pay_limit, amount);
    case "offline_daily":
      return new OfflineCodeOverLimitError("daily", w.offline_daily_limit, amount);
    case "per_payment":
      return new LimitExceededError("per_payment", w.pay_limit, amount);
    case "daily":
      return new LimitExceededError("daily", w.daily_limit, amount);
    case "meal_count":
      return new MealPeriodCapError("count", w.meal_max_count, amount);
    case "meal_amount":
      return new MealPeriodCapError("amount", w.meal_max_amount, amount);
    case "insufficient_funds":
      return new InsufficientFundsError(
        balanceOf(w, spendable).balance,
        available(w, spendable),
        amount,
      );
  }
}

/** A card's wallet row as a debit reads it. */
export interface WalletRow extends WalletMoney {
  id: number;
  balance: number;
  held: number;
  overdraft: number;
  lots: number;
  lots_held: number;
  pay_limit: number;
  daily_limit: number;
  /** 离线付款码限额 (`OfflineCodeRule`), read with the row. */
  offline_pay_limit: number;
  offline_daily_limit: number;
  /** The meal period's caps the debit was asked under (`DebitRule.meal`), if any. */
  meal_max_count: number | null;
  meal_max_amount: number | null;
}

/**
 * The card's wallet row, its lots that may pay at `rule.at` (in draw order) and why it may not pay
 * `amount` there now under `rule`, by `refusalSql` (null when nothing stops it). With `lock`
 * (inside a transaction) the card's row, then its lots, are locked for update: the order every
 * path takes. A card that never had money has no row and nothing available.
 */
export async function readWallet(
  db: Db,
  cardAccountId: number,
  amount: number,
  rule: DebitRule & { at: SpendAt },
  options: { lock?: boolean } = {},
): Promise<
  { wallet: WalletRow | null; lots: LotMoney[]; spendable: Spendable; refusal: WalletError | null }
> {
  if (options.lock) {
    // The row, then its lots: the purse rule's lock order.
    await sql`select id from ledger_accounts where card_account_id = ${cardAccountId} for update`
      .execute(db);
    await lockLotsSql(cardAccountId).execute(db);
  }
  const { rows } = await spendableLotsQuery(cardAccountId, rule.at).execute(db);
  const lots = rows.map((r) => ({
    lotId: Number(r.lot_id),
    purse: r.purse,
    remaining: Number(r.remaining),
    free: Number(r.free),
    validUntil: r.valid_until,
  }));
  const spendable = {
    free: lots.reduce((s, l) => s + l.free, 0),
    remaining: lots.reduce((s, l) => s + l.remaining, 0),
  };
  const { rows: [w] } = await sql<WalletRow & { reason: Refusal | null }>`
    select la.id, la.balance, la.held, la.overdraft, la.lots, la.lots_held,
      ${limitInForceSql("pay_limit")} as pay_limit, ${
    limitInForceSql("daily_limit")
  } as daily_limit,
      ${OFFLINE_PAY_LIMIT} as offline_pay_limit, ${OFFLINE_DAILY_LIMIT} as offline_daily_limit,
      (${rule.meal?.maxCount ?? null})::int as meal_max_count,
      (${rule.meal?.maxAmount ?? null})::bigint as meal_max_amount, ${
    refusalSql(sql<number>`${amount}::bigint`, rule, sql<number>`${spendable.free}::bigint`)
  } as reason
    from ledger_accounts la where la.card_account_id = ${cardAccountId}`.execute(db);
  if (!w) {
    return { wallet: null, lots, spendable, refusal: new InsufficientFundsError(0, 0, amount) };
  }
  const refusal = w.reason ? refusalError(w.reason, w, spendable, amount) : null;
  return { wallet: w, lots, spendable, refusal };
}

/**
 * Why the card may not pay `amount` at `at` now under `rule` (`readWallet`'s answer); null when
 * nothing stops it (a race: the caller goes again).
 */
export async function whyRefused(
  db: Db,
  cardAccountId: number,
  amount: number,
  rule: DebitRule & { at: SpendAt },
): Promise<WalletError | null> {
  return (await readWallet(db, cardAccountId, amount, rule)).refusal;
}

/**
 * Why a payment of the list price `amount` at a merchant, priced at `pricedAt` (`pricedAskSql`),
 * was refused: the debit rule read at its price in force and with its meal period's caps.
 */
export async function whyPricedRefused(
  db: Db,
  p: { cardAccountId: number; merchantId: number; amount: number; at: SpendAt; pricedAt: Date },
): Promise<WalletError | null> {
  const price = await priceInForce(db, {
    cardAccountId: p.cardAccountId,
    merchantId: p.merchantId,
    category: p.at,
    list: p.amount,
  }, p.pricedAt);
  const constant = (v: number | null) => sql<number | null>`${v}::bigint`;
  return await whyRefused(db, p.cardAccountId, price.amount, {
    ...pricedAskSql(p.pricedAt).rule,
    meal: {
      period: constant(price.periodId),
      maxCount: constant(price.maxCount),
      maxAmount: constant(price.maxAmount),
    },
    at: p.at,
  });
}

/**
 * Why a reader's offline record paid by 离线付款码 may not be charged (`offlineRecordRefusalSql`'s
 * answer), or null.
 */
export async function whyOfflineRecordRefused(
  db: Db,
  cardAccountId: number,
  amount: number,
  rule: OfflineCodeRule,
): Promise<WalletError | null> {
  const { rows: [w] } = await sql<WalletRow & { reason: Refusal | null }>`
    select la.id, la.balance, la.held, la.overdraft, la.lots, la.lots_held,
      ${limitInForceSql("pay_limit")} as pay_limit, ${
    limitInForceSql("daily_limit")
  } as daily_limit,
      null::int as meal_max_count, null::bigint as meal_max_amount,
      ${OFFLINE_PAY_LIMIT} as offline_pay_limit,
      ${OFFLINE_DAILY_LIMIT} as offline_daily_limit,
      ${offlineRecordRefusalSql(sql<number>`${amount}::bigint`, rule)} as reason
    from ledger_accounts la where la.card_account_id = ${cardAccountId}`.execute(db);
  return w?.reason ? refusalError(w.reason, w, NOTHING, amount) : null;
}
