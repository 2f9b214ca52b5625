/** 交易记录 as the page shows it: a page of labelled rows, their month headers, the next page. */
import type { z } from "zod";
import { chinaMonth } from "../platform/china_time.ts";
import type { Db } from "../platform/database.ts";
import { type HistoryType, listTransactions, monthTotals } from "./history.ts";
import { labelRows } from "./labels.ts";
import type { historyQuery } from "./schemas.ts";

const PAGE_SIZE = 20;

/** One page of 交易记录 under the query's filters; `continued` when it follows an earlier page. */
export async function historyPage(
  db: Db,
  cardAccountId: number,
  q: z.infer<typeof historyQuery>,
): Promise<{
  continued: boolean;
  rows: Awaited<ReturnType<typeof labelRows>>;
  more: number | null;
  filter: { type: string; month: string };
  months: Map<string, { spent: number; received: number }>;
  shown: string | null;
}> {
  const type = (q.type || undefined) as HistoryType | undefined;
  const month = q.month || undefined;
  const beforeId = q.before ? Number(q.before) : undefined;
  const found = await listTransactions(db, cardAccountId, {
    type,
    month,
    beforeId,
    limit: PAGE_SIZE,
  });
  const rows = await labelRows(db, found);
  const months = await monthTotals(db, cardAccountId, [
    ...new Set(rows.map((r) => chinaMonth(r.createdAt))),
  ], type);
  return {
    continued: beforeId !== undefined,
    rows,
    more: rows.length === PAGE_SIZE ? rows[rows.length - 1].id : null,
    filter: { type: type ?? "", month: month ?? "" },
    months,
    shown: q.shown || null,
  };
}
