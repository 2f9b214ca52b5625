import { sql } from "kysely";
import {
  chinaDayStart,
  chinaMonthRange,
  chinaMonthSql,
  chinaMonthStart,
  chinaWeekStart,
} from "../platform/china_time.ts";
import type { Db } from "../platform/database.ts";
import { merchantsByIds } from "../merchant/mod.ts";
import type { TransferKind } from "./tables.ts";

/** The filters of 交易记录 and the transfer kinds behind each. */
export const HISTORY_TYPES = {
  purchase: { label: "消费", kinds: ["purchase"] },
  topup: { label: "充值", kinds: ["topup", "topup_refund", "topup_refund_return"] },
  electricity: { label: "电费", kinds: ["electricity"] },
  water: { label: "冷水", kinds: ["water"] },
  shower: { label: "热水", kinds: ["shower"] },
  refund: { label: "退款", kinds: ["refund", "utility_refund", "reversal"] },
  subsidy: {
    label: "补助",
    kinds: ["subsidy", "subsidy_reversal", "subsidy_expiry", "subsidy_return"],
  },
} as const satisfies Record<string, { label: string; kinds: TransferKind[] }>;

export type HistoryType = keyof typeof HISTORY_TYPES;

/** How each kind reads in the list. */
export const KIND_LABELS: Record<TransferKind, string> = {
  purchase: "消费",
  shower: "热水",
  electricity: "电费",
  water: "冷水",
  topup: "充值",
  refund: "退款",
  utility_refund: "退款",
  reversal: "撤销",
  adjustment: "调账",
  void: "撤销",
  cash_out: "销户退款",
  topup_refund: "充值退回",
  topup_refund_return: "退回失败返还",
  subsidy: "补助发放",
  subsidy_reversal: "补助冲正",
  subsidy_expiry: "补助到期退回",
  subsidy_return: "销户补助退回",
};

/** One line of 交易记录. */
export interface HistoryRow {
  id: number;
  kind: TransferKind;
  channel: string | null;
  amount: number;
  cardDelta: number;
  balanceAfter: number;
  merchantName: string | null;
  /** canteen, supermarket, shower, other (null without a merchant). */
  merchantCategory: string | null;
  terminalId: number | null;
  createdAt: Date;
  details: unknown;
}

/** The transfer columns a line of 交易记录 is made of. */
const HISTORY_COLUMNS = [
  "id",
  "kind",
  "channel",
  "amount",
  "card_delta",
  "balance_after",
  "merchant_id",
  "terminal_id",
  "created_at",
  "details",
] as const;

/** A card's history, newest first, `limit` rows before `beforeId`. */
export async function listTransactions(
  db: Db,
  cardAccountId: number,
  filter: { type?: HistoryType; month?: string; beforeId?: number; limit?: number } = {},
): Promise<HistoryRow[]> {
  let q = db.selectFrom("ledger_transfers").select(HISTORY_COLUMNS)
    .where("card_account_id", "=", cardAccountId);
  if (filter.type) q = q.where("kind", "in", [...HISTORY_TYPES[filter.type].kinds]);
  if (filter.month) {
    const [start, end] = chinaMonthRange(filter.month);
    q = q.where("created_at", ">=", start).where("created_at", "<", end);
  }
  if (filter.beforeId) q = q.where("id", "<", filter.beforeId);
  const rows = await q.orderBy("id", "desc").limit(filter.limit ?? 20).execute();
  return await withMerchants(db, rows);
}

type TransferColumns = {
  id: number;
  kind: TransferKind;
  channel: string | null;
  amount: number;
  card_delta: number | null;
  balance_after: number | null;
  merchant_id: number | null;
  terminal_id: number | null;
  created_at: Date;
  details: unknown;
};

/** Lines of 交易记录 with their merchant's name and category (the merchant module's). */
export async function withMerchants(db: Db, rows: TransferColumns[]): Promise<HistoryRow[]> {
  const merchants = await merchantsByIds(db, rows.map((r) => r.merchant_id));
  return rows.map((r) => {
    const m = r.merchant_id === null ? undefined : merchants.get(r.merchant_id);
    return {
      id: r.id,
      kind: r.kind,
      channel: r.channel,
      amount: r.amount,
      cardDelta: r.card_delta ?? 0,
      balanceAfter: r.balance_after ?? 0,
      merchantName: m?.name ?? null,
      merchantCategory: m?.category ?? null,
      terminalId: r.terminal_id,
      createdAt: r.created_at,
      details: r.details,
    };
  });
}

/** One transfer of this card account, or null (also when it belongs to someone else). */
export async function getTransaction(
  db: Db,
  cardAccountId: number,
  id: number,
): Promise<HistoryRow | null> {
  const r = await db.selectFrom("ledger_transfers").select(HISTORY_COLUMNS)
    .where("id", "=", id).where("card_account_id", "=", cardAccountId).executeTakeFirst();
  return r ? (await withMerchants(db, [r]))[0] : null;
}

