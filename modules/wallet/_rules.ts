/**
 * The wallet's money rules, each written once. Every path that moves a card's money composes
 * these rather than restating them: card payments one at a time and group-committed
 * (ledger.ts, batch.ts), payment codes (redeem.ts, offline_redeem.ts), shower holds and their
 * settlement (holds.ts, holds_recorded.ts), offline uploads (offline.ts), utilities, top-up refunds and
 * adjustments (ledger.ts), and the credits of top-ups, refunds and reversals. rules_test.ts runs
 * every debit path against one table of cases.
 *
 * The SQL below reads a card's wallet row under the alias `la` (`ledger_accounts la`).
 *
 * A card's money is in purses (the purse rule, _purses.ts): the cash purse and lots of 补助 (or
 * another purse kind), spent first where they may be. What a card may spend depends on where:
 * `available` at a place is the cash purse's free money (balance less holds, less the lots'
 * free money) plus the free money of the lots that may be spent there. The debit rule
 * (`refusalSql`) refuses by it; `debitSql`, `reserveSql`, `offlineSql`, `settleSetSql` and
 * `creditSql` move each purse's part, and every path follows.
 */
import { type RawBuilder, sql } from "kysely";
import { merchantRowSql } from "../merchant/mod.ts";
import { cardTypeLimitSql, chinaTimeOfDay, priceInForceSql } from "../card/mod.ts";
import { chinaDay } from "../platform/china_time.ts";
import {
  drawn,
  heldLotsSql,
  lotDrawsSql,
  lotTakesSql,
  type SpendAt,
  unchangedSql,
} from "./_purses.ts";
import "./tables.ts";

export { type SpendAt, UTILITIES } from "./_purses.ts";

/** A card account's money: `balance` may be negative only after offline uploads. */
export interface Balance {
  /** Signed balance in fen, all purses: what the card account holds, less any offline overdraft. */
  balance: number;
  /** Held by unfinished shower pre-authorisations. */
  held: number;
  /**
   * What an online payment may take now (0 while the balance is negative): at the place asked,
   * or, asked nowhere, anywhere (cash and every lot valid now).
   */
  available: number;
}

/**
 * The money columns of a card's wallet row (all null when the card never had money). A read that
 * needs only the signed balance (the 付款码 page) may leave the lots' columns out; anything that
 * splits purses or tells what is available reads them.
 */
export interface WalletMoney {
  balance: number | null;
  held: number | null;
  overdraft: number | null;
  lots?: number | null;
  lots_held?: number | null;
}

/** What the lots that may pay at a place hold: `free` (not held) and `remaining` (all). */
export interface Spendable {
  free: number;
  remaining: number;
}

export const NOTHING: Spendable = { free: 0, remaining: 0 };

/** The cash purse's money not set aside by a hold (never negative: a CHECK keeps it so). */
function cashFree(w: WalletMoney): number {
  return (w.balance ?? 0) - (w.held ?? 0) - ((w.lots ?? 0) - (w.lots_held ?? 0));
}

/**
 * What an online payment may take from a wallet row now at a place whose lots hold `spendable`:
 * nothing while it owes offline money.
 */
export function available(w: WalletMoney, spendable: Spendable = NOTHING): number {
  return (w.overdraft ?? 0) > 0 ? 0 : cashFree(w) + spendable.free;
}

/**
 * A wallet row's money as 余额, `getBalance` and readers show it (zero for a card that never had
 * money); at a place, `balance` is what that place sees: the cash purse and its lots there.
 */
export function balanceOf(
  w: WalletMoney | null | undefined,
  spendable?: Spendable,
): Balance {
  if (!w || w.balance === null) return { balance: 0, held: 0, available: 0 };
  const signed = w.balance - (w.overdraft ?? 0);
  return {
    balance: spendable ? signed - (w.lots ?? 0) + spendable.remaining : signed,
    held: w.held ?? 0,
    available: available(w, spendable),
  };
}

/** `available` in SQL, where the lots that may pay hold `spendableFree`. */
export function availableSql(spendableFree: RawBuilder<number>): RawBuilder<number> {
  return sql<number>`(case when la.overdraft > 0 then 0
    else la.balance - la.held - (la.lots - la.lots_held) + ${spendableFree} end)`;
}

/** The signed balance of `la` (`balanceOf(…).balance`) in SQL: after an update, the new one. */
export function signedBalanceSql(): RawBuilder<number> {
  return sql<number>`la.balance - la.overdraft`;
}

