/** The staff pages of billing: one sub-app per topic, composed under /admin/billing. */
import { Hono } from "hono";
import type { AppEnv } from "../platform/http.ts";
import { registerAdminNav, type Role } from "../staff/mod.ts";
import type { AdminDeps } from "./_admin.ts";
import { alertsAdmin } from "./admin_alerts.ts";
import { balancesAdmin } from "./admin_balances.ts";
import { queueAdmin } from "./admin_queue.ts";
import { reportsAdmin } from "./admin_reports.ts";
import { residentsAdmin } from "./admin_residents.ts";
import { roomsAdmin } from "./admin_rooms.ts";
import { simulatorAdmin } from "./admin_simulator.ts";
import { tariffsAdmin } from "./admin_tariffs.ts";
import { BILLING_ROLES } from "./roles.ts";

export { BILLING_ROLES };

/** Staff pages of billing, mounted at /admin/billing. */
export function billingAdminRoutes(deps: AdminDeps): Hono<AppEnv> {
  const nav = (href: string, label: string, roles: Role[]) =>
    registerAdminNav({ href: `/admin/billing/${href}`, label, roles });
  nav("buildings", "宿舍房间", BILLING_ROLES.rooms);
  nav("residents", "宿舍住户", BILLING_ROLES.residents);
  nav("balances", "房间余额", BILLING_ROLES.balances);
  nav("tariffs", "费率", BILLING_ROLES.tariffsView);
  nav("queue", "水电充值队列", BILLING_ROLES.queueView);
  nav("reports", "水电收入报表", BILLING_ROLES.reports);
  nav("alerts", "低余量提醒", BILLING_ROLES.alertsView);
  if (deps.config.meterAdapter === "simulated") {
    nav("simulator", "模拟计量系统", BILLING_ROLES.simulator);
  }
  return new Hono<AppEnv>()
    .route("/", roomsAdmin(deps))
    .route("/", residentsAdmin(deps))
    .route("/", balancesAdmin(deps))
    .route("/", tariffsAdmin(deps))
    .route("/", queueAdmin(deps))
    .route("/", reportsAdmin(deps))
    .route("/", simulatorAdmin(deps))
    .route("/", alertsAdmin(deps));
}
