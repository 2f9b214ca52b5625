import { z } from "zod";
import { decodeCsv } from "../platform/csv.ts";
import { exportField, pageField } from "../platform/listing.ts";

/** A China day as typed: 2026-11-25. */
export const DATE_RE = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/;

/** A path id (1–15 digits). */
export const idParam = z.string().regex(/^\d{1,15}$/);

/** 退款: the transfer, the amount in yuan, why; the form's token is the refund's reference. */
export const refundSchema = z.object({
  transfer_id: z.string().regex(/^\d{1,15}$/, "请选择要退款的交易"),
  amount: z.string().min(1, "请输入退款金额").max(20, "金额格式不正确"),
  reason: z.string().max(500, "原因不超过200字").default(""),
  token: z.string().max(100).default(""),
}).transform((f) => ({
  transferId: Number(f.transfer_id),
  amountText: f.amount,
  reason: f.reason,
  token: f.token,
  typed: f,
}));

/** 充值退回: the order, the amount in yuan, why; the form's token is the refund's reference. */
export const topupRefundSchema = z.object({
  order_no: z.string().trim().regex(/^YXT\d{10,29}$/, "请输入正确的商户订单号"),
  amount: z.string().min(1, "请输入退回金额").max(20, "金额格式不正确"),
  reason: z.string().max(200, "原因不超过80字").default(""),
  token: z.string().max(100).default(""),
}).transform((f) => ({
  orderNo: f.order_no,
  amountText: f.amount,
  reason: f.reason,
  token: f.token,
  typed: f,
}));

/** 调账 proposed: the 学号, a signed amount in yuan, why. */
export const adjustSchema = z.object({
  student_number: z.string().trim().min(1, "请输入学号").max(20, "学号格式不正确"),
  amount: z.string().min(1, "请输入调账金额").max(20, "金额格式不正确"),
  reason: z.string().max(500, "原因不超过200字").default(""),
}).transform((f) => ({
  studentNumber: f.student_number,
  amountText: f.amount,
  reason: f.reason,
  typed: f,
}));

/** 营业日报's days and grouping (anything unreadable is left out). */
export const reportQuery = z.object({
  from: z.string().regex(DATE_RE).optional().catch(undefined),
  to: z.string().regex(DATE_RE).optional().catch(undefined),
  by: z.enum(["merchant", "terminal"]).optional().catch(undefined),
});

/** 脱机复核's decision note. */
export const decideSchema = z.object({
  note: z.string().trim().min(2, "请填写处理说明（至少2个字）").max(200, "处理说明不超过200字"),
});

/** 异常通知's resolution. */
export const resolveSchema = z.object({
  resolution: z.string().trim().min(2, "请填写处理说明").max(200, "处理说明不超过200字"),
});

/**
 * 充值对账: a channel this deployment has, the statement file (CSV, at most 5 MB) and optional
 * days. WeChat and bank statements opened in Excel are often saved as GBK or UTF-16: the text
 * comes decoded.
 */
export function reconcileSchema<M extends string>(methods: ReadonlySet<M>) {
  return z.object({
    method: z.unknown().optional(),
    statement: z.unknown().optional(),
    from: z.unknown().optional(),
    to: z.unknown().optional(),
  }).transform(async (f, ctx) => {
    const fail = (field: string, message: string) => {
      ctx.addIssue({ code: "custom", path: [field], message });
      return z.NEVER;
    };
    const method = String(f.method ?? "");
    const [from, to] = [String(f.from ?? ""), String(f.to ?? "")];
    if (!methods.has(method as M)) return fail("method", "请选择支付渠道");
    const file = f.statement;
    if (!(file instanceof File) || file.size === 0) {
      return fail("statement", "请选择对账单文件（CSV）");
    }
    if (file.size > 5_000_000) return fail("statement", "对账单文件不能超过5MB");
    if ((from && !DATE_RE.test(from)) || (to && !DATE_RE.test(to))) {
      return fail("from", "日期格式应为 2026-11-25");
    }
    return {
      method: method as M,
      filename: file.name,
      text: decodeCsv(new Uint8Array(await file.arrayBuffer())),
      from: from || undefined,
      to: to || undefined,
    };
  });
}

