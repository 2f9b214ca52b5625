import { z } from "zod";
import { parseYuan } from "../platform/money.ts";
import { limitSettingsProblems } from "./_amounts.ts";
import { HISTORY_TYPES } from "./history.ts";

/** The filters of 交易记录; anything else is refused with a message rather than ignored. */
export const historyQuery = z.object({
  type: z.union([z.literal(""), z.enum(Object.keys(HISTORY_TYPES) as [keyof typeof HISTORY_TYPES])])
    .optional(),
  month: z.union([
    z.literal(""),
    z.string().regex(/^20\d\d-(0[1-9]|1[0-2])$/, "月份格式不正确"),
  ]).optional(),
  before: z.union([z.literal(""), z.string().regex(/^[1-9]\d{0,14}$/, "参数错误")]).optional(),
  /** On a continuation page: the month of the row above, so its header is not repeated. */
  shown: z.union([z.literal(""), z.string().regex(/^20\d\d-(0[1-9]|1[0-2])$/, "参数错误")])
    .optional(),
});

/** 消费统计's month. */
export const statsQuery = z.object({
  month: z.union([
    z.literal(""),
    z.string().regex(/^20\d\d-(0[1-9]|1[0-2])$/, "月份格式不正确"),
  ]).optional(),
});

const yuan = (label: string) =>
  z.string().trim().min(1, `请输入${label}`).transform((v, ctx) => {
    const fen = parseYuan(v);
    if (fen === null || fen <= 0) {
      ctx.addIssue({ code: "custom", message: `${label}需为大于0、最多两位小数的金额` });
      return z.NEVER;
    }
    return fen;
  });

/** 付款码设置: limits in yuan under the limits rule (`limitSettingsProblems`), the freeze switch. */
export const settingsForm = z.object({
  pay_limit: yuan("单笔限额"),
  daily_limit: yuan("每日限额"),
  code_frozen: z.string().optional(),
}).superRefine((form, ctx) => {
  const problems = limitSettingsProblems({
    payLimit: form.pay_limit,
    dailyLimit: form.daily_limit,
  });
  for (const [field, message] of Object.entries(problems)) {
    ctx.addIssue({ code: "custom", path: [field], message });
  }
}).transform((form) => ({
  payLimit: form.pay_limit,
  dailyLimit: form.daily_limit,
  codeFrozen: form.code_frozen === "1",
}));

/** 离线付款码限额 (一卡通中心): the same amounts and bounds as a student's limits. */
export const offlineLimitsForm = z.object({
  pay_limit: yuan("单笔限额"),
  daily_limit: yuan("每日限额"),
}).superRefine((form, ctx) => {
  const problems = limitSettingsProblems({
    payLimit: form.pay_limit,
    dailyLimit: form.daily_limit,
  });
  for (const [field, message] of Object.entries(problems)) {
    ctx.addIssue({ code: "custom", path: [field], message });
  }
});

/** 付款码设置 → 移除 of an offline code device. */
export const deviceParam = z.object({ id: z.string().regex(/^[1-9]\d{0,14}$/) });
