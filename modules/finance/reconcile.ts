/**
 * Top-up reconciliation: a gateway's statement (CSV) against our paid orders. Pure functions;
 * the service loads the orders and stores the result.
 */
import { readCsv } from "../platform/csv.ts";
import { parseYuan } from "../platform/money.ts";

/** One successful payment as the gateway's statement lists it. */
export interface StatementRow {
  line: number;
  time: string;
  orderNo: string;
  txnId: string;
  amount: number;
  status: string;
}

/** Our side of a payment: a paid (or unpaid) top-up order. */
export interface OurOrder {
  orderNo: string;
  txnId: string | null;
  amount: number;
  state: string;
  paidAt: Date | null;
}

/** What reconciling found, bucket by bucket. */
export interface ReconcileResult {
  matched: Array<{ orderNo: string; txnId: string; amount: number }>;
  /** Paid at the gateway, not paid (or unknown) on our side. */
  missingOurs: Array<
    { orderNo: string; txnId: string; amount: number; ourState: string | null; line: number }
  >;
  /** Paid on our side in the period, absent from the statement. */
  missingTheirs: Array<{ orderNo: string; txnId: string | null; amount: number }>;
  mismatched: Array<
    { orderNo: string; txnId: string; theirAmount: number; ourAmount: number; line: number }
  >;
  /** Lines that could not be read, and rows whose status is not a success (refunds etc.). */
  problems: Array<{ line: number; message: string }>;
  skipped: number;
}

const COLUMNS = {
  time: ["交易时间", "支付时间", "time"],
  orderNo: ["商户订单号", "out_trade_no"],
  txnId: ["微信支付订单号", "微信订单号", "渠道订单号", "交易单号", "transaction_id"],
  amount: ["金额(元)", "金额（元）", "订单金额", "应结订单金额", "总金额", "金额", "amount"],
  status: ["状态", "交易状态", "trade_state"],
} as const;

/** WeChat bills prefix values with a backtick so spreadsheets keep them as text. */
function clean(v: string | undefined): string {
  return (v ?? "").trim().replace(/^`/, "").trim();
}

/** Reads a statement: finds the columns by their Chinese headers, keeps the successful rows. */
export function readStatement(
  text: string,
): { rows: StatementRow[]; problems: ReconcileResult["problems"]; skipped: number } {
  const table = readCsv(text, { field: "statement" });
  const problems: ReconcileResult["problems"] = [];
  if (table.length === 0) {
    return { rows: [], problems: [{ line: 1, message: "文件为空" }], skipped: 0 };
  }
  const header = table[0].cells.map(clean);
  const index = {} as Record<keyof typeof COLUMNS, number>;
  for (
    const [key, names] of Object.entries(COLUMNS) as Array<
      [keyof typeof COLUMNS, readonly string[]]
    >
  ) {
    index[key] = header.findIndex((h) => names.includes(h));
  }
  const missing = (["orderNo", "txnId", "amount"] as const).filter((k) => index[k] < 0);
  if (missing.length) {
    return {
      rows: [],
      problems: [{ line: 1, message: `表头缺少：${missing.map((k) => COLUMNS[k][0]).join("、")}` }],
      skipped: 0,
    };
  }
  const rows: StatementRow[] = [];
  let skipped = 0;
  const seen = new Set<string>();
  for (let i = 1; i < table.length; i++) {
    const { cells: r, line } = table[i];
    const orderNo = clean(r[index.orderNo]);
    const status = index.status >= 0 ? clean(r[index.status]).toUpperCase() : "SUCCESS";
    // Summary lines at the end of WeChat bills (总交易单数, …) carry no order number.
    if (!orderNo && /总|合计|total/i.test(r.join(""))) {
      skipped++;
      continue;
    }
    if (!["SUCCESS", "支付成功", "成功", "已支付"].includes(status)) {
      skipped++;
      continue;
    }
    const amount = parseYuan(clean(r[index.amount]).replace(/^[¥￥]/, "").replace(/,/g, ""));
    if (!/^[A-Za-z0-9_*|-]{1,64}$/.test(orderNo) || amount === null) {
      problems.push({ line, message: "商户订单号或金额无法识别" });
      continue;
    }
    if (seen.has(orderNo)) {
      problems.push({ line, message: `商户订单号 ${orderNo} 重复出现` });
      continue;
    }
    seen.add(orderNo);
    rows.push({
      line,
      time: index.time >= 0 ? clean(r[index.time]) : "",
      orderNo,
      txnId: clean(r[index.txnId]),
      amount,
      status,
    });
  }
  return { rows, problems, skipped };
}

/**
 * Compares the statement with our orders: `statementOrders` are our orders named by the
 * statement (any state), `periodPaid` our orders paid within the statement's period.
 */
export function reconcile(
  statement: StatementRow[],
  statementOrders: OurOrder[],
  periodPaid: OurOrder[],
): Omit<ReconcileResult, "problems" | "skipped"> {
  const ours = new Map(statementOrders.map((o) => [o.orderNo, o]));
  const named = new Set(statement.map((r) => r.orderNo));
  const result: Omit<ReconcileResult, "problems" | "skipped"> = {
    matched: [],
    missingOurs: [],
    missingTheirs: [],
    mismatched: [],
  };
  for (const row of statement) {
    const o = ours.get(row.orderNo);
    if (!o || o.state !== "paid") {
      result.missingOurs.push({
        orderNo: row.orderNo,
        txnId: row.txnId,
        amount: row.amount,
        ourState: o?.state ?? null,
        line: row.line,
      });
    } else if (o.amount !== row.amount) {
      result.mismatched.push({
        orderNo: row.orderNo,
        txnId: row.txnId,
        theirAmount: row.amount,
        ourAmount: o.amount,
        line: row.line,
      });
    } else {
      result.matched.push({ orderNo: row.orderNo, txnId: row.txnId, amount: row.amount });
    }
  }
  for (const o of periodPaid) {
    if (!named.has(o.orderNo)) {
      result.missingTheirs.push({ orderNo: o.orderNo, txnId: o.txnId, amount: o.amount });
    }
  }
  return result;
}
