import { z } from "zod";

/** Only lengths and presence here; formats are the service's rules (rules.ts). */
const text = (empty: string, max = 64) =>
  z.string({ error: empty }).min(1, empty).max(max, "输入过长");

/** 一卡通账号绑定: [学号], [一卡通密码]; [身份证] once the 学号's bind budget is spent. */
export const bindSchema = z.object({
  student_number: text("请输入学号"),
  password: text("请输入一卡通密码"),
  id_number: z.string().max(64, "输入过长").optional(),
});

/** 一卡通密码修改: [原密码], [新密码]. */
export const passwordSchema = z.object({
  old_password: text("请输入原密码"),
  new_password: text("请输入新密码"),
});

/** 挂失 and 解挂: [一卡通芯片卡号], [身份证], [一卡通密码]. */
export const lossSchema = z.object({
  chip_number: text("请输入一卡通芯片卡号"),
  id_number: text("请输入身份证号"),
  password: text("请输入一卡通密码"),
  freeze_payment_code: z.string().max(4).optional(),
});

/** 补卡 at the counter: the new chip's number. */
export const reissueSchema = z.object({
  chip_number: text("请输入新卡的芯片卡号"),
});
