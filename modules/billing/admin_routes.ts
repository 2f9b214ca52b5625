import { Hono } from "hono";
import type { Context } from "hono";
import { zValidator } from "@hono/zod-validator";
import { z } from "zod";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { DomainError, NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { parseYuan } from "../platform/money.ts";
import { chinaDay } from "../platform/china_time.ts";
import { formErrorsHook } from "../platform/forms.ts";
import { render } from "../platform/views.ts";
import { clientIp } from "../security/mod.ts";
import { registerAdminNav, requireRole, ROLES, writeAudit } from "../staff/mod.ts";
import { findAccount, findAccountByPhone } from "../account/mod.ts";
import { findBoundCard } from "../card/mod.ts";
import { requestRefund, retryJob, wakeDeliveryWorkers } from "./delivery.ts";
import { listSimulatedFaults, setSimulatedFault } from "./meters.ts";
import { roomHistory, STATUS_LABELS, UTILITY_LABELS } from "./purchases.ts";
import { buildingBalances, dailyRevenue, deliveryQueue, revenueCsv } from "./reports.ts";
import {
  createBuilding,
  createRoom,
  findBuilding,
  findResidence,
  findRoom,
  importRoomsCsv,
  listBuildings,
  listResidents,
  listRooms,
  moveResident,
  removeResident,
  renameBuilding,
  roomLabel,
  updateRoom,
} from "./rooms.ts";
import {
  currentTariff,
  KIND_LABELS,
  KIND_UNITS,
  setTariff,
  tariffHistory,
  UNIT_LABELS,
} from "./tariffs.ts";
import type { TariffKind, TariffUnit } from "./tables.ts";

/**
 * Who may do what (documented in README):
 * - 一卡通中心 (card office): buildings, rooms, CSV import, residents; sees room balances.
 * - 系统管理员 (sysadmin): tariffs, the simulated meter's fault switches; buildings and rooms too.
 * - 财务处 (finance): revenue reports and CSV, the delivery queue with retry and refund.
 * Sysadmin sees the delivery queue and may retry (an operational fix); only finance refunds.
 */
export const BILLING_ROLES = {
  rooms: [ROLES.cardOffice, ROLES.sysadmin],
  residents: [ROLES.cardOffice],
  balances: [ROLES.cardOffice, ROLES.finance, ROLES.sysadmin],
  tariffsView: [ROLES.sysadmin, ROLES.finance],
  tariffsEdit: [ROLES.sysadmin],
  queueView: [ROLES.finance, ROLES.sysadmin],
  queueRetry: [ROLES.finance, ROLES.sysadmin],
  queueRefund: [ROLES.finance],
  reports: [ROLES.finance],
  simulator: [ROLES.sysadmin],
};

const ADMIN = { layout: "admin/layout" } as const;
type Errors = Record<string, string>;

const idOf = (c: Context<AppEnv>, name = "id"): number => {
  const raw = c.req.param(name) ?? "";
  const n = /^\d{1,12}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n <= 0) throw new NotFoundError(`${name} ${raw}`);
  return n;
};

const text = (max: number) => z.string().max(max, `不能超过${max}个字符`).optional().default("");
const dayRe = /^\d{4}-\d{2}-\d{2}$/;

