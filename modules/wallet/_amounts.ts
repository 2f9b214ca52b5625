/**
 * Amounts and the holder's limits as numbers, before any SQL: what a movement may be
 * (`checkAmount`, `MAX_AMOUNT`) and what a student may set in 付款设置 (`limitSettingsProblems`
 * under the system ceilings). The debit rule (_rules.ts) enforces the limits a card has.
 */
import { fenToYuanText } from "../platform/money.ts";
import { InvalidAmountError } from "./errors.ts";

/** ¥1,000,000: far above any real movement, far below the safe-integer edge. */
export const MAX_AMOUNT = 100_000_000;

/** System ceilings of the student's 付款设置; the student may only lower them. */
export const DEFAULT_PAY_LIMIT = 20_000;
export const DEFAULT_DAILY_LIMIT = 50_000;

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
