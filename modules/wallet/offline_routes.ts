/**
 * 离线付款码's pages (mounted by walletRoutes at "/"): the 付款码 page's device check-in, 付款码设置
 * → 移除, the shell the service worker keeps for /pay/code, and 一卡通中心's 离线付款码限额.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { zValidator } from "@hono/zod-validator";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { fenToYuanText } from "../platform/money.ts";
import { type FieldErrors, render } from "../platform/views.ts";
import { clientIp, requireStudent } from "../security/mod.ts";
import { registerAdminNav, requireRole, ROLES } from "../staff/mod.ts";
import { findBoundCard } from "../card/mod.ts";
import { removeDevice } from "./devices.ts";
import { syncDevice } from "./device_checkin.ts";
import { getOfflineLimits, updateOfflineLimits } from "./offline_limits.ts";
import { deviceParam, offlineLimitsForm } from "./schemas.ts";

type C = Context<AppEnv>;

/** The answer to the page's check-in carries a key: no cache may keep it. */
const NO_STORE = { "cache-control": "no-store" };

/** The device routes, the offline shell and the offline limits page. */
export function offlineCodeRoutes(deps: { db: Db; config: Config }): Hono<AppEnv> {
  const { db, config } = deps;
  const app = new Hono<AppEnv>();

  // The 付款码 page's script checks its device in (a script's request: it answers JSON). The key
  // leaves the server here only, once per device.
  app.post("/pay/devices", requireStudent, async (c) => {
    const card = await findBoundCard(db, c.get("accountId")!);
    if (!card) return c.json({ state: "off" }, 200, NO_STORE);
    const form = await c.req.parseBody();
    const handle = typeof form.handle === "string" ? form.handle : null;
    const sync = await syncDevice(db, config.appSecret, card.cardAccountId, {
      handle,
      userAgent: c.req.header("user-agent"),
    });
    return c.json({ ...sync, serverTime: Date.now() }, 200, NO_STORE);
  });

  app.post(
    "/pay/devices/:id/remove",
    requireStudent,
    zValidator("param", deviceParam, (r) => {
      if (!r.success) throw new NotFoundError("offline code device");
    }),
    async (c) => {
      const card = await findBoundCard(db, c.get("accountId")!);
      if (!card) throw new NotFoundError("offline code device");
      const removed = await removeDevice(db, card.cardAccountId, Number(c.req.valid("param").id));
      if (!removed) throw new NotFoundError("offline code device of this card");
      return c.redirect("/pay/settings?removed=1", 303);
    },
  );

  // What the service worker keeps for /pay/code: the page without anything of the student's;
  // the phone's script fills in its offline code.
  app.get(
    "/pay/code/offline",
    (c) =>
      render(c, "pay/offline", { scripts: ["vendor/qrcode.js", "pay_offline.js", "pay.js"] }, {
        title: "离线付款码",
        headers: { "cache-control": "no-cache" },
      }),
  );

  registerAdminNav({
    href: "/admin/offline-codes",
    label: "离线付款码限额",
    roles: [ROLES.cardOffice, ROLES.sysadmin],
  });
  const staffOnly = requireRole(ROLES.cardOffice, ROLES.sysadmin);
  const showLimits = async (
    c: C,
    errors: FieldErrors,
    input: Record<string, string> | null,
    status = 200,
  ) => {
    const limits = await getOfflineLimits(db);
    return render(c, "wallet/admin_offline_limits", {
      limits,
      errors,
      input: input ?? {
        pay_limit: fenToYuanText(limits.payLimit),
        daily_limit: fenToYuanText(limits.dailyLimit),
      },
      saved: c.req.query("saved") === "1",
    }, { status, layout: "admin/layout", title: "离线付款码限额" });
  };
  app.get("/admin/offline-codes", staffOnly, (c) => showLimits(c, {}, null));
  app.post(
    "/admin/offline-codes",
    staffOnly,
    zValidator(
      "form",
      offlineLimitsForm,
      formErrorsHook((c, e, input) => showLimits(c, e, input, 422)),
    ),
    async (c) => {
      const form = c.req.valid("form");
      const input = { payLimit: form.pay_limit, dailyLimit: form.daily_limit };
      return await runForm(
        () => updateOfflineLimits(db, { staffId: c.get("staff")!.id, ip: clientIp(c) }, input),
        (errors) =>
          showLimits(c, errors, {
            pay_limit: fenToYuanText(input.payLimit),
            daily_limit: fenToYuanText(input.dailyLimit),
          }, 422),
        () => c.redirect("/admin/offline-codes?saved=1", 303),
      );
    },
  );

  return app;
}