/** Staff pages of billing, mounted at /admin/billing. */
export function billingAdminRoutes(deps: { db: Db; config: Config }): Hono<AppEnv> {
  const { db } = deps;
  const app = new Hono<AppEnv>();
  registerAdminNav({
    href: "/admin/billing/buildings",
    label: "宿舍房间",
    roles: BILLING_ROLES.rooms,
  });
  registerAdminNav({
    href: "/admin/billing/residents",
    label: "宿舍住户",
    roles: BILLING_ROLES.residents,
  });
  registerAdminNav({
    href: "/admin/billing/balances",
    label: "房间余额",
    roles: BILLING_ROLES.balances,
  });
  registerAdminNav({
    href: "/admin/billing/tariffs",
    label: "费率",
    roles: BILLING_ROLES.tariffsView,
  });
  registerAdminNav({
    href: "/admin/billing/queue",
    label: "水电充值队列",
    roles: BILLING_ROLES.queueView,
  });
  registerAdminNav({
    href: "/admin/billing/reports",
    label: "水电收入报表",
    roles: BILLING_ROLES.reports,
  });
  if (deps.config.meterAdapter === "simulated") {
    registerAdminNav({
      href: "/admin/billing/simulator",
      label: "模拟计量系统",
      roles: BILLING_ROLES.simulator,
    });
  }

  const staffId = (c: Context<AppEnv>) => c.get("staff")!.id;

  /** Runs a change and its audit record in one transaction; DomainErrors go to `onError`. */
  async function change(
    c: Context<AppEnv>,
    work: (
      trx: Db,
    ) => Promise<
      {
        action: string;
        targetType: string;
        targetId: number | string;
        before?: unknown;
        after?: unknown;
      }
    >,
    onError: (errors: Errors) => Response | Promise<Response>,
    redirect: string | (() => string),
  ): Promise<Response> {
    try {
      await db.transaction().execute(async (trx) => {
        const a = await work(trx);
        await writeAudit(trx, { staffId: staffId(c), ip: clientIp(c), ...a });
      });
    } catch (err) {
      if (err instanceof DomainError && !(err instanceof NotFoundError)) {
        return onError({ [err.field ?? "_form"]: err.userMessage });
      }
      throw err;
    }
    return c.redirect(typeof redirect === "string" ? redirect : redirect(), 303);
  }

  // ---- buildings and rooms ----
  const rooms = requireRole(...BILLING_ROLES.rooms);

  const showBuildings = async (
    c: Context<AppEnv>,
    errors: Errors = {},
    input: Record<string, string> = {},
    status = 200,
    imported?: unknown,
  ) =>
    render(
      c,
      "billing/admin_buildings",
      { list: await listBuildings(db), errors, input, imported },
      {
        ...ADMIN,
        status,
        title: "宿舍房间",
      },
    );

  app.get("/buildings", rooms, (c) => showBuildings(c));

  app.post(
    "/buildings",
    rooms,
    zValidator(
      "form",
      z.object({ code: text(40), name: text(60) }),
      formErrorsHook((c, e, i) => showBuildings(c, e, i, 422)),
    ),
    (c) => {
      const f = c.req.valid("form");
      return change(
        c,
        async (trx) => {
          const b = await createBuilding(trx, f);
          return {
            action: "billing.building_created",
            targetType: "billing_building",
            targetId: b.id,
            after: b,
          };
        },
        (e) => showBuildings(c, e, f, 422),
        "/admin/billing/buildings",
      );
    },
  );

  app.post("/buildings/import", rooms, async (c) => {
    const body = await c.req.parseBody();
    let csv = typeof body.csv === "string" ? body.csv : "";
    const file = body.file;
    if (file instanceof File && file.size > 0) {
      if (file.size > 1_000_000) return showBuildings(c, { csv: "文件不能超过1MB" }, {}, 422);
      csv = await file.text();
    }
    if (!csv.trim()) return showBuildings(c, { csv: "请粘贴CSV内容或选择文件" }, {}, 422);
    if (csv.length > 1_000_000) return showBuildings(c, { csv: "内容不能超过1MB" }, {}, 422);
    let result: Awaited<ReturnType<typeof importRoomsCsv>> | undefined;
    const res = await change(
      c,
      async (trx) => {
        result = await importRoomsCsv(trx, csv);
        return {
          action: "billing.rooms_imported",
          targetType: "billing_room",
          targetId: "csv",
          after: { ...result, errors: result.errors.slice(0, 50) },
        };
      },
      (e) => showBuildings(c, { csv: e._form ?? e.csv ?? "导入失败" }, {}, 422),
      "/admin/billing/buildings",
    );
    if (res.status !== 303 || !result) return res;
    return showBuildings(c, {}, {}, 200, result);
  });

  const showBuilding = async (
    c: Context<AppEnv>,
    id: number,
    errors: Errors = {},
    input: Record<string, string> = {},
    status = 200,
  ) => {
    const building = await findBuilding(db, id);
    if (!building) throw new NotFoundError(`building ${id}`);
    const list = await listRooms(db, id, { all: true });
    const withResidents = await Promise.all(
      list.map(async (r) => ({ ...r, residents: (await listResidents(db, r.id)).length })),
    );
    return render(c, "billing/admin_building", { building, rooms: withResidents, errors, input }, {
      ...ADMIN,
      status,
      title: building.name,
    });
  };

  app.get("/buildings/:id", rooms, (c) => showBuilding(c, idOf(c)));

  app.post(
    "/buildings/:id",
    rooms,
    zValidator(
      "form",
      z.object({ name: text(60) }),
      formErrorsHook((c, e, i) => showBuilding(c, idOf(c), e, i, 422)),
    ),
    (c) => {
      const id = idOf(c);
      const f = c.req.valid("form");
      return change(
        c,
        async (trx) => {
          const before = await findBuilding(trx, id);
          if (!before) throw new NotFoundError(`building ${id}`);
          const after = await renameBuilding(trx, id, f.name);
          return {
            action: "billing.building_renamed",
            targetType: "billing_building",
            targetId: id,
            before,
            after,
          };
        },
        (e) => showBuilding(c, id, e, f, 422),
        `/admin/billing/buildings/${id}`,
      );
    },
  );

  app.post(
    "/buildings/:id/rooms",
    rooms,
    zValidator(
      "form",
      z.object({ number: text(40), capacity: text(10) }),
      formErrorsHook((c, e, i) => showBuilding(c, idOf(c), e, i, 422)),
    ),
    (c) => {
      const id = idOf(c);
      const f = c.req.valid("form");
      return change(
        c,
        async (trx) => {
          const capacity = /^\d{1,3}$/.test(f.capacity.trim())
            ? Number(f.capacity)
            : f.capacity.trim() === ""
            ? 4
            : NaN;
          const room = await createRoom(trx, { buildingId: id, number: f.number, capacity });
          return {
            action: "billing.room_created",
            targetType: "billing_room",
            targetId: room.id,
            after: room,
          };
        },
        (e) => showBuilding(c, id, e, f, 422),
        `/admin/billing/buildings/${id}`,
      );
    },
  );

  app.post(
    "/rooms/:id",
    rooms,
    zValidator(
      "form",
      z.object({ capacity: text(10), active: text(5) }),
      formErrorsHook(async (c, e) => {
        const room = await findRoom(db, idOf(c));
        if (!room) throw new NotFoundError(`room ${idOf(c)}`);
        return showBuilding(c, room.buildingId, e, {}, 422);
      }),
    ),
    async (c) => {
      const id = idOf(c);
      const f = c.req.valid("form");
      const room = await findRoom(db, id);
      if (!room) throw new NotFoundError(`room ${id}`);
      return change(
        c,
        async (trx) => {
          const capacity = /^\d{1,3}$/.test(f.capacity.trim()) ? Number(f.capacity) : NaN;
          const after = await updateRoom(trx, id, { capacity, active: f.active === "1" });
          return {
            action: "billing.room_updated",
            targetType: "billing_room",
            targetId: id,
            before: room,
            after,
          };
        },
        (e) => showBuilding(c, room.buildingId, e, {}, 422),
        `/admin/billing/buildings/${room.buildingId}`,
      );
    },
  );

  // ---- residents ----
  const residents = requireRole(...BILLING_ROLES.residents);

  const showResidents = async (
    c: Context<AppEnv>,
    phone: string,
    errors: Errors = {},
    input: Record<string, string> = {},
    status = 200,
  ) => {
    let found = null;
    if (phone) {
      if (!/^1\d{10}$/.test(phone)) errors = { phone: "请输入11位手机号", ...errors };
      else {
        const account = await findAccountByPhone(db, phone);
        if (!account) errors = { phone: "没有这个手机号的一信通账号", ...errors };
        else {
          const card = await findBoundCard(db, account.id);
          const room = await findResidence(db, account.id);
          found = { account, card, room: room ? roomLabel(room) : null };
        }
      }
    }
    return render(c, "billing/admin_residents", { phone, found, errors, input }, {
      ...ADMIN,
      status,
      title: "宿舍住户",
    });
  };

  app.get(
    "/residents",
    residents,
    zValidator("query", z.object({ phone: text(20).catch("") })),
    (c) => {
      return showResidents(c, c.req.valid("query").phone.trim());
    },
  );

  app.post(
    "/residents/move",
    residents,
    zValidator(
      "form",
      z.object({ phone: text(20), building: text(40), room: text(40) }),
      formErrorsHook((c, e, i) => showResidents(c, "", e, i, 422)),
    ),
    async (c) => {
      const f = c.req.valid("form");
      const phone = f.phone.trim();
      const account = /^1\d{10}$/.test(phone) ? await findAccountByPhone(db, phone) : null;
      if (!account) return showResidents(c, phone, { phone: "没有这个手机号的一信通账号" }, f, 422);
      const building = (await listBuildings(db)).find((b) =>
        b.code === f.building.trim().toUpperCase()
      );
      const room = building
        ? (await listRooms(db, building.id)).find((r) => r.number === f.room.trim().toUpperCase())
        : undefined;
      if (!room) {
        return showResidents(c, phone, { room: "找不到该楼栋编码和房间号的有效房间" }, f, 422);
      }
      return change(
        c,
        async (trx) => {
          const r = await moveResident(trx, {
            accountId: account.id,
            roomId: room.id,
            staffId: staffId(c),
          });
          return {
            action: "billing.resident_moved",
            targetType: "account",
            targetId: account.id,
            before: r.before ? { roomId: r.before.id, room: roomLabel(r.before) } : null,
            after: { roomId: r.after.id, room: roomLabel(r.after) },
          };
        },
        (e) => showResidents(c, phone, e, f, 422),
        `/admin/billing/residents?phone=${phone}`,
      );
    },
  );

  app.post(
    "/residents/remove",
    residents,
    zValidator(
      "form",
      z.object({ phone: text(20) }),
      formErrorsHook((c, e, i) => showResidents(c, "", e, i, 422)),
    ),
    async (c) => {
      const phone = c.req.valid("form").phone.trim();
      const account = /^1\d{10}$/.test(phone) ? await findAccountByPhone(db, phone) : null;
      if (!account) {
        return showResidents(
          c,
          phone,
          { phone: "没有这个手机号的一信通账号" },
          {},
          422,
        );
      }
      return change(
        c,
        async (trx) => {
          const before = await removeResident(trx, account.id);
          return {
            action: "billing.resident_removed",
            targetType: "account",
            targetId: account.id,
            before: { roomId: before.id, room: roomLabel(before) },
          };
        },
        (e) => showResidents(c, phone, e, {}, 422),
        `/admin/billing/residents?phone=${phone}`,
      );
    },
  );

  // ---- tariffs ----
  const showTariffs = async (
    c: Context<AppEnv>,
    errors: Errors = {},
    input: Record<string, string> = {},
    status = 200,
  ) => {
    const current = await Promise.all(
      (["electricity", "water", "shower"] as TariffKind[]).map((k) => currentTariff(db, k)),
    );
    const canEdit = BILLING_ROLES.tariffsEdit.some((r) => c.get("staff")!.roles.includes(r));
    return render(c, "billing/admin_tariffs", {
      current,
      history: await tariffHistory(db, 30),
      kindLabels: KIND_LABELS,
      unitLabels: UNIT_LABELS,
      kindUnits: KIND_UNITS,
      canEdit,
      errors,
      input,
    }, { ...ADMIN, status, title: "费率" });
  };

  app.get("/tariffs", requireRole(...BILLING_ROLES.tariffsView), (c) => showTariffs(c));

  app.post(
    "/tariffs",
    requireRole(...BILLING_ROLES.tariffsEdit),
    zValidator(
      "form",
      z.object({ kind: text(20), unit: text(20), price: text(20), preauth: text(20) }),
      formErrorsHook((c, e, i) => showTariffs(c, e, i, 422)),
    ),
    (c) => {
      const f = c.req.valid("form");
      const price = parseYuan(f.price);
      if (price === null) {
        return showTariffs(c, { price: "请输入正确的单价（元，最多两位小数）" }, f, 422);
      }
      const preauth = f.kind === "shower" ? parseYuan(f.preauth) : null;
      if (f.kind === "shower" && preauth === null) {
        return showTariffs(c, { preauth: "请输入正确的预授权金额（元）" }, f, 422);
      }
      return change(
        c,
        async (trx) => {
          const before = f.kind in KIND_LABELS
            ? await currentTariff(trx, f.kind as TariffKind)
            : null;
          const after = await setTariff(trx, {
            kind: f.kind as TariffKind,
            unit: f.unit as TariffUnit,
            fenPerUnit: price,
            preauthAmount: preauth,
            staffId: staffId(c),
          });
          return {
            action: "billing.tariff_set",
            targetType: "billing_tariff",
            targetId: after.id,
            before,
            after,
          };
        },
        (e) => showTariffs(c, e, f, 422),
        "/admin/billing/tariffs",
      );
    },
  );

  // ---- room balances ----
  app.get(
    "/balances",
    requireRole(...BILLING_ROLES.balances),
    zValidator(
      "query",
      z.object({
        building: z.string().regex(/^\d{1,12}$/).transform(Number).optional().catch(undefined),
      }),
    ),
    async (c) => {
      const buildings = await listBuildings(db);
      const id = c.req.valid("query").building ?? buildings[0]?.id;
      const building = id ? await findBuilding(db, id) : null;
      const list = building ? await buildingBalances(db, building.id) : [];
      return render(c, "billing/admin_balances", { buildings, building, list }, {
        ...ADMIN,
        title: "房间余额",
      });
    },
  );

  app.get("/rooms/:id", requireRole(...BILLING_ROLES.balances), async (c) => {
    const room = await findRoom(db, idOf(c));
    if (!room) throw new NotFoundError(`room ${c.req.param("id")}`);
    const residents = await Promise.all((await listResidents(db, room.id)).map(async (r) => {
      const account = await findAccount(db, r.accountId);
      const card = await findBoundCard(db, r.accountId);
      return {
        ...r,
        phone: account?.phone ?? "",
        name: card?.name ?? null,
        studentNumber: card?.studentNumber ?? null,
      };
    }));
    const history = [
      ...(await roomHistory(db, room.id, "electricity", 50)),
      ...(await roomHistory(db, room.id, "water", 50)),
    ].sort((a, b) => b.id - a.id);
    return render(c, "billing/admin_room", {
      room,
      label: roomLabel(room),
      residents,
      history,
      utilityLabels: UTILITY_LABELS,
      statusLabels: STATUS_LABELS,
    }, { ...ADMIN, title: roomLabel(room) });
  });

  // ---- delivery queue ----
  const showQueue = async (c: Context<AppEnv>, notice = "", status = 200) => {
    const rows = await deliveryQueue(db, { now: new Date() });
    const roles = c.get("staff")!.roles;
    return render(c, "billing/admin_queue", {
      rows,
      notice,
      utilityLabels: UTILITY_LABELS,
      statusLabels: STATUS_LABELS,
      canRetry: BILLING_ROLES.queueRetry.some((r) => roles.includes(r)),
      canRefund: BILLING_ROLES.queueRefund.some((r) => roles.includes(r)),
    }, { ...ADMIN, status, title: "水电充值队列" });
  };

  app.get("/queue", requireRole(...BILLING_ROLES.queueView), (c) => showQueue(c));

  app.post("/queue/:id/retry", requireRole(...BILLING_ROLES.queueRetry), async (c) => {
    const id = idOf(c);
    let ok = false;
    await db.transaction().execute(async (trx) => {
      ok = await retryJob(trx, id);
      if (ok) {
        await writeAudit(trx, {
          staffId: staffId(c),
          ip: clientIp(c),
          action: "billing.delivery_retried",
          targetType: "billing_purchase",
          targetId: id,
        });
      }
    });
    if (!ok) return showQueue(c, "该订单已完成，无需重试", 409);
    wakeDeliveryWorkers();
    return c.redirect("/admin/billing/queue", 303);
  });

  app.post("/queue/:id/refund", requireRole(...BILLING_ROLES.queueRefund), async (c) => {
    const id = idOf(c);
    let ok = false;
    await db.transaction().execute(async (trx) => {
      ok = await requestRefund(trx, id);
      if (ok) {
        await writeAudit(trx, {
          staffId: staffId(c),
          ip: clientIp(c),
          action: "billing.refund_requested",
          targetType: "billing_purchase",
          targetId: id,
        });
      }
    });
    if (!ok) return showQueue(c, "只有待充值的订单可以退款", 409);
    wakeDeliveryWorkers();
    return c.redirect("/admin/billing/queue", 303);
  });

  // ---- reports ----
  const reportQuery = zValidator(
    "query",
    z.object({ from: text(10).catch(""), to: text(10).catch("") }),
  );
  const range = (q: { from: string; to: string }) => {
    const today = chinaDay();
    const to = dayRe.test(q.to) ? q.to : today;
    const from = dayRe.test(q.from) ? q.from : chinaDay(Date.now() - 29 * 86_400_000);
    return { from, to };
  };

  app.get("/reports", requireRole(...BILLING_ROLES.reports), reportQuery, async (c) => {
    const { from, to } = range(c.req.valid("query"));
    const rows = await dailyRevenue(db, from, to);
    const total = rows.reduce(
      (a, r) => ({ paid: a.paid + r.paid, refunded: a.refunded + r.refunded, net: a.net + r.net }),
      { paid: 0, refunded: 0, net: 0 },
    );
    return render(c, "billing/admin_reports", {
      rows,
      from,
      to,
      total,
      utilityLabels: UTILITY_LABELS,
    }, { ...ADMIN, title: "水电收入报表" });
  });

  app.get("/reports.csv", requireRole(...BILLING_ROLES.reports), reportQuery, async (c) => {
    const { from, to } = range(c.req.valid("query"));
    const csv = revenueCsv(await dailyRevenue(db, from, to));
    return c.body(csv, 200, {
      "content-type": "text/csv; charset=utf-8",
      "content-disposition": `attachment; filename="utility-revenue-${from}-${to}.csv"`,
    });
  });

  // ---- simulated meter system ----
  const showSimulator = async (c: Context<AppEnv>, errors: Errors = {}, status = 200) => {
    const faults = await listSimulatedFaults(db);
    const faultRooms = (await Promise.all(faults.roomIds.map((id) => findRoom(db, id)))).filter((
      r,
    ) => r !== null);
    return render(c, "billing/admin_simulator", {
      enabled: deps.config.meterAdapter === "simulated",
      all: faults.all,
      rooms: faultRooms.map((r) => ({
        id: r.id,
        label: roomLabel(r),
        code: r.buildingCode,
        number: r.number,
      })),
      errors,
    }, { ...ADMIN, status, title: "模拟计量系统" });
  };

  app.get("/simulator", requireRole(...BILLING_ROLES.simulator), (c) => showSimulator(c));

  app.post(
    "/simulator",
    requireRole(...BILLING_ROLES.simulator),
    zValidator(
      "form",
      z.object({ scope: text(10), on: text(5), building: text(40), room: text(40) }),
      formErrorsHook((c, e) => showSimulator(c, { _form: Object.values(e)[0] }, 422)),
    ),
    async (c) => {
      const f = c.req.valid("form");
      let roomId: number | null = null;
      if (f.scope === "room") {
        const building = (await listBuildings(db)).find((b) =>
          b.code === f.building.trim().toUpperCase()
        );
        const room = building
          ? (await listRooms(db, building.id, { all: true })).find((r) =>
            r.number === f.room.trim().toUpperCase()
          )
          : undefined;
        if (!room) return showSimulator(c, { room: "找不到该楼栋编码和房间号的房间" }, 422);
        roomId = room.id;
      } else if (f.scope !== "all") {
        return showSimulator(c, { _form: "请选择范围" }, 422);
      }
      const on = f.on === "1";
      return change(
        c,
        async (trx) => {
          await setSimulatedFault(trx, roomId, on);
          return {
            action: on ? "billing.sim_fault_on" : "billing.sim_fault_off",
            targetType: "billing_sim",
            targetId: roomId ?? "all",
          };
        },
        (e) => showSimulator(c, e, 422),
        "/admin/billing/simulator",
      );
    },
  );

  return app;
}
