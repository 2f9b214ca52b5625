/** 房间余额: each room's meter balances, and one room's residents and purchases. */
import { Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import { NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { render } from "../platform/views.ts";
import { requireRole } from "../staff/mod.ts";
import { ADMIN, type AdminDeps, idOf } from "./_admin.ts";
import { roomWithResidents } from "./admin_reads.ts";
import { STATUS_LABELS, UTILITY_LABELS } from "./purchases.ts";
import { buildingBalances } from "./reports.ts";
import { findBuilding, findRoom, listBuildings, roomLabel } from "./rooms.ts";
import { BILLING_ROLES } from "./roles.ts";
import { balancesQuery } from "./schemas.ts";

/** The room balance pages, mounted under /admin/billing. */
export function balancesAdmin({ db }: AdminDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const balances = requireRole(...BILLING_ROLES.balances);

  app.get("/balances", balances, zValidator("query", balancesQuery), async (c) => {
    const buildings = await listBuildings(db);
    const id = c.req.valid("query").building ?? buildings[0]?.id;
    const building = id ? await findBuilding(db, id) : null;
    const list = building ? await buildingBalances(db, building.id) : [];
    const data = { buildings, building, list };
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
