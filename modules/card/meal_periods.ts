/**
 * 餐次: a canteen merchant's meal periods (早餐/午餐/晚餐 as China times of day, start included,
 * end excluded), each with an optional cap per card per period (a number of payments and/or an
 * amount) and a discount per card type that replaces the type's canteen rule inside the period
 * (pricing.ts applies them). The system administrator edits them (audited); a payment records the
 * rule it was priced by, so a change never rewrites history.
 */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { writeAudit } from "../staff/mod.ts";
import { CardError } from "./errors.ts";
import { type Discount, discountProblem } from "./types.ts";

type StaffActor = { staffId: number; ip?: string | null };

/** A meal period of a merchant, times as "HH:MM" (China time). */
export interface MealPeriod {
  id: number;
  merchantId: number;
  name: string;
  starts: string;
  ends: string;
  maxCount: number | null;
  maxAmount: number | null;
  /** Discounts by card type id. */
  prices: Record<number, Discount>;
}

/** What the administrator sets. */
export type MealPeriodInput = Omit<MealPeriod, "id" | "merchantId">;

/** The usual names, offered by the form. */
export const MEAL_NAMES = ["早餐", "午餐", "晚餐"] as const;

const HH_MM = /^([01]\d|2[0-3]):[0-5]\d$/;
const MAX_AMOUNT = 100_000_000;

/** A merchant's meal periods by start, with their discounts. */
export async function listMealPeriods(db: Db, merchantId: number): Promise<MealPeriod[]> {
  const periods = await db.selectFrom("meal_periods")
    .select(["id", "name", "starts", "ends", "max_count", "max_amount"])
    .where("merchant_id", "=", merchantId).orderBy("starts").execute();
  const ids = periods.map((p) => Number(p.id));
  const prices = ids.length === 0 ? [] : await db.selectFrom("meal_period_prices")
    .select(["meal_period_id", "card_type_id", "percent_off", "fen_off"])
    .where("meal_period_id", "in", ids).execute();
  return periods.map((p) => ({
    id: Number(p.id),
    merchantId,
    name: p.name,
    starts: String(p.starts).slice(0, 5),
    ends: String(p.ends).slice(0, 5),
    maxCount: p.max_count,
    maxAmount: p.max_amount === null ? null : Number(p.max_amount),
    prices: Object.fromEntries(
      prices.filter((x) => Number(x.meal_period_id) === Number(p.id)).map((x) => [
        Number(x.card_type_id),
        { percentOff: x.percent_off, fenOff: Number(x.fen_off) },
      ]),
    ),
  }));
}

/** How many meal periods each of these merchants has. */
export async function mealPeriodCounts(db: Db): Promise<Map<number, number>> {
  const rows = await db.selectFrom("meal_periods")
    .select(["merchant_id", sql<string>`count(*)`.as("n")]).groupBy("merchant_id").execute();
  return new Map(rows.map((r) => [Number(r.merchant_id), Number(r.n)]));
}

/**
 * What is wrong with a meal period as asked, per field, in Chinese (empty when nothing): times
 * as HH:MM with the end after the start, no overlap with the merchant's `others`, caps above
 * zero, discounts within bounds for known card types.
 */
export function mealPeriodProblems(
  p: MealPeriodInput,
  others: Array<Pick<MealPeriod, "name" | "starts" | "ends">>,
  typeIds: number[],
): Record<string, string> {
  const out: Record<string, string> = {};
  if (!/^[\p{L}\p{N}（）()·-]{1,10}$/u.test(p.name)) {
    out.name = "餐次名称为1-10个文字，如早餐、午餐、晚餐";
  } else if (others.some((o) => o.name === p.name)) out.name = "该商户已有同名的餐次";
  if (!HH_MM.test(p.starts)) out.starts = "开始时间格式为 时:分（如 06:30）";
  if (!HH_MM.test(p.ends)) out.ends = "结束时间格式为 时:分（如 09:00）";
  if (!out.starts && !out.ends) {
    const clash = others.find((o) => p.starts < o.ends && o.starts < p.ends);
    if (p.ends <= p.starts) out.ends = "结束时间需晚于开始时间（同一天内）";
    else if (clash) {
      out.starts = `与${clash.name}（${clash.starts}–${clash.ends}）时间重叠`;
    }
  }
  if (p.maxCount !== null && (!Number.isSafeInteger(p.maxCount) || p.maxCount <= 0)) {
    out.max_count = "每餐次笔数上限需为大于0的整数，不限请留空";
  }
  if (
    p.maxAmount !== null &&
    (!Number.isSafeInteger(p.maxAmount) || p.maxAmount <= 0 || p.maxAmount > MAX_AMOUNT)
  ) out.max_amount = "每餐次金额上限需为大于0的金额，不限请留空";
  for (const [typeId, d] of Object.entries(p.prices)) {
    if (!typeIds.includes(Number(typeId))) out._form = "卡类别不存在，请刷新页面后重试";
    const problem = discountProblem(d);
    if (problem) out[`type_${typeId}_discount`] = problem;
  }
  return out;
}

