import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { chinaMonthStart } from "../platform/china_time.ts";
import { findCardByChip } from "../card/mod.ts";
import { adjustBalance, payFromCard } from "./payments.ts";

/**
 * Opening balances for the demo cardholders (by chip number), booked as 调账 transfers so the
 * ledger stays balanced and no gateway money is invented. Idempotent by reference.
 */
export async function seedDemoWallet(
  db: Db,
  chipNumbers: string[],
  amount = 20_000,
): Promise<number> {
  let seeded = 0;
  for (const chip of chipNumbers) {
    const card = await findCardByChip(db, chip);
    if (!card) continue;
    const r = await adjustBalance(db, {
      cardAccountId: card.cardAccountId,
      amount,
      reference: `demo-opening-${card.cardAccountId}`,
      reason: "演示数据：开户余额",
      staffId: null,
    });
    if (!r.duplicate) seeded++;
  }
  return seeded;
}

/**
 * Last month's takings of a demo merchant run by an outside operator, so that 商户结算 has a
 * complete period to settle in the demo: one payment per chip per listed amount, each dated on a
 * day of last month (China time). Demo data only: the dates are set on the fresh rows, before
 * anything reads them. Idempotent by reference.
 */
export async function seedDemoTakings(
  db: Db,
  input: { merchantId: number; chipNumbers: string[]; amounts: number[]; now?: Date },
): Promise<number> {
  const lastMonth = chinaMonthStart(chinaMonthStart(input.now ?? new Date()).getTime() - 1);
  let seeded = 0;
  for (const chip of input.chipNumbers) {
    const card = await findCardByChip(db, chip);
    if (!card) continue;
    for (const [i, amount] of input.amounts.entries()) {
      const r = await payFromCard(db, {
        cardAccountId: card.cardAccountId,
        merchantId: input.merchantId,
        amount,
        reference: `demo-takings-${card.cardAccountId}-${i}`,
      });
      if (r.duplicate) continue;
      const at = new Date(lastMonth.getTime() + (3 + i * 3) * 86_400_000 + 12 * 3_600_000);
      await sql`update ledger_transfers set created_at = ${at} where id = ${r.transferId}`
        .execute(db);
      seeded++;
    }
  }
  return seeded;
}
