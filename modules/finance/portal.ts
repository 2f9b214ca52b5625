/**
 * 本商户 (a merchant operator's read-only page): the merchant's takings today, what the school
 * owes it now, and its statements once finance has approved them (drafts and sent-back ones are
 * finance's own work). Read only: nothing here changes anything.
 */
import { chinaDay, chinaDayStart } from "../platform/china_time.ts";
import type { Db } from "../platform/database.ts";
import { NotFoundError } from "../platform/errors.ts";
import type { Paging } from "../platform/listing.ts";
import { listTerminals, type Merchant } from "../merchant/mod.ts";
import { dailyMerchantTotals, merchantBalances } from "../wallet/mod.ts";
import { getStatement, listStatements, type Statement } from "./settlement.ts";

const DAY_MS = 86_400_000;

/** The statements an operator sees: approved (frozen, to be paid) and paid. */
export const OPERATOR_STATES: Statement["state"][] = ["approved", "paid"];

/** The merchant's China day so far: payments, refunds, per terminal; and what it is owed now. */
export async function merchantToday(db: Db, merchant: Merchant, now = new Date()) {
  const start = chinaDayStart(now);
  const rows = await dailyMerchantTotals(db, {
    from: start,
    to: new Date(start.getTime() + DAY_MS),
    merchantId: merchant.id,
  });
  const names = new Map((await listTerminals(db, { merchantId: merchant.id }))
    .map((t) => [t.id, t.name]));
  const owed = (await merchantBalances(db, [merchant.id], start)).get(merchant.id);
  const sum = (k: "count" | "amount" | "returned") => rows.reduce((n, r) => n + r[k], 0);
  return {
    day: chinaDay(now),
    count: sum("count"),
    amount: sum("amount"),
    returned: sum("returned"),
    byTerminal: rows.map((r) => ({
      name: r.terminalId === null
        ? "付款码（无终端）"
        : names.get(r.terminalId) ?? `终端 #${r.terminalId}`,
      count: r.count,
      amount: r.amount,
      returned: r.returned,
    })),
    owed: owed?.balance ?? 0,
  };
}

/** The merchant's approved and paid statements, newest first. */
export async function operatorStatements(db: Db, merchant: Merchant, paging: Paging) {
  const { rows, total } = await listStatements(
    db,
    { merchantId: merchant.id, states: OPERATOR_STATES },
    paging,
  );
  return { rows, total };
}

/** One statement of the merchant that its operator may see; else not found. */
export async function operatorStatement(
  db: Db,
  merchant: Merchant,
  id: number,
): Promise<Statement> {
  const s = await getStatement(db, id);
  if (!s || s.merchant_id !== merchant.id || !OPERATOR_STATES.includes(s.state)) {
    throw new NotFoundError(`settlement statement ${id} of merchant ${merchant.id}`);
  }
  return s;
}
