import { z } from "zod";
import type { TerminalKind } from "./tables.ts";

/** 商户: [编码] (new merchants), [名称], [类别], [启用]; `typed` is what the form shows again. */
export const merchantSchema = z.object({
  code: z.string().trim().max(32, "编码过长").optional(),
  name: z.string().trim().min(1, "请输入商户名称").max(40, "名称过长"),
  category: z.enum(["canteen", "supermarket", "shower", "other"], { message: "请选择商户类别" }),
  active: z.string().optional(),
}).transform((f) => {
  const typed = { code: f.code ?? "", name: f.name, category: f.category };
  return { ...typed, active: f.active === "1", typed };
});

/** 新增终端: [商户], [终端类型], [名称]; `typed` is what the form shows again. */
export const terminalSchema = z.object({
  merchant_id: z.coerce.number({ message: "请选择商户" }).int().positive("请选择商户"),
  kind: z.enum(["canteen_pos", "supermarket_pos", "qr_scanner", "shower"], {
    message: "请选择终端类型",
  }),
  name: z.string().trim().min(1, "请输入终端名称").max(40, "名称过长"),
}).transform((f) => ({
  merchantId: f.merchant_id,
  kind: f.kind as TerminalKind,
  name: f.name,
  typed: { name: f.name, kind: f.kind, merchant_id: String(f.merchant_id) },
}));

/** A terminal's 启用/停用 switch (anything but "disabled" is active). */
export const terminalStatusForm = z.object({ status: z.unknown().optional() })
  .transform((f) => ({
    status: f.status === "disabled" ? "disabled" as const : "active" as const,
  }));

/** 开设经营者账号: [用户名], [姓名], [初始密码]; `typed` (no password) is what the form shows again. */
export const operatorSchema = z.object({
  username: z.string().trim().min(1, "请输入用户名").max(32, "用户名过长"),
  name: z.string().trim().min(1, "请输入姓名").max(40, "姓名过长"),
  password: z.string().min(1, "请输入初始密码").max(72, "密码过长"),
}).transform((f) => ({ ...f, typed: { username: f.username, name: f.name } }));
