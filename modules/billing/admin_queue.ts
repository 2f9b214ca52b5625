/** 水电充值队列: deliveries not finished or finished badly; retry (finance, sysadmin), refund (finance). */
import { type Context, Hono } from "hono";
import type { AppEnv } from "../platform/http.ts";
import { render } from "../platform/views.ts";
import { requireRole } from "../staff/mod.ts";
import { actorOf, ADMIN, type AdminDeps, idOf, mayDo } from "./_admin.ts";
import { refundDelivery, retryDelivery } from "./admin_actions.ts";
import { STATUS_LABELS, UTILITY_LABELS } from "./purchases.ts";
import { deliveryQueue } from "./reports.ts";
import { BILLING_ROLES } from "./roles.ts";

/** The delivery queue page, mounted under /admin/billing. */
export function queueAdmin({ db }: AdminDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  const show = async (c: Context<AppEnv>, notice = "", status = 200) =>
    render(c, "billing/admin_queue", {
      rows: await deliveryQueue(db, { now: new Date() }),
      notice,
      utilityLabels: UTILITY_LABELS,
      statusLabels: STATUS_LABELS,
      canRetry: mayDo(c, BILLING_ROLES.queueRetry),
      canRefund: mayDo(c, BILLING_ROLES.queueRefund),
    }, { ...ADMIN, status, title: "水电充值队列" });

  app.get("/queue", requireRole(...BILLING_ROLES.queueView), (c) => show(c));

  app.post("/queue/:id/retry", requireRole(...BILLING_ROLES.queueRetry), async (c) => {
    if (!await retryDelivery(db, actorOf(c), idOf(c))) {
      return show(c, "该订单已完成，无需重试", 409);
    }
    return c.redirect("/admin/billing/queue", 303);
  });

  app.post("/queue/:id/refund", requireRole(...BILLING_ROLES.queueRefund), async (c) => {
    if (!await refundDelivery(db, actorOf(c), idOf(c))) {
      return show(c, "只有待充值的订单可以退款", 409);
    }
    return c.redirect("/admin/billing/queue", 303);
  });

  return app;
}