/** The China day's spending so far as stored on the wallet row. */
function spentTodaySql(today: string): RawBuilder<number> {
  return sql<number>`(case when la.spent_day = ${today}::date then la.spent_today else 0 end)`;
}

/** Whether a debit counts against the holder's per-payment and daily limits (付款设置). */
export interface DebitRule {
  /** Card and code payments at merchants: yes. Utilities, refunds to a gateway, adjustments: no. */
  limits: boolean;
  /** The China day the daily limit counts in (`chinaDay()`). */
  today: string;
  /** A payment by 离线付款码: the offline limits first (`offlineCodeWhenSql`). */
  offlineCode?: OfflineCodeRule;
  /** A payment priced at a merchant (card/pricing.ts): the caps of the meal period it is in. */
  meal?: MealCap;
}

/**
 * The meal period (餐次) a payment falls in, as SQL (NULL: none) with its caps per card and China
 * day (NULL: no cap): at most `maxCount` payments, at most `maxAmount` fen. Counted on the wallet
 * row (`meal_uses`), which the payment updates, so concurrent payments are counted as the daily
 * limit is.
 */
export interface MealCap {
  period: RawBuilder<number | null>;
  maxCount: RawBuilder<number | null>;
  maxAmount: RawBuilder<number | null>;
}

/** The card's payments (`i` 0) or fen (`i` 1) in the meal period `period` of the China day. */
function mealUsedSql(period: RawBuilder<unknown>, today: string, i: 0 | 1): RawBuilder<number> {
  return sql<number>`(case when la.meal_uses ->> 'd' = ${today}
    then coalesce((la.meal_uses -> ((${period})::text) ->> ${i}::int)::bigint, 0) else 0 end)`;
}

/** The caps of a meal period as `when … then …` arms of a refusal's CASE over `la`. */
function mealWhenSql(
  amount: RawBuilder<number>,
  today: string,
  m: MealCap,
): RawBuilder<unknown> {
  return sql`when ${m.period} is not null and ${m.maxCount} is not null
      and ${mealUsedSql(m.period, today, 0)} + 1 > ${m.maxCount} then 'meal_count'
    when ${m.period} is not null and ${m.maxAmount} is not null
      and ${mealUsedSql(m.period, today, 1)} + ${amount} > ${m.maxAmount} then 'meal_amount'`;
}

/** The holder's limit in force: the card's own 付款设置, never above its 卡类别's. */
export function limitInForceSql(which: "pay_limit" | "daily_limit"): RawBuilder<number> {
  return sql<number>`least(la.${sql.ref(which)}, ${
    cardTypeLimitSql(sql`la.card_account_id`, which)
  })`;
}

/**
 * 离线付款码's own limits (离线付款码限额, set by 一卡通中心 in `offline_code_limits`): one payment at
 * most its `pay_limit`, and the card's offline code payments of one China day (`offline_code_uses`)
 * at most its `daily_limit`. They come before the holder's own limits (PROTOCOL.md §4.4).
 */
export interface OfflineCodeRule {
  /** The China day they count in: today's, or for a reader's offline record, the day it was paid. */
  day: string;
}

export const OFFLINE_PAY_LIMIT = sql<
  number
>`(select pay_limit from offline_code_limits where id = 1)`;
export const OFFLINE_DAILY_LIMIT = sql<
  number
>`(select daily_limit from offline_code_limits where id = 1)`;

/** The offline limits as `when … then …` arms of a refusal's CASE over `la`. */
function offlineCodeWhenSql(
  amount: RawBuilder<number>,
  rule: OfflineCodeRule,
): RawBuilder<unknown> {
  return sql`when ${amount} > ${OFFLINE_PAY_LIMIT} then 'offline_per_payment'
    when (select coalesce(sum(u.amount), 0) from offline_code_uses u
      where u.card_account_id = la.card_account_id and u.china_day = ${rule.day}::date)
      + ${amount} > ${OFFLINE_DAILY_LIMIT} then 'offline_daily'`;
}

/**
 * Why a reader's offline record paid by 离线付款码 may not be charged `amount` to `la`, or NULL: the
 * offline limits of the day it was paid, then the holder's per-payment limit. Funds and an
 * overdraft do not stop it (a record is a fact, `offlineSql`).
 */
export function offlineRecordRefusalSql(
  amount: RawBuilder<number>,
  rule: OfflineCodeRule,
): RawBuilder<Refusal | null> {
  return sql<Refusal | null>`(case ${offlineCodeWhenSql(amount, rule)}
    when ${amount} > ${limitInForceSql("pay_limit")} then 'per_payment' end)`;
}

