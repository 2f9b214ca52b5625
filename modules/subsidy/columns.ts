/** 补助发放's exported lists: the batches' report, a draft's rows, an approved batch's cards. */
import { chinaDay } from "../platform/china_time.ts";
import type { Column } from "../platform/listing.ts";
import type { BatchLot, LotTotals } from "../wallet/mod.ts";
import type { Batch, Recipient } from "./service.ts";

/** Where a batch's money may be spent, as the pages name the places. */
export const PLACE_LABELS: Record<string, string> = {
  canteen: "食堂",
  supermarket: "超市",
  shower: "淋浴",
  utilities: "水电费",
  other: "其他商户",
};

/** A batch's period as China days, both included (it ends at the start of the day after). */
export function periodOf(
  b: Pick<Batch, "valid_from" | "valid_until">,
): { from: string; until: string } {
  return { from: chinaDay(b.valid_from), until: chinaDay(b.valid_until.getTime() - 1) };
}

type ReportRow = Batch & { totals: LotTotals; stateLabel: string };

/** The batches' report: per batch issued, spent, expired, reversed/returned, remaining. */
export const REPORT_COLUMNS: Column<ReportRow>[] = [
  { header: "批次号", value: (b) => b.id, kind: "int" },
  { header: "批次名称", value: (b) => b.name },
  { header: "发放事由", value: (b) => b.purpose },
  { header: "状态", value: (b) => b.stateLabel },
  { header: "有效期开始", value: (b) => periodOf(b).from },
  { header: "有效期截止", value: (b) => periodOf(b).until },
  { header: "可用于", value: (b) => b.categories.map((c) => PLACE_LABELS[c] ?? c).join("、") },
  { header: "应发人数", value: (b) => b.recipients, kind: "int" },
  { header: "应发金额", value: (b) => b.total, kind: "yuan" },
  { header: "未通过行数", value: (b) => b.refused, kind: "int" },
  { header: "已发人数", value: (b) => b.totals.cards, kind: "int" },
  { header: "已发放", value: (b) => b.totals.issued, kind: "yuan" },
  { header: "已消费", value: (b) => b.totals.spent, kind: "yuan" },
  { header: "到期退回", value: (b) => b.totals.expired, kind: "yuan" },
  { header: "冲回/销户退回", value: (b) => b.totals.returned, kind: "yuan" },
  { header: "剩余", value: (b) => b.totals.remaining, kind: "yuan" },
];

/** A batch's rows before approval: each 学号 with its amount or why it is refused. */
export const ROW_COLUMNS: Column<Recipient>[] = [
  { header: "行号", value: (r) => (r.line ? r.line : ""), kind: "text" },
  { header: "学号", value: (r) => r.student_number },
  { header: "姓名", value: (r) => r.name },
  { header: "金额", value: (r) => r.amount, kind: "yuan" },
  {
    header: "结果",
    value: (r) => r.error ? `不发放：${r.error}` : r.granted_at ? "已发放" : "待发放",
  },
];

/** An approved batch's cards: issued, spent, expired, reversed, remaining. */
export const LOT_COLUMNS: Column<BatchLot & { studentNumber: string; name: string | null }>[] = [
  { header: "学号", value: (r) => r.studentNumber },
  { header: "姓名", value: (r) => r.name },
  { header: "已发放", value: (r) => r.granted, kind: "yuan" },
  { header: "已消费", value: (r) => r.spent, kind: "yuan" },
  { header: "到期退回", value: (r) => r.expired, kind: "yuan" },
  { header: "冲回/销户退回", value: (r) => r.returned, kind: "yuan" },
  { header: "剩余", value: (r) => r.remaining, kind: "yuan" },
];
