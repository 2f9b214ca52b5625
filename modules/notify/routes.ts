/** 我的 → 消息通知 (students) and 消息 (系统管理员): the notifier's pages. */
import { type Context, Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import type { Db } from "../platform/database.ts";
import type { AppEnv } from "../platform/http.ts";
import { NotFoundError } from "../platform/errors.ts";
import { formErrorsHook } from "../platform/forms.ts";
import { fenToYuanText } from "../platform/money.ts";
import { type FieldErrors, render } from "../platform/views.ts";
import { clientIp, requireStudent } from "../security/mod.ts";
import { registerAdminNav, requireRole, ROLES } from "../staff/mod.ts";
import { openidsOf } from "../account/mod.ts";
import {
  ERROR_LABELS,
  latestMessages,
  queueOverview,
  retryAllFailed,
  retryMessage,
} from "./admin.ts";
import { KINDS, messageText, STATE_LABELS, SWITCHABLE } from "./kinds.ts";
import { HALF_HOURS, settingsForm } from "./schemas.ts";
import { minuteText, type NotifySettings, saveSettings, settingsOf } from "./settings.ts";

/** The form's values for saved settings. */
function asInput(s: NotifySettings): Record<string, string> {
  return {
    ...Object.fromEntries(SWITCHABLE.map((k) => [`on_${k}`, s.muted.includes(k) ? "" : "1"])),
    low_balance: fenToYuanText(s.lowBalance),
    quiet: s.quiet ? "1" : "",
    quiet_start: minuteText(s.quietStart),
    quiet_end: minuteText(s.quietEnd),
  };
}

/** The student page (mount at "/"). */
export function notifyRoutes(deps: { db: Db }): Hono<AppEnv> {
  const { db } = deps;
  const app = new Hono<AppEnv>();

  const show = async (
    c: Context<AppEnv>,
    errors: FieldErrors,
    input: Record<string, string> | null,
    status = 200,
  ) => {
    const accountId = c.get("accountId")!;
    const saved = (await settingsOf(db, [accountId])).get(accountId)!;
    const messages = (await latestMessages(db, accountId)).map((m) => ({
      ...m,
      ...messageText(m.kind, m.data),
      path: KINDS[m.kind].path,
      stateLabel: m.state === "sent"
        ? (m.channel === "wechat" ? "已发送至微信" : "已发送至邮箱")
        : STATE_LABELS[m.state],
    }));
    const wechat = (await openidsOf(db, [accountId])).has(accountId);
    return render(c, "notify/settings", {
      input: input ?? asInput(saved),
      errors,
      kinds: SWITCHABLE.map((k) => ({ kind: k, label: KINDS[k].label })),
      halfHours: HALF_HOURS,
      messages,
      wechat,
      done: c.req.query("done") === "1",
    }, { status, title: "消息通知" });
  };

  app.get("/me/notifications", requireStudent, (c) => show(c, {}, null));

  app.post(
    "/me/notifications",
    requireStudent,
    zValidator("form", settingsForm, formErrorsHook((c, e, i) => show(c, e, i, 422))),
    async (c) => {
      await saveSettings(db, c.get("accountId")!, c.req.valid("form").settings);
      return c.redirect("/me/notifications?done=1", 303);
    },
  );

  return app;
}

const NOTIFY_ADMIN = [ROLES.sysadmin];

/** The staff page 消息 (mount at "/admin"). */
export function notifyAdminRoutes(deps: { db: Db }): Hono<AppEnv> {
  const { db } = deps;
  const app = new Hono<AppEnv>();
  registerAdminNav({ href: "/admin/notify", label: "消息", roles: NOTIFY_ADMIN });

  const show = async (c: Context<AppEnv>, notice = "", status = 200) =>
    render(c, "notify/admin", {
      ...await queueOverview(db),
      kindLabels: Object.fromEntries(Object.entries(KINDS).map(([k, v]) => [k, v.label])),
      stateLabels: STATE_LABELS,
      errorLabels: ERROR_LABELS,
      notice,
    }, { layout: "admin/layout", status, title: "消息" });

  const actor = (c: Context<AppEnv>) => ({ staffId: c.get("staff")!.id, ip: clientIp(c) });

  app.get("/notify", requireRole(...NOTIFY_ADMIN), (c) => show(c));

  app.post("/notify/retry", requireRole(...NOTIFY_ADMIN), async (c) => {
    const n = await retryAllFailed(db, actor(c));
    return show(c, n > 0 ? `已重新发送 ${n} 条失败的消息` : "没有需要重试的消息");
  });

  app.post("/notify/:id/retry", requireRole(...NOTIFY_ADMIN), async (c) => {
    const raw = c.req.param("id");
    if (!/^\d{1,15}$/.test(raw)) throw new NotFoundError(`message ${raw}`);
    if (!await retryMessage(db, actor(c), Number(raw))) {
      return show(c, "该消息已发送或不存在，无需重试", 409);
    }
    return c.redirect("/admin/notify", 303);
  });

  return app;
}
