/**
 * 营业日报: payments over a range of China days — the days side by side (a trend chart and a table
 * of each day) and the merchants or terminals ranked (a bar chart and a table), as a page and as
 * CSV or Excel.
 */
import { chinaDay, chinaDayRange } from "../platform/china_time.ts";
import type { Db } from "../platform/database.ts";
import type { Table } from "../platform/listing.ts";
import { formatFen } from "../platform/money.ts";
import { dailyMerchantTotals } from "../wallet/mod.ts";
import { listTerminals } from "../merchant/mod.ts";

/** One bar of the ranking. */
export interface ReportRow {
  key: string;
  label: string;
  merchant: string;
  count: number;
  amount: number;
  returned: number;
}

/** One China day of the range, with no payments as zeros. */
export interface DayRow {
  day: string;
  count: number;
  amount: number;
  returned: number;
}

/** The longest range a report covers (a year and a day): the chart keeps a bar per day. */
export const MAX_REPORT_DAYS = 366;

/** Every China day of [from, to], in order. */
export function daysOf(from: string, to: string): string[] {
  const out: string[] = [];
  for (let t = chinaDayRange(from)[0].getTime(); out.length <= MAX_REPORT_DAYS; t += 86_400_000) {
    const day = chinaDay(t);
    if (day > to) break;
    out.push(day);
  }
  return out;
}

/** Payments over China days [from, to]: each day's totals, and per merchant or per terminal. */
export async function dailyReport(
  db: Db,
  range: { from: string; to: string; by: "merchant" | "terminal" },
): Promise<{ rows: ReportRow[]; days: DayRow[] }> {
  const [start] = chinaDayRange(range.from);
  const [, end] = chinaDayRange(range.to);
  const totals = await dailyMerchantTotals(db, { from: start, to: end });
  const terminals = new Map((await listTerminals(db)).map((t) => [t.id, t.name]));
  const out = new Map<string, ReportRow>();
  const days = new Map(
    daysOf(range.from, range.to).map((day) => [day, { day, count: 0, amount: 0, returned: 0 }]),
  );
  for (const r of totals) {
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
    const day = days.get(r.day);
    if (day) {
      day.count += r.count;
      day.amount += r.amount;
      day.returned += r.returned;
    }
  }
  return {
    rows: [...out.values()].sort((a, b) => b.amount - a.amount || a.label.localeCompare(b.label)),
    days: [...days.values()],
  };
}

/**
 * The ranking as a file: 商户 once when by merchant, 终端 and its 商户 when by terminal (CSV through
 * platform/csv.ts: BOM, quoting, no cell read as a formula).
 */
export function reportTable(
  range: { from: string; to: string; by: "merchant" | "terminal" },
): Table<ReportRow> {
  return {
    name: `营业日报-${range.by === "merchant" ? "按商户" : "按终端"}`,
    columns: [
      ...(range.by === "merchant" ? [{ header: "商户", value: (r: ReportRow) => r.label }] : [
        { header: "终端", value: (r: ReportRow) => r.label },
        { header: "商户", value: (r: ReportRow) => r.merchant },
      ]),
      { header: "笔数", value: (r) => r.count, kind: "int" },
      { header: "金额(元)", value: (r) => r.amount, kind: "yuan" },
      { header: "退款(元)", value: (r) => r.returned, kind: "yuan" },
      { header: "起始日期", value: () => range.from },
      { header: "截止日期", value: () => range.to },
    ],
  };
}

/**
 * A report's days in order ([from, to], swapped when given backwards; the last 7 days by
 * default), at most MAX_REPORT_DAYS (the start moves up).
 */
export function reportRange(
  q: { from?: string; to?: string; by?: "merchant" | "terminal" },
): { from: string; to: string; by: "merchant" | "terminal" } {
  const to0 = q.to ?? chinaDay();
  const from0 = q.from ??
    (q.to ? q.to : chinaDay(chinaDayRange(to0)[0].getTime() - 6 * 86_400_000));
  let [from, to] = from0 <= to0 ? [from0, to0] : [to0, from0];
  const span = daysOf(from, to);
  if (span.length > MAX_REPORT_DAYS) {
    from = chinaDay(chinaDayRange(to)[0].getTime() - (MAX_REPORT_DAYS - 1) * 86_400_000);
  }
  return { from, to, by: q.by ?? "merchant" };
}

/** Ranges a finance member picks most: today, the last 7 and 30 days, this month. */
export function quickRanges(
  today = chinaDay(),
): Array<{ label: string; from: string; to: string }> {
  const back = (n: number) => chinaDay(chinaDayRange(today)[0].getTime() - n * 86_400_000);
  return [
    { label: "今天", from: today, to: today },
    { label: "近7天", from: back(6), to: today },
    { label: "近30天", from: back(29), to: today },
    { label: "本月", from: `${today.slice(0, 8)}01`, to: today },
  ];
}

/** The ranking's bar chart (its first 30 rows, scaled to the largest) and totals. */
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

/** The trend chart's geometry: a bar per day over a 760 × 220 box, a label every few days. */
export function trendChart(days: DayRow[]) {
  const width = 760;
  const left = 64;
  const top = 12;
  const plot = 170;
  const max = Math.max(1, ...days.map((d) => d.amount));
  // The axis's top: the largest day rounded up to a yuan step, so its label reads cleanly.
  const step = [100, 500, 1000, 5000, 10_000, 50_000, 100_000, 500_000, 1_000_000, 10_000_000]
    .find((s) => max / s <= 10) ?? 100_000_000;
  const top0 = Math.ceil(max / step) * step;
  const slot = (width - left - 8) / Math.max(1, days.length);
  const every = Math.max(1, Math.ceil(days.length / 12));
  const bars = days.map((d, i) => {
    const h = Math.round((d.amount / top0) * plot);
    return {
      ...d,
      x: Math.round(left + i * slot + slot * 0.15),
      w: Math.max(1, Math.round(slot * 0.7)),
      y: top + plot - h,
      h,
      label: i % every === 0 || i === days.length - 1 ? d.day.slice(5) : "",
    };
  });
  return {
    bars,
    width,
    height: top + plot + 30,
    axis: { left, top, bottom: top + plot, max: formatFen(top0), mid: formatFen(top0 / 2) },
  };
}
