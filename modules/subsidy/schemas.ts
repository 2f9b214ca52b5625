import { z } from "zod";
import { pageField } from "../platform/listing.ts";
import { amountOf } from "./recipients.ts";

const DAY = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/;

/** An upload's limit (50,000 rows of 学号 and amount are far below it). */
export const MAX_LIST_BYTES = 5 * 1024 * 1024;

/** 新建补助批次: what, for whom, how much, when and where it may be spent. */
export const batchSchema = z.object({
  name: z.string().trim().min(1, "请填写批次名称").max(60, "批次名称不超过60字"),
  purpose: z.string().trim().min(1, "请填写发放事由").max(200, "发放事由不超过200字"),
  school_id: z.string().regex(/^\d{1,15}$/, "请选择学校"),
  purse: z.string().regex(/^[a-z_]{1,32}$/, "请选择补助钱包").default("subsidy"),
  source: z.enum(["list", "card_type"], { error: "请选择发放对象" }),
  card_type: z.string().regex(/^([1-9]\d{0,14})?$/, "请选择卡类别").default(""),
  amount: z.string().trim().max(20).default(""),
  file: z.unknown().optional(),
  valid_from: z.string().regex(DAY, "请选择有效期开始日期"),
  valid_until: z.string().regex(DAY, "请选择有效期截止日期"),
  categories: z.union([z.string(), z.array(z.string())]).optional()
    .transform((v) => (v === undefined ? [] : Array.isArray(v) ? v : [v])),
}).transform(async (f, ctx) => {
  let amount: number | null = null;
  if (f.amount !== "") {
    const a = amountOf(f.amount, null);
    if (typeof a === "string") {
      ctx.addIssue({ code: "custom", path: ["amount"], message: a });
      return z.NEVER;
    }
    amount = a;
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
  const { file: _file, categories, ...rest } = f;
  return {
    name: f.name,
    purpose: f.purpose,
    schoolId: Number(f.school_id),
    purse: f.purse,
    source: f.source,
    cardTypeId: f.card_type ? Number(f.card_type) : undefined,
    list,
    amount,
    validFrom: f.valid_from,
    validUntil: f.valid_until,
    categories,
    typed: { ...rest, categories: categories.join(",") },
  };
});

/** 冲回 one card's grant. */
export const reverseSchema = z.object({
  student_number: z.string().trim().min(1, "请填写学号").max(20, "学号格式不正确"),
  reason: z.string().trim().min(1, "请填写冲回原因").max(200, "原因不超过200字"),
}).transform((f) => ({ studentNumber: f.student_number, reason: f.reason, typed: f }));

/** A batch page: which rows, the page, an export. */
export const batchQuery = z.object({
  rows: z.enum(["all", "refused", "ok"]).optional().catch(undefined),
  page: pageField,
  export: z.enum(["csv", "xlsx"]).optional().catch(undefined),
});

/** The batches' report: an export. */
export const listQuery = z.object({
  export: z.enum(["csv", "xlsx"]).optional().catch(undefined),
  page: pageField,
});
