/**
 * 离线付款码限额: what one offline code payment and one China day of them may be, set by 一卡通中心
 * (audited) below the ceilings of 付款设置; a payment keeps these and the student's own limits.
 */
import type { Db } from "../platform/database.ts";
import { writeAudit } from "../staff/mod.ts";
import { getPaySettings } from "./pay_settings.ts";
import { limitSettingsProblems } from "./_amounts.ts";
import { InvalidLimitsError } from "./errors.ts";
import "./offline_tables.ts";

/** The card office's offline limits, in fen. */
export interface OfflineLimits {
  payLimit: number;
  dailyLimit: number;
  updatedAt: Date;
  updatedBy: number | null;
}

/** The offline limits in force (the migration seeds ¥30.00 and ¥100.00). */
export async function getOfflineLimits(db: Db): Promise<OfflineLimits> {
  const row = await db.selectFrom("offline_code_limits").selectAll().where("id", "=", 1)
    .executeTakeFirstOrThrow();
  return {
    payLimit: row.pay_limit,
    dailyLimit: row.daily_limit,
    updatedAt: row.updated_at,
    updatedBy: row.updated_by,
  };
}

/**
 * Sets the offline limits (一卡通中心): each at most the ceiling of 付款设置 and one payment at
 * most a day, the same bounds a student's limits keep (`limitSettingsProblems`); audited.
 */
export async function updateOfflineLimits(
  db: Db,
  actor: { staffId: number; ip?: string | null },
  input: { payLimit: number; dailyLimit: number },
): Promise<OfflineLimits> {
  const problems = limitSettingsProblems(input);
  for (const field of ["pay_limit", "daily_limit"] as const) {
    if (problems[field]) throw new InvalidLimitsError(field, problems[field]);
  }
  await db.transaction().execute(async (trx) => {
    const before = await trx.selectFrom("offline_code_limits").select(["pay_limit", "daily_limit"])
      .where("id", "=", 1).forUpdate().executeTakeFirstOrThrow();
    await trx.updateTable("offline_code_limits").set({
      pay_limit: input.payLimit,
      daily_limit: input.dailyLimit,
      updated_at: new Date(),
      updated_by: actor.staffId,
    }).where("id", "=", 1).execute();
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "wallet.offline_limits",
      targetType: "offline_code_limits",
      targetId: 1,
      before: { payLimit: before.pay_limit, dailyLimit: before.daily_limit },
      after: { payLimit: input.payLimit, dailyLimit: input.dailyLimit },
      ip: actor.ip ?? null,
    });
  });
  return await getOfflineLimits(db);
}

/** What an offline payment of this card may be: the card office's limits, lower where its own are. */
export async function offlineLimitsOf(
  db: Db,
  cardAccountId: number,
): Promise<{ payLimit: number; dailyLimit: number }> {
  const [office, own] = await Promise.all([
    getOfflineLimits(db),
    getPaySettings(db, cardAccountId),
  ]);
  return {
    payLimit: Math.min(office.payLimit, own.payLimit),
    dailyLimit: Math.min(office.dailyLimit, own.dailyLimit),
  };
}