/** A hold is not spending: the debit rule without the holder's limits. */
export const NO_LIMITS: DebitRule = { limits: false, today: "" };

/** Why a card may not pay an amount now, in the order a reader or a page is told. */
export type Refusal =
  | "negative_balance"
  | "offline_per_payment"
  | "offline_daily"
  | "per_payment"
  | "daily"
  | "meal_count"
  | "meal_amount"
  | "insufficient_funds";

/**
 * THE debit rule: why `la` may not pay `amount` now where its lots that may pay hold
 * `spendableFree`, or NULL when it may. A debit takes the money only where this is NULL, and a
 * refused one is explained by reading it (`whyRefused`), so the condition and its explanation
 * cannot drift apart.
 */
export function refusalSql(
  amount: RawBuilder<number>,
  rule: DebitRule,
  spendableFree: RawBuilder<number>,
): RawBuilder<Refusal | null> {
  const limits = rule.limits
    ? sql`when ${amount} > ${limitInForceSql("pay_limit")} then 'per_payment'
        when ${spentTodaySql(rule.today)} + ${amount} > ${limitInForceSql("daily_limit")}
          then 'daily'
        ${rule.meal ? mealWhenSql(amount, rule.today, rule.meal) : sql``}`
    : sql``;
  const offline = rule.offlineCode ? offlineCodeWhenSql(amount, rule.offlineCode) : sql``;
  return sql<Refusal | null>`(case when la.overdraft > 0 then 'negative_balance' ${offline}
      ${limits}
      when ${availableSql(spendableFree)} < ${amount} then 'insufficient_funds' end)`;
}

/**
 * The SET of a debit: `amount` leaves the balance, `lots` of it from the lots (the rest from
 * cash) and, under the limits, counts as spent today.
 */
function takeSql(
  amount: RawBuilder<number>,
  lots: RawBuilder<number>,
  rule: DebitRule,
): RawBuilder<unknown> {
  const spend = rule.limits
    ? sql`, spent_day = ${rule.today}::date, spent_today = ${spentTodaySql(rule.today)} + ${amount}`
    : sql``;
  const m = rule.limits ? rule.meal : undefined;
  const meal = m
    ? sql`, meal_uses = case when ${m.period} is null then la.meal_uses else jsonb_set(
        case when la.meal_uses ->> 'd' = ${rule.today} then la.meal_uses
          else jsonb_build_object('d', ${rule.today}::text) end,
        array[(${m.period})::text],
        jsonb_build_array(${mealUsedSql(m.period, rule.today, 0)} + 1,
          ${mealUsedSql(m.period, rule.today, 1)} + ${amount})) end`
    : sql``;
  return sql`balance = la.balance - ${amount}, lots = la.lots - ${lots}${spend}${meal}`;
}

/** Conditions joined with `and` (none: true). */
function allOf(conditions: RawBuilder<unknown>[] = []): RawBuilder<unknown> {
  return conditions.length ? sql`and ${sql.join(conditions, sql` and `)}` : sql``;
}

/**
 * What a statement that moves a card's money asks. It names its asks in a CTE `ask`, one row per
 * payment: `ord` (unique), `card_account_id` (NULL pays nothing), `amount`, `at` (where: a
 * merchant's category, `UTILITIES`, or NULL for cash only) and `reference`; more columns are the
 * path's own.
 */
interface Asks {
  /** The path's own conditions on `la` and the ask `a` (a new reference, a live code, …). */
  also?: RawBuilder<unknown>[];
  /** More columns of `a` or `la` to return. */
  returning?: RawBuilder<unknown>;
}

/**
 * The columns every card movement's `w` returns, from the updated row: `here` is the balance its
 * place sees after, where its lots there hold `remaining` after.
 */
function returningSql(
  remaining: RawBuilder<number>,
  more?: RawBuilder<unknown>,
): RawBuilder<unknown> {
  return sql`returning la.id as account_id, la.card_account_id, a.ord, a.reference, a.amount,
      ${signedBalanceSql()} as after, la.balance - la.overdraft - la.lots + ${remaining} as here
      ${more ?? sql``}`;
}

/**
 * The UPDATE of the asks' wallet rows `la` from `ak a`, where the draw may be made
 * (`unchangedSql`).
 */
function updateCards(set: RawBuilder<unknown>): RawBuilder<unknown> {
  return sql`update ledger_accounts la set ${set}
      from ak a
      where la.card_account_id = a.card_account_id and ${unchangedSql()}`;
}

