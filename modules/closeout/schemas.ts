import { z } from "zod";
import { pageField } from "../platform/listing.ts";
import { parseYuan } from "../platform/money.ts";

const DAY = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/;

/** A 学号 list upload's limit (a class of a few thousand 学号 is far below it). */
export const MAX_LIST_BYTES = 5 * 1024 * 1024;

/** 新建离校批次: which cards, when, and how their balances are refunded. */
export const batchSchema = z.object({
  name: z.string().trim().min(1, "请填写批次名称").max(60, "批次名称不超过60字"),
  school_id: z.string().regex(/^\d{1,15}$/, "请选择学校"),
  kind: z.enum(["", "student", "staff"], { error: "请选择类型" }).default(""),
  card_type: z.string().regex(/^([1-9]\d{0,14})?$/, "请选择卡类别").default(""),
  prefix: z.string().trim().max(20, "学号前缀不超过20个字符")
    .regex(/^[0-9A-Za-z]*$/, "学号前缀只能包含字母和数字").default(""),
  file: z.unknown().optional(),
  close_on: z.string().regex(DAY, "请选择离校日期"),
  refund_rule: z.enum(["origin_first", "payout_only"], { error: "请选择余额退款方式" }),
  payout_method: z.enum(["cash", "bank"], { error: "请选择退款名单的退款方式" }),
  threshold: z.string().trim().default("0"),
}).transform(async (f, ctx) => {
  const threshold = f.threshold === "" ? 0 : parseYuan(f.threshold);
  if (threshold === null || threshold < 0) {
    ctx.addIssue({
      code: "custom",
      path: ["threshold"],
      message: "小额门槛须为不小于0的金额，如 100 或 0.50",
    });
    return z.NEVER;
  }
  let list: Uint8Array | null = null;
  if (f.file instanceof File && f.file.size > 0) {
    if (f.file.size > MAX_LIST_BYTES) {
      ctx.addIssue({
        code: "custom",
        path: ["file"],
        message: `文件过大（最大${MAX_LIST_BYTES >> 20}MB）`,
      });
      return z.NEVER;
    }
    list = new Uint8Array(await f.file.arrayBuffer());
  }
  if (!f.prefix && !list && !f.card_type) {
    ctx.addIssue({
      code: "custom",
      path: ["prefix"],
      message: "请填写学号前缀、选择卡类别或上传学号名单",
    });
    return z.NEVER;
  }
  const { file: _file, ...typed } = f;
  return {
    name: f.name,
    schoolId: Number(f.school_id),
    kind: f.kind || undefined,
    cardTypeId: f.card_type ? Number(f.card_type) : undefined,
    prefix: f.prefix.toUpperCase() || undefined,
    list,
    closeOn: f.close_on,
    refundRule: f.refund_rule,
    payoutMethod: f.payout_method,
    threshold,
    typed,
  };
});

/** The batches list: a page. */
export const batchesQuery = z.object({ page: pageField });

/** A batch page: its cards' state filter, page, export. */
export const batchQuery = z.object({
  state: z.enum(["pending", "queued", "done", "failed"]).optional().catch(undefined),
  page: pageField,
  export: z.enum(["csv", "xlsx"]).optional().catch(undefined),
});