const DAY = z.string().regex(DATE_RE).optional().catch(undefined);

/** 充值订单's filters: an order number or 学号, a state, a range of China days; page, export. */
export const ordersQuery = z.object({
  q: z.string().trim().max(40).optional().catch(undefined),
  state: z.enum(["pending", "paid", "closed"]).optional().catch(undefined),
  from: DAY,
  to: DAY,
  page: pageField,
  export: exportField,
}).transform((q) => {
  const [from, to] = q.from && q.to && q.from > q.to ? [q.to, q.from] : [q.from, q.to];
  return { ...q, from, to, shown: { q: q.q, state: q.state, from, to } };
});

/** 商户结算's list: a merchant, a state; page, export. */
export const settlementsQuery = z.object({
  merchant: z.coerce.number().int().positive().optional().catch(undefined),
  state: z.enum(["prepared", "approved", "rejected", "paid"]).optional().catch(undefined),
  page: pageField,
  export: exportField,
});

/** 编制结算单: one merchant, or every settled one. */
export const prepareSchema = z.object({
  merchant: z.string().regex(/^(all|\d{1,15})$/, "请选择商户"),
}).transform((f) => ({ merchantId: f.merchant === "all" ? "all" as const : Number(f.merchant) }));

/** 复核: an optional note (a rejection's reason). */
export const settlementDecisionSchema = z.object({
  note: z.string().trim().max(200, "说明不超过200字").default(""),
});

/** 付款: the bank's reference of the transfer to the operator. */
export const settlementPaySchema = z.object({
  bank_reference: z.string().trim().max(64, "银行流水号不超过64个字符").default(""),
});

/** A percentage typed with at most two decimals ("3.5", "3.50"), as basis points. */
const PERCENT = /^(\d{1,3})(?:\.(\d{1,2}))?$/;

/** 结算条件 of a merchant. */
export const termsSchema = z.object({
  settles: z.string().optional(),
  period: z.enum(["daily", "weekly", "monthly"], { error: "请选择结算周期" }),
  fee_rate: z.string().trim().regex(PERCENT, "管理费率为0到100之间的百分数，最多两位小数"),
  payee_name: z.string().trim().max(60, "收款户名不超过60字").default(""),
  payee_bank: z.string().trim().max(60, "开户行不超过60字").default(""),
  payee_account: z.string().trim().max(40, "收款账号不超过40个字符")
    .regex(/^[0-9 -]*$/, "收款账号只能包含数字、空格和横线").default(""),
}).transform((f, ctx) => {
  const [, whole, part] = PERCENT.exec(f.fee_rate)!;
  const feeRateBp = Number(whole) * 100 + Number((part ?? "").padEnd(2, "0"));
  if (feeRateBp > 10_000) {
    ctx.addIssue({ code: "custom", path: ["fee_rate"], message: "管理费率不能超过100%" });
    return z.NEVER;
  }
  return {
    settles: f.settles === "1",
    period: f.period,
    feeRateBp,
    payeeName: f.payee_name || null,
    payeeBank: f.payee_bank || null,
    payeeAccount: f.payee_account || null,
    typed: f,
  };
});

/** 调账's list: a state, a page, or the list as a file. */
export const adjustmentsQuery = z.object({
  state: z.enum(["proposed", "approved", "rejected"]).optional().catch(undefined),
  page: pageField,
  export: exportField,
});

/** 脱机复核's list: a state, a page, or the list as a file. */
export const offlineReviewsQuery = z.object({
  state: z.enum(["pending", "accepted", "rejected"]).optional().catch(undefined),
  page: pageField,
  export: exportField,
});

/** 本商户: a page of the statements, or the list as a file. */
export const portalQuery = z.object({ page: pageField, export: exportField });

/** 本商户 → 打印: the statement's number. */
export const portalStatementQuery = z.object({
  id: z.coerce.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  export: exportField,
});
