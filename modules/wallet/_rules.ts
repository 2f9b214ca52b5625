/**
 * The wallet's money rules, each written once. Every path that moves a card's money composes
 * these rather than restating them: card payments one at a time and group-committed
 * (ledger.ts, batch.ts), payment codes (redeem.ts), shower holds and their settlement
 * (holds.ts, holds_recorded.ts), offline uploads (offline.ts), utilities, top-up refunds and
 * adjustments (ledger.ts), and the credits of top-ups, refunds and reversals. rules_test.ts runs
 * every debit path against one table of cases.
 *
 * The SQL below reads a card's wallet row under the alias `la` (`ledger_accounts la`).
 *
 * A card has one purse today: its wallet row's `balance` (less `held`, less any offline
 * `overdraft`). A second purse (补助, spent first where its batch allows) changes what a card may
 * spend at a merchant and which purse a payment takes from: `availableSql`/`available`,
 * `refusalSql`, `takeSql`, `reserveSql`/`holdable`, `settleSetSql`/`lateCharge`,
 * `offlineTakeSql` and `creditSql` are where that goes, and each path
 * follows.
 */
import { type RawBuilder, sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { fenToYuanText } from "../platform/money.ts";
import { merchantRowSql } from "../merchant/mod.ts";
import {
  InsufficientFundsError,
  InvalidAmountError,
  LimitExceededError,
  NegativeBalanceError,
  type WalletError,
} from "./errors.ts";
import "./tables.ts";

/** ¥1,000,000: far above any real movement, far below the safe-integer edge. */
export const MAX_AMOUNT = 100_000_000;

/** System ceilings of the student's 付款设置; the student may only lower them. */
export const DEFAULT_PAY_LIMIT = 20_000;
export const DEFAULT_DAILY_LIMIT = 50_000;

/** A card account's money: `balance` may be negative only after offline uploads. */
export interface Balance {
  /** Signed balance in fen: what the card account holds, minus any offline overdraft. */
  balance: number;
  /** Held by unfinished shower pre-authorisations. */
  held: number;
  /** What an online payment may take now (0 while the balance is negative). */
  available: number;
}

/** The money columns of a card's wallet row (all null when the card never had money). */
export interface WalletMoney {
  balance: number | null;
  held: number | null;
  overdraft: number | null;
}

/** What an online payment may take from a wallet row now: nothing while it owes offline money. */
export function available(w: WalletMoney): number {
  return (w.overdraft ?? 0) > 0 ? 0 : (w.balance ?? 0) - (w.held ?? 0);
}

/** A wallet row's money as 余额 and `getBalance` show it; zero for a card that never had money. */
export function balanceOf(w: WalletMoney | null | undefined): Balance {
  if (!w || w.balance === null) return { balance: 0, held: 0, available: 0 };
  return { balance: w.balance - (w.overdraft ?? 0), held: w.held ?? 0, available: available(w) };
}

/** `available` in SQL. */
export function availableSql(): RawBuilder<number> {
  return sql<number>`(case when la.overdraft > 0 then 0 else la.balance - la.held end)`;
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
}

/** A hold is not spending: the debit rule without the holder's limits. */
export const NO_LIMITS: DebitRule = { limits: false, today: "" };

/** Why a card may not pay an amount now, in the order a reader or a page is told. */
export type Refusal = "negative_balance" | "per_payment" | "daily" | "insufficient_funds";

/**
 * THE debit rule: why `la` may not pay `amount` now, or NULL when it may. A debit takes the
 * money only where this is NULL, and a refused one is explained by reading it (`whyRefused`),
 * so the condition and its explanation cannot drift apart.
 */
export function refusalSql(
  amount: RawBuilder<number>,
  rule: DebitRule,
): RawBuilder<Refusal | null> {
  const limits = rule.limits
    ? sql`when ${amount} > la.pay_limit then 'per_payment'
        when ${spentTodaySql(rule.today)} + ${amount} > la.daily_limit then 'daily'`
    : sql``;
  return sql<Refusal | null>`(case when la.overdraft > 0 then 'negative_balance' ${limits}
      when ${availableSql()} < ${amount} then 'insufficient_funds' end)`;
}

/** The SET of a debit: the amount leaves the balance and, under the limits, counts as spent today. */
function takeSql(amount: RawBuilder<number>, rule: DebitRule): RawBuilder<unknown> {
  const spend = rule.limits
    ? sql`, spent_day = ${rule.today}::date, spent_today = ${spentTodaySql(rule.today)} + ${amount}`
    : sql``;
  return sql`balance = la.balance - ${amount}${spend}`;
}

/** Conditions joined with `and` (none: true). */
function allOf(conditions: RawBuilder<unknown>[] = []): RawBuilder<unknown> {
  return conditions.length ? sql`and ${sql.join(conditions, sql` and `)}` : sql``;
}

/** Where the asks of a statement come from, and what more each path requires of them. */
interface Asks {
  /** SQL for the paying card account; NULL pays nothing. */
  card: RawBuilder<number | null>;
  /** A relation the `card` and amounts read from (`sql\`input i\``), when not plain values. */
  from?: RawBuilder<unknown>;
  /** The path's own conditions (a new reference, a live code, a merchant account). */
  also?: RawBuilder<unknown>[];
  /** More columns to return beside `account_id`, `card_account_id` and `after`. */
  returning?: RawBuilder<unknown>;
}

/**
 * A card debit as an UPDATE for a CTE: takes `amount` from the card's wallet row where the debit
 * rule allows it. Returns `account_id` (the wallet's ledger account), `card_account_id` and
 * `after` (the signed balance after) for the transfer the caller records from it.
 */
export function debitSql(
  p: Asks & { amount: RawBuilder<number>; rule: DebitRule },
): RawBuilder<unknown> {
  return sql`update ledger_accounts la set ${takeSql(p.amount, p.rule)}
    ${p.from ? sql`from ${p.from}` : sql``}
    where la.card_account_id = ${p.card} and ${refusalSql(p.amount, p.rule)} is null ${
    allOf(p.also)
  }
    returning la.id as account_id, la.card_account_id, ${signedBalanceSql()} as after ${
    p.returning ?? sql``
  }`;
}

/**
 * A shower pre-authorisation of the whole `amount` as an UPDATE for a CTE, where the card could
 * pay it under the debit rule (no limits: a hold is not spending). `amount` reads from the asks,
 * not from `la`. Returns `account_id`, `card_account_id` and `after`.
 */
export function reserveSql(p: Asks & { amount: RawBuilder<number> }): RawBuilder<unknown> {
  return sql`update ledger_accounts la set ${reserveSetSql(p.amount)}
    ${p.from ? sql`from ${p.from}` : sql``}
    where la.card_account_id = ${p.card} and ${refusalSql(p.amount, NO_LIMITS)} is null ${
    allOf(p.also)
  }
    returning la.id as account_id, la.card_account_id, ${signedBalanceSql()} as after ${
    p.returning ?? sql``
  }`;
}

/** The SET of a hold: `amount` is set aside (held), still the card's but no payment's. */
export function reserveSetSql(amount: RawBuilder<number>): RawBuilder<unknown> {
  return sql`held = la.held + ${amount}`;
}

/** What a hold asked for `amount` takes: all of it, or what is available if less. */
export function holdable(w: WalletMoney, amount: number): number {
  return Math.min(amount, available(w));
}

/** The SET of a hold's end: `charged` leaves the balance and the whole hold `held` is freed. */
export function settleSetSql(
  charged: RawBuilder<number>,
  held: RawBuilder<number>,
): RawBuilder<unknown> {
  return sql`balance = la.balance - ${charged}, held = la.held - ${held}`;
}

/** What a hold's late end (after it timed out) may still charge of `wanted`: only what is free. */
export function lateCharge(w: WalletMoney, wanted: number): number {
  return Math.min(wanted, Math.max(0, available(w)));
}

/**
 * The SET of an offline reader's payment, the only debit below zero: it takes what is free of
 * holds and books the rest as overdraft, which every online debit then refuses.
 */
export function offlineTakeSql(amount: RawBuilder<number>): RawBuilder<unknown> {
  const free = sql`least(${amount}, la.balance - la.held)`;
  return sql`balance = la.balance - ${free}, overdraft = la.overdraft + (${amount} - ${free})`;
}

/**
 * The SET of a credit to a card: it pays off an offline overdraft first, then adds to the
 * balance; `undoSpendOn` gives the amount back to that China day's spending (a reversal).
 */
export function creditSql(amount: RawBuilder<number>, undoSpendOn?: string | null) {
  const undo = undoSpendOn
    ? sql`, spent_today = case when la.spent_day = ${undoSpendOn}::date
        then greatest(la.spent_today - ${amount}, 0) else la.spent_today end`
    : sql``;
  return sql`overdraft = greatest(la.overdraft - ${amount}, 0),
    balance = la.balance + greatest(${amount} - la.overdraft, 0)${undo}`;
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

/** The reason of `refusalSql` as the error a reader's status and a page's message come from. */
function refusalError(
  reason: Refusal,
  w: WalletMoney & { pay_limit: number; daily_limit: number },
  amount: number,
): WalletError {
  switch (reason) {
    case "negative_balance":
      return new NegativeBalanceError((w.balance ?? 0) - (w.overdraft ?? 0));
    case "per_payment":
      return new LimitExceededError("per_payment", w.pay_limit, amount);
    case "daily":
      return new LimitExceededError("daily", w.daily_limit, amount);
    case "insufficient_funds":
      return new InsufficientFundsError(
        (w.balance ?? 0) - (w.overdraft ?? 0),
        available(w),
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
  pay_limit: number;
  daily_limit: number;
}

/**
 * The card's wallet row (locked for update with `lock`, inside a transaction) and why it may not
 * pay `amount` now under `rule`, by `refusalSql`: null when nothing stops it. A card that never
 * had money has no row and nothing available.
 */
export async function readWallet(
  db: Db,
  cardAccountId: number,
  amount: number,
  rule: DebitRule,
  options: { lock?: boolean } = {},
): Promise<{ wallet: WalletRow | null; refusal: WalletError | null }> {
  const { rows: [w] } = await sql<WalletRow & { reason: Refusal | null }>`
    select la.id, la.balance, la.held, la.overdraft, la.pay_limit, la.daily_limit,
      ${refusalSql(sql<number>`${amount}::bigint`, rule)} as reason
    from ledger_accounts la where la.card_account_id = ${cardAccountId}
    ${options.lock ? sql`for update` : sql``}`.execute(db);
  if (!w) return { wallet: null, refusal: new InsufficientFundsError(0, 0, amount) };
  return { wallet: w, refusal: w.reason ? refusalError(w.reason, w, amount) : null };
}

/**
 * Why the card may not pay `amount` now under `rule` (`readWallet`'s answer); null when nothing
 * stops it (a race: the caller goes again).
 */
export async function whyRefused(
  db: Db,
  cardAccountId: number,
  amount: number,
  rule: DebitRule,
): Promise<WalletError | null> {
  return (await readWallet(db, cardAccountId, amount, rule)).refusal;
}

/** Throws unless `amount` is a whole number of fen in (0, MAX_AMOUNT]. */
export function checkAmount(amount: unknown, field = "amount"): number {
  if (
    typeof amount !== "number" || !Number.isSafeInteger(amount) || amount <= 0 ||
    amount > MAX_AMOUNT
  ) {
    throw new InvalidAmountError(amount, field);
  }
  return amount;
}

/** A student's 付款设置 as asked: limits in fen. */
export interface LimitSettings {
  payLimit: number;
  dailyLimit: number;
}

/**
 * What is wrong with the limits a student asks for, per field, in Chinese (empty when nothing):
 * each between ¥0.01 and its system ceiling, and one payment no more than a day.
 */
export function limitSettingsProblems(
  s: LimitSettings,
): Partial<Record<"pay_limit" | "daily_limit", string>> {
  const out: Partial<Record<"pay_limit" | "daily_limit", string>> = {};
  if (!isAmount(s.payLimit)) out.pay_limit = "单笔限额需为大于0、最多两位小数的金额";
  else if (s.payLimit > DEFAULT_PAY_LIMIT) {
    out.pay_limit = `单笔限额不能超过 ¥${fenToYuanText(DEFAULT_PAY_LIMIT)}`;
  }
  if (!isAmount(s.dailyLimit)) out.daily_limit = "每日限额需为大于0、最多两位小数的金额";
  else if (s.dailyLimit > DEFAULT_DAILY_LIMIT) {
    out.daily_limit = `每日限额不能超过 ¥${fenToYuanText(DEFAULT_DAILY_LIMIT)}`;
  }
  if (!out.pay_limit && !out.daily_limit && s.payLimit > s.dailyLimit) {
    out.pay_limit = "单笔限额不能超过每日限额";
  }
  return out;
}

function isAmount(fen: unknown): boolean {
  return typeof fen === "number" && Number.isSafeInteger(fen) && fen > 0;
}
