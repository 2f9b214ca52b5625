/**
 * What many card accounts hold now, as 销户 reads one (`closingState`'s money): for a graduation
 * batch's preview of thousands of cards in one query per few thousand.
 */
import type { Db } from "../platform/database.ts";
import "./tables.ts";

/** One card's money: all purses, of it cash and lots, held by showers, owed by offline payments. */
export interface ClosingMoney {
  balance: number;
  cash: number;
  lots: number;
  held: number;
  overdraft: number;
}

/** The money of each card account that has a wallet (a card without one holds nothing). */
export async function closingMoney(
  db: Db,
  cardAccountIds: number[],
): Promise<Map<number, ClosingMoney>> {
  const out = new Map<number, ClosingMoney>();
  for (let i = 0; i < cardAccountIds.length; i += 5000) {
    const ids = cardAccountIds.slice(i, i + 5000);
    const rows = await db.selectFrom("ledger_accounts")
      .select(["card_account_id", "balance", "held", "overdraft", "lots"])
      .where("card_account_id", "in", ids).execute();
    for (const r of rows) {
      out.set(r.card_account_id!, {
        balance: r.balance,
        cash: r.balance - r.lots,
        lots: r.lots,
        held: r.held,
        overdraft: r.overdraft,
      });
    }
  }
  return out;
}
