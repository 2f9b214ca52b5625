import type { Db } from "../platform/database.ts";
import { findCardByChip } from "../card/mod.ts";
import { adjustBalance } from "./payments.ts";

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
