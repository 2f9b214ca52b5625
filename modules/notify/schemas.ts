import { z } from "zod";
import { parseYuan } from "../platform/money.ts";
import { SWITCHABLE } from "./kinds.ts";
import type { NotifySettings } from "./settings.ts";
import type { MessageKind } from "./tables.ts";

/** The half hours quiet hours may start and end at, "00:00" … "23:30". */
export const HALF_HOURS: string[] = Array.from(
  { length: 48 },
  (_, i) => `${String(Math.floor(i / 2)).padStart(2, "0")}:${i % 2 ? "30" : "00"}`,
);

const minuteOf = (text: string) => {
  const i = HALF_HOURS.indexOf(text);
  return i < 0 ? null : i * 30;
};

const box = z.string().max(5).optional();

/**
 * 消息通知: a checkbox per kind a student may switch off (on_<kind>), [余额不足提醒金额] in yuan,
 * 免打扰 and its [开始] and [结束] half hours. `typed` is what the form shows again.
 */
export const settingsForm = z.object(
  {
    ...Object.fromEntries(SWITCHABLE.map((k) => [`on_${k}`, box])),
    low_balance: z.string().max(20).optional().default(""),
    quiet: box,
    quiet_start: z.string().max(10).optional().default(""),
    quiet_end: z.string().max(10).optional().default(""),
  } as Record<string, z.ZodType<string | undefined>>,
).transform((f, ctx) => {
  const typed = Object.fromEntries(
    Object.entries(f).filter(([, v]) => typeof v === "string"),
  ) as Record<string, string>;
  const lowBalance = parseYuan(typed.low_balance ?? "");
  if (lowBalance === null || lowBalance > 1_000_00) {
    ctx.addIssue({
      code: "custom",
      path: ["low_balance"],
      message: "请输入0至1000元之间的金额，最多两位小数",
    });
    return z.NEVER;
  }
  const quietStart = minuteOf(typed.quiet_start ?? "");
  const quietEnd = minuteOf(typed.quiet_end ?? "");
  if (quietStart === null || quietEnd === null) {
    ctx.addIssue({ code: "custom", path: ["quiet_start"], message: "请选择免打扰时段" });
    return z.NEVER;
  }
  const settings: NotifySettings = {
    muted: SWITCHABLE.filter((k: MessageKind) => typed[`on_${k}`] !== "1"),
    lowBalance,
    quiet: typed.quiet === "1",
    quietStart,
    quietEnd,
  };
  return { settings, typed };
});