/** Spending (消费, 热水, 电费, 冷水, less refunds and reversals) today, this week and this month, China time. */
export async function spendingTotals(
  db: Db,
  cardAccountId: number,
  now: Date = new Date(),
): Promise<{ today: number; week: number; month: number }> {
  const dayStart = chinaDayStart(now);
  const weekStart = chinaWeekStart(now);
  const monthStart = chinaMonthStart(now);
  const from = weekStart < monthStart ? weekStart : monthStart;
  const spend = sql<
    number
  >`case when kind in ('purchase', 'shower', 'electricity', 'water') then amount
    when kind in ('refund', 'utility_refund', 'reversal') then -amount else 0 end`;
  const r = await sql<{ today: number; week: number; month: number }>`
    select
      coalesce(sum(${spend}) filter (where created_at >= ${dayStart}), 0) as today,
      coalesce(sum(${spend}) filter (where created_at >= ${weekStart}), 0) as week,
      coalesce(sum(${spend}) filter (where created_at >= ${monthStart}), 0) as month
    from ledger_transfers where card_account_id = ${cardAccountId} and created_at >= ${from}`
    .execute(db);
  const row = r.rows[0];
  return { today: Number(row.today), week: Number(row.week), month: Number(row.month) };
}

/** The icon and name a row of 交易记录 shows (食堂, 超市, 淋浴, 电费, 冷水, 充值, 退款…). */
export interface Category {
  key: string;
  label: string;
  glyph: string;
}

const CATEGORIES: Record<string, Category> = {
  canteen: { key: "canteen", label: "食堂", glyph: "食" },
  supermarket: { key: "supermarket", label: "超市", glyph: "超" },
  shower: { key: "shower", label: "淋浴", glyph: "浴" },
  electricity: { key: "electricity", label: "电费", glyph: "电" },
  water: { key: "water", label: "冷水", glyph: "水" },
  topup: { key: "topup", label: "充值", glyph: "充" },
  refund: { key: "refund", label: "退款", glyph: "退" },
  subsidy: { key: "subsidy", label: "补助", glyph: "补" },
  other: { key: "other", label: "其他", glyph: "其" },
};

/** A transfer's category: purchases by their merchant's kind, the rest by the transfer's kind. */
export function categoryOf(kind: TransferKind, merchantCategory: string | null): Category {
  switch (kind) {
    case "purchase":
      return CATEGORIES[merchantCategory ?? ""] ?? CATEGORIES.other;
    case "shower":
      return CATEGORIES.shower;
    case "electricity":
      return CATEGORIES.electricity;
    case "water":
      return CATEGORIES.water;
    case "topup":
    case "topup_refund":
    case "topup_refund_return":
      return CATEGORIES.topup;
    case "refund":
    case "utility_refund":
    case "reversal":
    case "void":
      return CATEGORIES.refund;
    case "subsidy":
    case "subsidy_reversal":
    case "subsidy_expiry":
    case "subsidy_return":
      return CATEGORIES.subsidy;
    default:
      return CATEGORIES.other;
  }
}

/** How a top-up's payment channel reads on its detail page. */
const TOPUP_METHOD_LABELS: Record<string, string> = {
  wechat: "微信支付",
  sandbox: "测试支付（沙箱）",
};

/** A top-up transfer's channel and our order number (from its details), else null. */
export function topupOf(row: HistoryRow): { channel: string; orderNo: string | null } | null {
  if (!["topup", "topup_refund", "topup_refund_return"].includes(row.kind)) return null;
  const d = row.details as { method?: unknown; info?: { orderNo?: unknown } } | null;
  const method = d && typeof d.method === "string" ? d.method : null;
  const orderNo = d && d.info && typeof d.info.orderNo === "string" ? d.info.orderNo : null;
  if (!method && !orderNo) return null;
  return { channel: method ? TOPUP_METHOD_LABELS[method] ?? method : "—", orderNo };
}

/** China-time month of a transfer in SQL, as chinaMonth reads it. */
const MONTH_SQL = chinaMonthSql("created_at");

/**
 * 支出 and 收入 of the given months (China time) for 交易记录's month headers, under the same type
 * filter as the list: what left the card and what came onto it.
 */
export async function monthTotals(
  db: Db,
  cardAccountId: number,
  months: string[],
  type?: HistoryType,
): Promise<Map<string, { spent: number; received: number }>> {
  const out = new Map<string, { spent: number; received: number }>();
  if (months.length === 0) return out;
  const sorted = [...months].sort();
  const [start] = chinaMonthRange(sorted[0]);
  const [, end] = chinaMonthRange(sorted[sorted.length - 1]);
  const kinds = type ? sql`and kind in (${sql.join([...HISTORY_TYPES[type].kinds])})` : sql``;
  const r = await sql<{ month: string; spent: number; received: number }>`
    select ${MONTH_SQL} as month,
      coalesce(sum(-card_delta) filter (where card_delta < 0), 0) as spent,
      coalesce(sum(card_delta) filter (where card_delta > 0), 0) as received
    from ledger_transfers
    where card_account_id = ${cardAccountId} and created_at >= ${start} and created_at < ${end}
      ${kinds}
    group by 1`.execute(db);
  for (const row of r.rows) {
    out.set(row.month, { spent: Number(row.spent), received: Number(row.received) });
  }
  return out;
}
