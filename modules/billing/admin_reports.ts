/** 水电收入报表: daily utility revenue between two China days, as a page and as CSV (finance). */
import { Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import type { AppEnv } from "../platform/http.ts";
import { render } from "../platform/views.ts";
import { requireRole } from "../staff/mod.ts";
import { ADMIN, type AdminDeps } from "./_admin.ts";
import { UTILITY_LABELS } from "./purchases.ts";
import { dailyRevenue, revenueCsv, type RevenueRow, revenueTotal } from "./reports.ts";
import { exportTable, type Table } from "../platform/listing.ts";
import { BILLING_ROLES } from "./roles.ts";
import { reportQuery } from "./schemas.ts";

/** 水电收入报表 as a workbook (the CSV's columns, amounts as numbers). */
const REVENUE_TABLE: Table<RevenueRow> = {
  name: "水电收入报表",
  columns: [
    { header: "日期", value: (r) => r.day },
    { header: "类别", value: (r) => UTILITY_LABELS[r.utility] },
    { header: "笔数", value: (r) => r.purchases, kind: "int" },
    { header: "收入(元)", value: (r) => r.paid, kind: "yuan" },
    { header: "退款笔数", value: (r) => r.refunds, kind: "int" },
    { header: "退款(元)", value: (r) => r.refunded, kind: "yuan" },
    { header: "净收入(元)", value: (r) => r.net, kind: "yuan" },
  ],
};

/** The revenue report pages, mounted under /admin/billing. */
export function reportsAdmin({ db }: AdminDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const reports = requireRole(...BILLING_ROLES.reports);
  const range = zValidator("query", reportQuery);

  app.get("/reports", reports, range, async (c) => {
    const { from, to } = c.req.valid("query");
    const rows = await dailyRevenue(db, from, to);
    const data = { rows, from, to, total: revenueTotal(rows), utilityLabels: UTILITY_LABELS };
    return render(c, "billing/admin_reports", data, { ...ADMIN, title: "水电收入报表" });
  });

  app.get("/reports.xlsx", reports, range, async (c) => {
    const { from, to } = c.req.valid("query");
    return exportTable(c, REVENUE_TABLE, await dailyRevenue(db, from, to), "xlsx", `${from}-${to}`);
  });

  app.get("/reports.csv", reports, range, async (c) => {
    const { from, to } = c.req.valid("query");
    return c.body(revenueCsv(await dailyRevenue(db, from, to)), 200, {
      "content-type": "text/csv; charset=utf-8",
      "content-disposition": `attachment; filename="utility-revenue-${from}-${to}.csv"`,
    });
  });

  return app;
}
