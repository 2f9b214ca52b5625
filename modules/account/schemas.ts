import { z } from "zod";
import { exportField, pageField } from "../platform/listing.ts";
import { loginPasswordProblem } from "../security/mod.ts";

/** Mainland mobile numbers: 11 ASCII digits starting 13–19. */
export const PHONE_RE = /^1[3-9]\d{9}$/;
/** A plain ASCII address (no IDN, no quoting): what QQ, 163 and campus mail give out. */
const EMAIL_RE =
  /^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;

const phone = z.string({ error: "请输入手机号" }).trim()
  .min(1, "请输入手机号")
  .max(20, "手机号格式不正确，请输入11位手机号")
  .regex(/^[0-9]*$/, "手机号只能包含半角数字")
  .regex(PHONE_RE, "手机号格式不正确，请输入11位手机号");

/** A new login password (manual: 字母加数字), printable ASCII only so no invisible characters. */
export function newPassword(label: string) {
  return z.string({ error: `请输入${label}` }).min(1, `请输入${label}`).superRefine((v, ctx) => {
    const problem = loginPasswordProblem(v);
    if (problem) ctx.addIssue({ code: "custom", message: problem.replace("登录密码", label) });
    else if (!/^[\x21-\x7e]+$/.test(v)) {
      ctx.addIssue({ code: "custom", message: `${label}只能包含半角字母、数字和符号` });
    }
  });
}

const currentPassword = (label: string) =>
  z.string({ error: `请输入${label}` }).min(1, `请输入${label}`).max(128, `${label}错误`);

const email = z.string({ error: "请输入邮箱" }).trim()
  .min(1, "请输入邮箱")
  .max(254, "邮箱地址过长")
  .regex(EMAIL_RE, "邮箱格式不正确，如 12345@qq.com")
  .transform((v) => v.toLowerCase());

const code = (label: string) =>
  z.string({ error: `请输入${label}` }).trim()
    .min(1, `请输入${label}`)
    .regex(/^\d{6}$/, `${label}为6位数字`);

const next = z.string().max(300).optional();

export const registerSchema = z.object({
  phone,
  password: newPassword("登录密码"),
  school_id: z.string({ error: "请选择学校" }).regex(/^\d{1,9}$/, "请选择学校").transform(Number),
  next,
});

export const loginSchema = z.object({
  phone,
  password: currentPassword("登录密码"),
  next,
});

export const emailCodeSchema = z.object({ email });
export const bindEmailSchema = z.object({ email, code: code("验证码") });

export const forgotCodeSchema = z.object({ phone });
export const forgotSchema = z.object({
  phone,
  code: code("邮箱验证码"),
  new_password: newPassword("新密码"),
});

export const changePasswordSchema = z.object({
  old_password: currentPassword("原密码"),
  new_password: newPassword("新密码"),
});

export const newPasswordSchema = z.object({
  // A mangled ticket is just an expired one: the service answers "页面已过期，请重新登录".
  ticket: z.string().max(300).catch(""),
  new_password: newPassword("新密码"),
  next,
});

export const searchSchema = z.object({
  // Checked by the page itself so that odd input gets a message instead of being dropped.
  phone: z.string().trim().optional().catch(undefined),
  page: pageField,
  export: exportField,
});
