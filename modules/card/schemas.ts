import { z } from "zod";
import { exportField, pageField } from "../platform/listing.ts";
import { parseYuan } from "../platform/money.ts";
import { type CardTypeInput, cardTypeProblems, type Discount, PRICED_CATEGORIES } from "./types.ts";
import { type MealPeriodInput, mealPeriodProblems } from "./meal_periods.ts";

/** Only lengths and presence here; formats are the service's rules (rules.ts). */
const text = (empty: string, max = 64) =>
  z.string({ error: empty }).min(1, empty).max(max, "输入过长");

/** Form values to show again: never passwords, never the 身份证 number, never the CSRF token. */
export function shownAgain(form: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(form)) {
    if (typeof v === "string" && !["_csrf", "id_number"].includes(k) && !/password/i.test(k)) {
      out[k] = v.slice(0, 40);
    }
  }
  return out;
}

/**
 * 一卡通账号绑定: [学号], [一卡通密码]; [身份证] once the 学号's bind budget is spent. `typed` is
 * what the form shows again.
 */
export const bindSchema = z.object({
  student_number: text("请输入学号"),
  password: text("请输入一卡通密码"),
  id_number: z.string().max(64, "输入过长").optional(),
}).transform((f) => ({
  studentNumber: f.student_number,
  password: f.password,
  idNumber: f.id_number,
  typed: shownAgain(f),
}));

/** 一卡通密码修改: [原密码], [新密码]. */
export const passwordSchema = z.object({
  old_password: text("请输入原密码"),
  new_password: text("请输入新密码"),
}).transform((f) => ({ oldPassword: f.old_password, newPassword: f.new_password }));

/**
 * 挂失 and 解挂: [一卡通芯片卡号], [身份证], [一卡通密码]; at 挂失 also [同时冻结付款码].
 * `typed` is what the form shows again.
 */
export const lossSchema = z.object({
  chip_number: text("请输入一卡通芯片卡号"),
  id_number: text("请输入身份证号"),
  password: text("请输入一卡通密码"),
  freeze_payment_code: z.string().max(4).optional(),
}).transform((f) => ({
  chipNumber: f.chip_number,
  idNumber: f.id_number,
  password: f.password,
  freezePaymentCode: f.freeze_payment_code === "1",
  typed: shownAgain(f),
}));

/** 补卡 at the counter: the new chip's number. */
/** 补卡: the new chip's number; `confirm=1` once the clerk saw what it will cancel. */
export const reissueSchema = z.object({
  chip_number: text("请输入新卡的芯片卡号"),
  confirm: z.string().optional(),
}).transform((f) => ({ chip_number: f.chip_number, confirmed: f.confirm === "1" }));

/**
 * 导入持卡人: the school and the file, Excel (.xlsx) or CSV (at most `maxBytes`), read into bytes for
 * the preview.
 */
export function importUploadSchema(maxBytes: number) {
  return z.object({ file: z.unknown().optional(), school_id: z.unknown().optional() })
    .transform(async (f, ctx) => {
      if (!(f.file instanceof File) || f.file.size === 0) {
        ctx.addIssue({ code: "custom", path: ["file"], message: "请选择 Excel 或 CSV 文件" });
        return z.NEVER;
      }
      if (f.file.size > maxBytes) {
        const message = `文件过大（最大${maxBytes >> 20}MB）`;
        ctx.addIssue({ code: "custom", path: ["file"], message });
        return z.NEVER;
      }
      const schoolId = Number(f.school_id);
      return {
        schoolId: Number.isSafeInteger(schoolId) ? schoolId : 0,
        fileName: f.file.name,
        bytes: new Uint8Array(await f.file.arrayBuffer()),
      };
    });
}

/** 一卡通's search box: 学号, name, chip number or 手机号 (folded to plain width, 40 at most). */
export const searchQuery = z.object({
  q: z.unknown().optional(),
  page: pageField,
  export: exportField,
})
  .transform((f) => ({
    q: (typeof f.q === "string" ? f.q : "").normalize("NFKC").trim().slice(0, 40),
    page: f.page,
    export: f.export,
  }));

