/** 营业日报: payments per merchant or terminal over China days, as a page (with its chart) and CSV. */
import { chinaDay, chinaDayRange } from "../platform/china_time.ts";
import { writeCsv } from "../platform/csv.ts";
import type { Db } from "../platform/database.ts";
import { fenToYuanText } from "../platform/money.ts";
import { dailyMerchantTotals } from "../wallet/mod.ts";
import { listTerminals } from "../merchant/mod.ts";

/** One bar of the daily report. */
export interface ReportRow {
  key: string;
  label: string;
  merchant: string;
  count: number;
  amount: number;
  returned: number;
}

/** Payments (count, amount) per merchant or per terminal over China days [from, to]. */
export async function dailyReport(
  db: Db,
  range: { from: string; to: string; by: "merchant" | "terminal" },
): Promise<ReportRow[]> {
  const [start] = chinaDayRange(range.from);
  const [, end] = chinaDayRange(range.to);
  const rows = await dailyMerchantTotals(db, { from: start, to: end });
  const terminals = new Map((await listTerminals(db)).map((t) => [t.id, t.name]));
  const out = new Map<string, ReportRow>();
  for (const r of rows) {
    const key = range.by === "merchant"
      ? `m${r.merchantId}`
      : `t${r.terminalId ?? "-"}:${r.merchantId}`;
    const label = range.by === "merchant"
      ? r.merchantName
      : r.terminalId === null
      ? `${r.merchantName}（付款码/无终端）`
      : `${terminals.get(r.terminalId) ?? `终端 #${r.terminalId}`}`;
    const row = out.get(key) ??
      { key, label, merchant: r.merchantName, count: 0, amount: 0, returned: 0 };
    row.count += r.count;
    row.amount += r.amount;
    row.returned += r.returned;
    out.set(key, row);
  }
  return [...out.values()].sort((a, b) => b.amount - a.amount || a.label.localeCompare(b.label));
}

/** The report as CSV for Excel (platform/csv.ts: BOM, quoting, no cell read as a formula). */
export function reportCsv(
  rows: ReportRow[],
  range: { from: string; to: string; by: string },
): string {
  return writeCsv([
    [
      range.by === "merchant" ? "商户" : "终端",
      "商户",
      "笔数",
      "金额(元)",
      "退款(元)",
      "起始日期",
      "截止日期",
    ],
    ...rows.map((r) => [
      r.label,
      r.merchant,
      r.count,
      fenToYuanText(r.amount),
      fenToYuanText(r.returned),
      range.from,
      range.to,
    ]),
  ]);
}

/** A report's days in order ([from, to], swapped when given backwards; today by default). */
export function reportRange(
  q: { from?: string; to?: string; by?: "merchant" | "terminal" },
): { from: string; to: string; by: "merchant" | "terminal" } {
  const to = q.to ?? chinaDay();
  const from = q.from ?? to;
  return { from: from <= to ? from : to, to: from <= to ? to : from, by: q.by ?? "merchant" };
}

/** The report page's bar chart (its first 30 rows, scaled to the largest) and totals. */
export function reportChart(rows: ReportRow[]) {
  const max = Math.max(1, ...rows.map((r) => r.amount));
  const chart = rows.slice(0, 30).map((r, i) => ({
    ...r,
    y: 10 + i * 28,
    width: Math.round((r.amount / max) * 380),
  }));
  const total = rows.reduce((s, r) => ({ count: s.count + r.count, amount: s.amount + r.amount }), {
    count: 0,
    amount: 0,
  });
  return { chart, chartHeight: 20 + chart.length * 28, total };
}
