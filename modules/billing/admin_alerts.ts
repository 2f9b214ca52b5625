/** 低余量提醒: 电量不足 / 水量不足 thresholds per room size (the card office sets, sysadmin sees). */
import { type Context, Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { type FieldErrors, render } from "../platform/views.ts";
import { requireRole } from "../staff/mod.ts";
import { actorOf, ADMIN, type AdminDeps, mayDo } from "./_admin.ts";
import { changeThreshold } from "./admin_actions.ts";
import { listThresholds, unitsText } from "./readings.ts";
import { BILLING_ROLES } from "./roles.ts";
import { thresholdForm } from "./schemas.ts";

/** The thresholds page, mounted under /admin/billing. */
export function alertsAdmin({ db }: AdminDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  const show = async (
    c: Context<AppEnv>,
    errors: FieldErrors = {},
    input: Record<string, string> = {},
    status = 200,
  ) => {
    const rows = (await listThresholds(db)).map((t) => ({
      ...t,
      text: unitsText(t.milliUnits, t.utility),
    }));
    return render(c, "billing/admin_alerts", {
      rows,
      canEdit: mayDo(c, BILLING_ROLES.alertsEdit),
      errors,
      input,
    }, { ...ADMIN, status, title: "低余量提醒" });
  };

  app.get("/alerts", requireRole(...BILLING_ROLES.alertsView), (c) => show(c));

  app.post(
    "/alerts",
    requireRole(...BILLING_ROLES.alertsEdit),
    zValidator("form", thresholdForm, formErrorsHook((c, e, i) => show(c, e, i, 422))),
    (c) => {
      const { typed, ...change } = c.req.valid("form");
      return runForm(
        () => changeThreshold(db, actorOf(c), change),
        (e) => show(c, e, typed, 422),
        () => c.redirect("/admin/billing/alerts", 303),
      );
    },
  );

  return app;
}
