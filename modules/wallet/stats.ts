import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { chinaMonth, chinaMonthRange, chinaMonthSql } from "../platform/china_time.ts";
import { merchantsByIds } from "../merchant/mod.ts";
import { type Category, categoryOf } from "./history.ts";
import type { TransferKind } from "./tables.ts";

/** 消费统计: a card's spending per month and, for one month, per category. */
export interface SpendingStats {
  /** The last `months` months, oldest first, net of refunds (as 交易记录's 本月消费). */
  byMonth: Array<{ month: string; amount: number }>;
  /** The chosen month's spending by category, largest first; refunds as one negative line. */
  byCategory: Array<{ category: Category; amount: number }>;
  month: string;
  /** The chosen month's net spending (the categories' sum). */
  total: number;
}

/** "2026-11" → the month `n` months before it. */
function monthsBefore(month: string, n: number): string {
  const [y, m] = month.split("-").map(Number);
  const d = new Date(Date.UTC(y, m - 1 - n, 1));
  return d.toISOString().slice(0, 7);
}

const SPEND_KINDS: TransferKind[] = ["purchase", "shower", "electricity", "water"];
const REFUND_KINDS: TransferKind[] = ["refund", "utility_refund", "reversal"];

/** Spending of the `months` months up to `month` (China time) and that month's categories. */
export async function spendingStats(
  db: Db,
  cardAccountId: number,
  options: { month?: string; months?: number; now?: Date } = {},
): Promise<SpendingStats> {
  const month = options.month ?? chinaMonth(options.now ?? new Date());
  const count = options.months ?? 6;
  const first = monthsBefore(month, count - 1);
  const [start] = chinaMonthRange(first);
  const [, end] = chinaMonthRange(month);
  const spend = sql.join(SPEND_KINDS);
  const refund = sql.join(REFUND_KINDS);
  const monthly = await sql<{ month: string; amount: number }>`
    select ${chinaMonthSql("t.created_at")} as month,
      sum(case when t.kind in (${refund}) then -t.amount else t.amount end) as amount
    from ledger_transfers t
    where t.card_account_id = ${cardAccountId} and t.created_at >= ${start}
      and t.created_at < ${end} and t.kind in (${spend}, ${refund})
    group by 1`.execute(db);
  const [mStart, mEnd] = chinaMonthRange(month);
  const cats = await sql<{ kind: TransferKind; merchant_id: number | null; amount: number }>`
    select t.kind, t.merchant_id, sum(t.amount) as amount
    from ledger_transfers t
    where t.card_account_id = ${cardAccountId} and t.created_at >= ${mStart}
      and t.created_at < ${mEnd} and t.kind in (${spend}, ${refund})
    group by 1, 2`.execute(db);
  const merchants = await merchantsByIds(db, cats.rows.map((r) => r.merchant_id));

  const amounts = new Map(monthly.rows.map((r) => [r.month, Number(r.amount)]));
  const byMonth = Array.from({ length: count }, (_, i) => {
    const m = monthsBefore(month, count - 1 - i);
    return { month: m, amount: amounts.get(m) ?? 0 };
  });
  const merged = new Map<string, { category: Category; amount: number }>();
  for (const r of cats.rows) {
    const m = r.merchant_id === null ? undefined : merchants.get(r.merchant_id);
    const category = categoryOf(r.kind, m?.category ?? null);
    const signed = REFUND_KINDS.includes(r.kind) ? -Number(r.amount) : Number(r.amount);
    const line = merged.get(category.key) ?? { category, amount: 0 };
    line.amount += signed;
    merged.set(category.key, line);
  }
  const byCategory = [...merged.values()].sort((a, b) => b.amount - a.amount);
  const total = byCategory.reduce((sum, l) => sum + l.amount, 0);
  return { byMonth, byCategory, month, total };
}
