/** 付款设置: the student's per-payment and daily limits and the payment code's freeze. */
import type { Db } from "../platform/database.ts";
import { ensureCardWallet } from "./_common.ts";
import { DEFAULT_DAILY_LIMIT, DEFAULT_PAY_LIMIT, limitSettingsProblems } from "./_amounts.ts";
import { InvalidLimitsError } from "./errors.ts";
import { revokeDevices } from "./devices.ts";

/** The student's 付款设置. */
export interface PaySettings {
  payLimit: number;
  dailyLimit: number;
  codeFrozen: boolean;
  maxPayLimit: number;
  maxDailyLimit: number;
}

/** The payment settings of a card account (defaults when it has no wallet yet). */
export async function getPaySettings(db: Db, cardAccountId: number): Promise<PaySettings> {
  const row = await db.selectFrom("ledger_accounts").select([
    "pay_limit",
    "daily_limit",
    "code_frozen",
  ])
    .where("card_account_id", "=", cardAccountId).executeTakeFirst();
  return {
    payLimit: row?.pay_limit ?? DEFAULT_PAY_LIMIT,
    dailyLimit: row?.daily_limit ?? DEFAULT_DAILY_LIMIT,
    codeFrozen: row?.code_frozen ?? false,
    maxPayLimit: DEFAULT_PAY_LIMIT,
    maxDailyLimit: DEFAULT_DAILY_LIMIT,
  };
}

/**
 * Changes the payment settings under the limits rule (`limitSettingsProblems`: between ¥0.01 and
 * the system ceiling, which a student may only lower, and one payment at most a day); freezing the
 * code also retires the live code and every 离线付款码 device at once.
 */
export async function updatePaySettings(
  db: Db,
  cardAccountId: number,
  input: { payLimit: number; dailyLimit: number; codeFrozen: boolean },
): Promise<PaySettings> {
  const { payLimit, dailyLimit } = input;
  const problems = limitSettingsProblems({ payLimit, dailyLimit });
  for (const field of ["pay_limit", "daily_limit"] as const) {
    if (problems[field]) throw new InvalidLimitsError(field, problems[field]);
  }
  await ensureCardWallet(db, cardAccountId);
  await db.transaction().execute(async (trx) => {
    await trx.updateTable("ledger_accounts")
      .set({ pay_limit: payLimit, daily_limit: dailyLimit, code_frozen: input.codeFrozen })
      .where("card_account_id", "=", cardAccountId).execute();
    if (input.codeFrozen) {
      await trx.updateTable("payment_codes").set({ superseded_at: new Date() })
        .where("card_account_id", "=", cardAccountId).where("superseded_at", "is", null)
        .where("used_at", "is", null).execute();
      // 离线付款码 too: every device of the card, for good (unfrozen, a phone gets a new one).
      await revokeDevices(trx, cardAccountId);
    }
  });
  return await getPaySettings(db, cardAccountId);
}