/** Adds (`periodId` null) or changes a merchant's meal period and its discounts, audited. */
export async function saveMealPeriod(
  db: Db,
  actor: StaffActor,
  merchantId: number,
  periodId: number | null,
  input: MealPeriodInput,
): Promise<number> {
  return await db.transaction().execute(async (trx) => {
    // One change of a merchant's periods at a time: the overlap check holds at commit.
    await sql`select pg_advisory_xact_lock(7240900, ${merchantId}::int)`.execute(trx);
    const periods = await listMealPeriods(trx, merchantId);
    const before = periodId === null ? null : periods.find((p) => p.id === periodId);
    if (before === undefined) throw new CardError("No such meal period", "餐次不存在", "_form");
    const typeIds = (await trx.selectFrom("card_types").select("id").execute())
      .map((t) => Number(t.id));
    const problems = mealPeriodProblems(
      input,
      periods.filter((p) => p.id !== periodId),
      typeIds,
    );
    const [field] = Object.keys(problems);
    if (field) throw new CardError(`Bad meal period: ${field}`, problems[field], field);
    const values = {
      name: input.name,
      starts: input.starts,
      ends: input.ends,
      max_count: input.maxCount,
      max_amount: input.maxAmount,
      updated_at: new Date(),
    };
    const id = Number(
      periodId === null
        ? (await trx.insertInto("meal_periods").values({ ...values, merchant_id: merchantId })
          .returning("id").executeTakeFirstOrThrow()).id
        : (await trx.updateTable("meal_periods").set(values).where("id", "=", periodId)
          .returning("id").executeTakeFirstOrThrow()).id,
    );
    await trx.deleteFrom("meal_period_prices").where("meal_period_id", "=", id).execute();
    const rules = Object.entries(input.prices).filter(([, d]) => d.percentOff || d.fenOff);
    if (rules.length) {
      await trx.insertInto("meal_period_prices").values(rules.map(([typeId, d]) => ({
        meal_period_id: id,
        card_type_id: Number(typeId),
        percent_off: d.percentOff,
        fen_off: d.fenOff,
      }))).execute();
    }
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: periodId === null ? "card.meal_period_create" : "card.meal_period_update",
      targetType: "meal_period",
      targetId: id,
      before,
      after: { id, merchantId, ...input },
      ip: actor.ip ?? null,
    });
    return id;
  });
}

/** Removes a merchant's meal period (its discounts with it), audited. */
export async function deleteMealPeriod(
  db: Db,
  actor: StaffActor,
  merchantId: number,
  periodId: number,
): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(7240900, ${merchantId}::int)`.execute(trx);
    const before = (await listMealPeriods(trx, merchantId)).find((p) => p.id === periodId);
    if (!before) throw new CardError("No such meal period", "餐次不存在", "_form");
    await trx.deleteFrom("meal_periods").where("id", "=", periodId).execute();
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "card.meal_period_delete",
      targetType: "meal_period",
      targetId: periodId,
      before,
      after: null,
      ip: actor.ip ?? null,
    });
  });
}

/**
 * The demo's 餐次 at one canteen: 早餐 06:30–09:00, 午餐 11:00–13:30, 晚餐 17:00–19:30, with
 * no cap and no discount (prices stay the list prices until the administrator sets some).
 */
export async function seedDemoMealPeriods(db: Db, merchantId: number): Promise<void> {
  await db.insertInto("meal_periods").values([
    { merchant_id: merchantId, name: "早餐", starts: "06:30", ends: "09:00" },
    { merchant_id: merchantId, name: "午餐", starts: "11:00", ends: "13:30" },
    { merchant_id: merchantId, name: "晚餐", starts: "17:00", ends: "19:30" },
  ]).execute();
}