/**
 * A card debit as CTEs (`lk`, `lt`, `dr`, `ak`, `w`, `lu`) over the asks `ask`: takes each
 * `amount` from its card where the debit rule allows it, its lots that may pay there first
 * (`lu`), then cash. `w` returns `account_id` (the wallet's ledger account), `card_account_id`,
 * `ord`, `reference`, `amount`, `after` (the signed balance after) and `here` (the balance its
 * place sees after) for the transfer the caller records from it as `t` (returning `id` and
 * `reference`), followed by `debitLegsSql()`. A payment whose card's row changed since the
 * statement began is not made (see _purses.ts): the caller goes the ordinary way.
 */
export function debitSql(p: Asks & { rule: DebitRule }): RawBuilder<unknown> {
  return sql`${lotDrawsSql()}, w as (
      ${updateCards(takeSql(sql`a.amount`, drawn.take, p.rule))}
        and ${refusalSql(sql`a.amount`, p.rule, drawn.free)} is null ${allOf(p.also)}
      ${returningSql(sql`${drawn.remaining} - ${drawn.take}`, p.returning)}
    ), ${lotTakesSql("remaining")}`;
}

/**
 * A shower pre-authorisation of the whole `amount` as CTEs (`lk`, `lt`, `dr`, `ak`, `w`, `lu`)
 * over the asks `ask`, where the card could pay it under the debit rule (no limits: a hold is not
 * spending): the lots that may pay there set aside first, then cash. `w` returns as `debitSql`'s
 * and `lots`, what it set aside of each lot (`ledger_holds.lots`).
 */
export function reserveSql(p: Asks): RawBuilder<unknown> {
  return sql`${lotDrawsSql()}, w as (
      ${updateCards(sql`held = la.held + a.amount, lots_held = la.lots_held + ${drawn.take}`)}
        and ${refusalSql(sql`a.amount`, NO_LIMITS, drawn.free)} is null ${allOf(p.also)}
      ${
    returningSql(
      drawn.remaining,
      sql`, ${heldLotsSql(sql`a.ord`)} as lots ${p.returning ?? sql``}`,
    )
  }
    ), ${lotTakesSql("held")}`;
}

/** What a hold asked for `amount` takes: all of it, or what is available if less. */
export function holdable(w: WalletMoney, amount: number, spendable: Spendable): number {
  return Math.min(amount, available(w, spendable));
}

/**
 * The SET of a hold's end: `charged` leaves the balance (`lotsCharged` of it from the hold's
 * lots), and the whole hold `held` (`lotsHeld` of it in lots) is freed.
 */
export function settleSetSql(
  charged: RawBuilder<number>,
  held: RawBuilder<number>,
  lotsCharged: RawBuilder<number>,
  lotsHeld: RawBuilder<number>,
): RawBuilder<unknown> {
  return sql`balance = la.balance - ${charged}, held = la.held - ${held},
    lots = la.lots - ${lotsCharged}, lots_held = la.lots_held - ${lotsHeld}`;
}

/**
 * The ends of holds as CTEs over `h` (the holds' rows, updated, each with `id`, `amount`,
 * `charged` and `lots`): `hc` what each lot a hold set aside gives back and pays (`hold`, `lot`,
 * `reserved`, `charge`: its lots first, in the order it drew them, then cash), `hs` their sums per
 * hold (`hold`, `reserved`, `charge`). Lots are updated by `hu` once the card's row `w` is.
 */
export function holdLotsSql(): RawBuilder<unknown> {
  return sql`hc as (
      select h.id as hold, x.lot, x.amount as reserved,
        least(x.amount, greatest(0, h.charged - coalesce(sum(x.amount) over (partition by h.id
          order by x.n rows between unbounded preceding and 1 preceding), 0))) as charge
      from h cross join lateral rows from (
        jsonb_to_recordset(coalesce(h.lots, '[]'::jsonb)) as (lot bigint, amount bigint)
      ) with ordinality as x(lot, amount, n)
    ), hs as (
      select h.id as hold, coalesce(sum(hc.reserved), 0) as reserved,
        coalesce(sum(hc.charge), 0) as charge
      from h left join hc on hc.hold = h.id
      group by h.id
    )`;
}

/** What a hold's late end (after it timed out) may still charge of `wanted`: only what is free. */
export function lateCharge(w: WalletMoney, wanted: number, spendable: Spendable): number {
  return Math.min(wanted, Math.max(0, available(w, spendable)));
}

