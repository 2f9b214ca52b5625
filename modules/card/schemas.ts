import { z } from "zod";
import { exportField, pageField } from "../platform/listing.ts";

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
