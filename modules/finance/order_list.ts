/** 充值订单 as finance reads it: found by order number or 学号, filtered, with each order's holder. */
import { chinaDayRange } from "../platform/china_time.ts";
import type { Db } from "../platform/database.ts";
import type { Column, Paging } from "../platform/listing.ts";
import { cardHoldersByIds, findCardsByStudentNumber } from "../card/mod.ts";
import { type OrderFilter, pageOrders, type TopupOrder } from "../topup/mod.ts";

/** 充值订单's query as finance typed it. */
export interface OrdersQuery {
  /** An order number (YXT…) or a 学号. */
  q?: string;
  state?: "pending" | "paid" | "closed";
  from?: string;
  to?: string;
}

/** An order with the 学号 and name of its card account. */
export type OrderRow = TopupOrder & { studentNumber: string; holderName: string };

const STATE_LABELS: Record<string, string> = {
  paid: "已支付",
  closed: "已关闭",
  pending: "待支付",
};
const METHOD_LABELS: Record<string, string> = { wechat: "微信支付", sandbox: "测试支付" };

/** The columns of 充值订单 as a file. */
export const ORDER_COLUMNS: Column<OrderRow>[] = [
  { header: "商户订单号", value: (o) => o.order_no },
  { header: "学号", value: (o) => o.studentNumber },
  { header: "姓名", value: (o) => o.holderName },
  { header: "渠道", value: (o) => METHOD_LABELS[o.method] ?? o.method },
  { header: "金额(元)", value: (o) => o.amount, kind: "yuan" },
  { header: "状态", value: (o) => STATE_LABELS[o.state] ?? o.state },
  { header: "渠道交易号", value: (o) => o.gateway_txn_id ?? "" },
  { header: "下单时间", value: (o) => o.created_at, kind: "time" },
  { header: "支付时间", value: (o) => o.paid_at, kind: "time" },
  { header: "标记", value: (o) => o.flagged ? (o.flag_reason ?? "是") : "" },
];

/** The orders the query finds, a page of them (the last when past the end), and the count. */
export async function financeOrders(
  db: Db,
  query: OrdersQuery,
  page: (total: number) => Paging,
): Promise<{ rows: OrderRow[]; total: number; page: Paging }> {
  const filter: OrderFilter = { state: query.state };
  const text = query.q?.trim() ?? "";
  if (/^YXT\d{10,29}$/.test(text)) filter.orderNo = text;
  else if (text) {
    filter.cardAccountIds = (await findCardsByStudentNumber(db, text)).map((c) => c.id);
  }
  if (query.from) filter.from = chinaDayRange(query.from)[0];
  if (query.to) filter.to = chinaDayRange(query.to)[1];
  const found = await pageOrders(db, filter, page);
  const holders = await cardHoldersByIds(db, found.rows.map((o) => o.card_account_id));
  return {
    rows: found.rows.map((o) => ({
      ...o,
      studentNumber: holders.get(o.card_account_id)?.studentNumber ?? "",
      holderName: holders.get(o.card_account_id)?.name ?? "",
    })),
    total: found.total,
    page: found.page as Paging,
  };
}
