/**
 * The demo's 补助发放: one batch the demo admin prepared for the three demo students, waiting for
 * a second finance member's approval (maker-checker: the admin cannot approve it). It credits
 * nothing, so the demo's balances are as before.
 */
import { chinaDay, chinaMonth, chinaMonthRange } from "../platform/china_time.ts";
import type { Db } from "../platform/database.ts";
import { createBatch } from "./service.ts";

/** Prepares the demo batch as `staffId` in `schoolId`; returns its id. */
export async function seedDemoSubsidy(
  db: Db,
  input: { staffId: number; schoolId: number; studentNumbers: string[] },
): Promise<number> {
  const list = ["学号,金额（元）", ...input.studentNumbers.map((n) => `${n},50.00`)].join("\n");
  // To the end of next month (China time).
  const nextMonth = chinaMonthRange(chinaMonth())[1];
  const end = chinaMonthRange(chinaMonth(nextMonth))[1];
  return await createBatch(db, { staffId: input.staffId, ip: null }, {
    name: "演示：十二月伙食补助",
    purpose: "家庭经济困难学生伙食补助（演示）",
    schoolId: input.schoolId,
    purse: "subsidy",
    source: "list",
    list: new TextEncoder().encode(list),
    amount: null,
    validFrom: chinaDay(),
    validUntil: chinaDay(end.getTime() - 1),
    categories: ["canteen", "supermarket"],
  });
}
