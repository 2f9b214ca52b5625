/** 房间余额: each room's meter balances, and one room's residents and purchases. */
import { Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import { NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { render } from "../platform/views.ts";
import { exportLinks, exportTable, type Table } from "../platform/listing.ts";
import { requireRole } from "../staff/mod.ts";
import { ADMIN, type AdminDeps, idOf } from "./_admin.ts";
import { roomWithResidents } from "./admin_reads.ts";
import { STATUS_LABELS, UTILITY_LABELS } from "./purchases.ts";
import { buildingBalances } from "./reports.ts";
import { findBuilding, findRoom, listBuildings, roomLabel } from "./rooms.ts";
import { BILLING_ROLES } from "./roles.ts";
import { balancesQuery } from "./schemas.ts";

/** A building's rooms and their last reported balances, as a file. */
const BALANCES_TABLE: Table<Awaited<ReturnType<typeof buildingBalances>>[number]> = {
  name: "房间余额",
  columns: [
    { header: "房间", value: (r) => r.number },
    { header: "启用", value: (r) => r.active ? "是" : "否" },
    { header: "住户", value: (r) => r.residents, kind: "int" },
    { header: "床位", value: (r) => r.capacity, kind: "int" },
    { header: "剩余电费(元)", value: (r) => r.electricity?.balance, kind: "yuan" },
    { header: "电费报告时间", value: (r) => r.electricity?.reported_at, kind: "time" },
    { header: "剩余水费(元)", value: (r) => r.water?.balance, kind: "yuan" },
    { header: "水费报告时间", value: (r) => r.water?.reported_at, kind: "time" },
  ],
};

/** The room balance pages, mounted under /admin/billing. */
export function balancesAdmin({ db }: AdminDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const balances = requireRole(...BILLING_ROLES.balances);

  app.get("/balances", balances, zValidator("query", balancesQuery), async (c) => {
    const q = c.req.valid("query");
    const buildings = await listBuildings(db);
    const id = q.building ?? buildings[0]?.id;
    const building = id ? await findBuilding(db, id) : null;
    const list = building ? await buildingBalances(db, building.id) : [];
    if (q.export && building) {
      return exportTable(c, BALANCES_TABLE, list, q.export, building.code);
    }
    const exports = building
      ? exportLinks("/admin/billing/balances", { building: building.id })
      : null;
    const data = { buildings, building, list, exports };
    return render(c, "billing/admin_balances", data, { ...ADMIN, title: "房间余额" });
  });

  app.get("/rooms/:id", balances, async (c) => {
    const room = await findRoom(db, idOf(c));
    if (!room) throw new NotFoundError(`room ${c.req.param("id")}`);
    const label = roomLabel(room);
    const labels = { utilityLabels: UTILITY_LABELS, statusLabels: STATUS_LABELS };
    const data = { room, label, ...await roomWithResidents(db, room), ...labels };
    return render(c, "billing/admin_room", data, { ...ADMIN, title: label });
  });

  return app;
}