/**
 * An offline reader's payment as CTEs (`lt`, `dr`, `ak`, `w`, `lu`) over the asks `ask`, the only
 * debit below zero: the lots that may pay there first, then what is free in cash, and the rest
 * booked as overdraft, which every online debit then refuses. `w` returns as `debitSql`'s.
 */
export function offlineSql(p: Asks): RawBuilder<unknown> {
  const rest = sql`(a.amount - ${drawn.take})`;
  const cash = sql`least(${rest}, la.balance - la.held - (la.lots - la.lots_held))`;
  return sql`${lotDrawsSql()}, w as (
      ${
    updateCards(sql`balance = la.balance - ${drawn.take} - ${cash},
        lots = la.lots - ${drawn.take}, overdraft = la.overdraft + (${rest} - ${cash})`)
  } ${allOf(p.also)}
      ${returningSql(sql`${drawn.remaining} - ${drawn.take}`, p.returning)}
    ), ${lotTakesSql("remaining")}`;
}

/**
 * The SET of a credit to a card: `cash` pays off an offline overdraft first, then adds to the
 * balance; `lots` goes back to lots (they owe nothing); `undoSpendOn` gives the amount back to
 * that China day's spending (a reversal).
 */
export function creditSql(
  cash: RawBuilder<number>,
  lots: RawBuilder<number>,
  undoSpendOn?: string | null,
) {
  const undo = undoSpendOn
    ? sql`, spent_today = case when la.spent_day = ${undoSpendOn}::date
        then greatest(la.spent_today - (${cash} + ${lots}), 0) else la.spent_today end`
    : sql``;
  return sql`overdraft = greatest(la.overdraft - ${cash}, 0),
    balance = la.balance + greatest(${cash} - la.overdraft, 0) + ${lots},
    lots = la.lots + ${lots}${undo}`;
}

/**
 * SQL for the ledger account a payment to `merchantId` credits: NULL while the merchant is
 * inactive (a payment is refused; an offline record or a started shower, facts from before,
 * passes `allowInactive`) or has no account yet (the insert fails and the caller creates it).
 */
export function merchantAccountSql(
  merchantId: RawBuilder<number>,
  options: { allowInactive?: boolean } = {},
): RawBuilder<number | null> {
  if (options.allowInactive) {
    return sql<
      number | null
    >`(select ma.id from ledger_accounts ma where ma.merchant_id = ${merchantId})`;
  }
  return sql<number | null>`(select ma.id from ledger_accounts ma
    join ${merchantRowSql(merchantId)} m on m.id = ma.merchant_id
    where ma.merchant_id = ${merchantId} and m.active)`;
}

/** Where a payment to `merchantId` is spent (its category), for the purse rule. */
export function merchantPlaceSql(merchantId: RawBuilder<number>): RawBuilder<SpendAt> {
  return sql<SpendAt>`(select m.category::text from ${merchantRowSql(merchantId)} m)`;
}

/**
 * A payment priced at a merchant (卡类别 and 餐次, card/pricing.ts) at `at`, for a statement whose
 * listed payments `i` have `card_account_id`, `merchant_id`, `at` (the category) and `amount` (the
 * reader's list price): the ask's `columns` (`amount`, the price in force: never above the list
 * price nor below one fen; `list_amount`; `price`, the rule applied; the meal period and its
 * caps), the lateral `join` that reads them, the debit `rule` (the holder's limits and the
 * period's caps), and the transfer's `details` with the rule recorded (`details.price`) from `w`,
 * which returns `a.price`, so a later change of rules never changes history.
 */
export function pricedAskSql(at: Date): {
  columns: RawBuilder<unknown>;
  join: RawBuilder<unknown>;
  rule: DebitRule;
  details: (d: RawBuilder<unknown>) => RawBuilder<unknown>;
} {
  const price = priceInForceSql({
    card: sql`i.card_account_id`,
    merchant: sql`i.merchant_id`,
    category: sql`i.at`,
    list: sql`i.amount`,
    time: chinaTimeOfDay(at),
  });
  return {
    columns: sql`coalesce(pr.amount, i.amount) as amount, i.amount as list_amount, pr.price,
      pr.period_id, pr.max_count, pr.max_amount`,
    join: sql`left join lateral (${price}) pr on true`,
    rule: {
      limits: true,
      today: chinaDay(at),
      meal: { period: sql`a.period_id`, maxCount: sql`a.max_count`, maxAmount: sql`a.max_amount` },
    },
    details: (d) =>
      sql`case when w.price is null then ${d}
        else coalesce(nullif(${d}, 'null'::jsonb), '{}'::jsonb) || jsonb_build_object('price', w.price)
      end`,
  };
}