/** A form's fields as text (a repeated field keeps its last value). */
const fields = z.record(z.string(), z.unknown()).transform((f) => {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(f)) {
    const last = Array.isArray(v) ? v.at(-1) : v;
    if (typeof last === "string" && k !== "_csrf") out[k] = last.normalize("NFKC").trim();
  }
  return out;
});

/** 元 as fen; an empty field is `empty`, anything else unreadable NaN (the rule says why). */
function fenOf(text: string | undefined, empty: number | null): number | null {
  if (!text) return empty;
  return parseYuan(text) ?? NaN;
}

/** A discount's two fields (`<prefix>_percent`, `<prefix>_fen` in 元); both empty: none. */
function discountOf(f: Record<string, string>, prefix: string): Discount | undefined {
  const pct = f[`${prefix}_percent`] ?? "";
  const fen = f[`${prefix}_fen`] ?? "";
  if (pct === "" && fen === "") return undefined;
  return {
    percentOff: pct === "" ? 0 : /^\d{1,3}$/.test(pct) ? Number(pct) : NaN,
    fenOff: fenOf(fen, 0)!,
  };
}

/** Every problem the rule finds, as zod issues at their fields. */
function report(ctx: z.RefinementCtx, problems: Record<string, string>): boolean {
  for (const [field, message] of Object.entries(problems)) {
    ctx.addIssue({ code: "custom", path: [field], message });
  }
  return Object.keys(problems).length === 0;
}

/**
 * 卡类别's form: [名称], [持卡人身份], [单笔限额], [每日限额] (元), [可发放补助], and per merchant
 * category [折扣 %] and [立减 元]; checked by the type's own rule (`cardTypeProblems`).
 */
export const cardTypeSchema = fields.transform((f, ctx) => {
  const kind = f.kind === "staff" || f.kind === "student" ? f.kind : null;
  if (!kind) ctx.addIssue({ code: "custom", path: ["kind"], message: "请选择持卡人身份" });
  const input: CardTypeInput = {
    name: f.name ?? "",
    kind: kind ?? "student",
    payLimit: fenOf(f.pay_limit, NaN)!,
    dailyLimit: fenOf(f.daily_limit, NaN)!,
    subsidies: f.subsidies === "1",
    prices: Object.fromEntries(
      PRICED_CATEGORIES.map((c) => [c, discountOf(f, c)]).filter(([, d]) => d),
    ),
  };
  if (!report(ctx, cardTypeProblems(input)) || !kind) return z.NEVER;
  return { input, typed: f };
});

/**
 * 餐次's form: [餐次] name, [开始时间], [结束时间] (HH:MM, China time), [每餐次笔数上限],
 * [每餐次金额上限] (元; empty: no cap), per card type [折扣 %] and [立减 元] (`type_<id>_…`);
 * `period_id` names the period changed (empty: a new one). Overlaps are the service's to find.
 */
export const mealPeriodSchema = fields.transform((f, ctx) => {
  const typeIds = [...new Set(Object.keys(f).map((k) => /^type_(\d{1,15})_/.exec(k)?.[1]))]
    .filter((id): id is string => id !== undefined).map(Number);
  const count = f.max_count ?? "";
  const input: MealPeriodInput = {
    name: f.name ?? "",
    starts: f.starts ?? "",
    ends: f.ends ?? "",
    maxCount: count === "" ? null : /^\d{1,9}$/.test(count) ? Number(count) : NaN,
    maxAmount: fenOf(f.max_amount, null),
    prices: Object.fromEntries(
      typeIds.map((id) => [id, discountOf(f, `type_${id}`)]).filter(([, d]) => d),
    ),
  };
  if (!report(ctx, mealPeriodProblems(input, [], typeIds))) return z.NEVER;
  const periodId = /^\d{1,15}$/.test(f.period_id ?? "") ? Number(f.period_id) : null;
  return { periodId, input, typed: f };
});

/** A record named by a hidden field (`period_id`, `card_type_id`), or null. */
export const idField = (name: string) =>
  fields.transform((f) => (/^\d{1,15}$/.test(f[name] ?? "") ? Number(f[name]) : null));
