import { Hono } from "hono";
import type { Context } from "hono";
import { zValidator } from "@hono/zod-validator";
import { z } from "zod";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { DomainError, NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { parseYuan } from "../platform/money.ts";
import { formErrorsHook } from "../platform/forms.ts";
import { render } from "../platform/views.ts";
import { randomToken, requireStudent, safeNext } from "../security/mod.ts";
import { findBoundCard } from "../card/mod.ts";
import { BalanceTooLowError, NoCardError, NoRoomError } from "./errors.ts";
import type { UtilityMoney } from "./delivery.ts";
import {
  findPurchaseByOrderNo,
  LIMITS,
  maskName,
  purchaseUtility,
  QUICK_AMOUNTS,
  roomHistory,
  roomMeter,
  STATUS_LABELS,
  UTILITY_LABELS,
} from "./purchases.ts";
import {
  chooseRoom,
  findResidence,
  findRoom,
  listOpenBuildings,
  listRooms,
  roomLabel,
} from "./rooms.ts";
import { currentTariff, UNIT_LABELS } from "./tariffs.ts";
import type { Utility } from "./tables.ts";
import { cardBalance, walletMoney } from "./wallet_link.ts";

const idParam = z.string().regex(/^\d{1,12}$/).transform(Number);

const roomQuery = z.object({
  building: idParam.optional().catch(undefined),
  next: z.string().max(200).optional().catch(undefined),
});

const roomForm = z.object({
  building: z.string().max(20).optional(),
  room: z.string().max(20).optional(),
  next: z.string().max(200).optional(),
});

const payForm = z.object({
  token: z.string().max(100).optional(),
  quick: z.string().max(20).optional(),
  amount: z.string().max(40).optional(),
});

const UTILITY_PATHS: Record<string, Utility> = { electricity: "electricity", water: "water" };

/** Student pages: choosing a room, 电费充值, 冷水充值, and the result of a purchase. */
export function billingRoutes(
  deps: { db: Db; config: Config },
  options: { money?: UtilityMoney } = {},
): Hono<AppEnv> {
  const { db } = deps;
  const money = options.money ?? walletMoney;
  const app = new Hono<AppEnv>();
  app.use("*", requireStudent);

  async function showRoom(
    c: Context<AppEnv>,
    input: { building?: number; next?: string },
    errors: Record<string, string> = {},
    status = 200,
  ) {
    const accountId = c.get("accountId")!;
    const current = await findResidence(db, accountId);
    const buildings = current ? [] : await listOpenBuildings(db);
    const building = input.building ? buildings.find((b) => b.id === input.building) ?? null : null;
    const rooms = building ? await listRooms(db, building.id) : [];
    return render(c, "billing/room", {
      current: current ? roomLabel(current) : null,
      buildings,
      building,
      rooms,
      next: safeNext(input.next, "/billing/electricity"),
      errors,
    }, { status, title: "选择宿舍" });
  }

  app.get("/room", zValidator("query", roomQuery), (c) => {
    const q = c.req.valid("query");
    return showRoom(c, { building: q.building, next: q.next });
  });

  app.post(
    "/room",
    zValidator(
      "form",
      roomForm,
      formErrorsHook((c) => showRoom(c, {}, { room: "请选择房间" }, 422)),
    ),
    async (c) => {
      const form = c.req.valid("form");
      const buildingId = /^\d{1,12}$/.test(form.building ?? "") ? Number(form.building) : undefined;
      const roomId = /^\d{1,12}$/.test(form.room ?? "") ? Number(form.room) : NaN;
      const room = Number.isSafeInteger(roomId) ? await findRoom(db, roomId) : null;
      if (!room || (buildingId !== undefined && room.buildingId !== buildingId)) {
        return showRoom(c, { building: buildingId, next: form.next }, { room: "请选择房间" }, 422);
      }
      try {
        await db.transaction().execute((trx) => chooseRoom(trx, c.get("accountId")!, room.id));
      } catch (err) {
        if (err instanceof DomainError) {
          return showRoom(
            c,
            { building: buildingId, next: form.next },
            { room: err.userMessage },
            422,
          );
        }
        throw err;
      }
      return c.redirect(safeNext(form.next, "/billing/electricity"), 303);
    },
  );

  async function showPay(
    c: Context<AppEnv>,
    utility: Utility,
    errors: Record<string, string> = {},
    input: Record<string, string> = {},
    status = 200,
    flags: { insufficient?: boolean } = {},
  ) {
    const accountId = c.get("accountId")!;
    const card = await findBoundCard(db, accountId);
    const room = await findResidence(db, accountId);
    const tariff = await currentTariff(db, utility);
    const meter = room ? await roomMeter(db, room.id, utility) : null;
    const history = room ? await roomHistory(db, room.id, utility, 10) : [];
    const balance = card ? await cardBalance(db, card.cardAccountId) : null;
    return render(c, "billing/pay", {
      utility,
      label: UTILITY_LABELS[utility],
      card,
      balance,
      room: room ? roomLabel(room) : null,
      meter,
      tariff,
      unitLabel: UNIT_LABELS[tariff.unit],
      quickAmounts: QUICK_AMOUNTS,
      limits: LIMITS,
      history: history.map((p) => ({
        ...p,
        payer: maskName(p.payerName),
        mine: p.accountId === accountId,
      })),
      statusLabels: STATUS_LABELS,
      token: randomToken(24),
      errors,
      input,
      insufficient: flags.insufficient ?? false,
      scripts: ["quick_amount.js", "billing.js"],
    }, { status, title: `${UTILITY_LABELS[utility]}充值` });
  }

  for (const [path, utility] of Object.entries(UTILITY_PATHS)) {
    app.get(`/${path}`, (c) => showPay(c, utility));

    app.post(
      `/${path}`,
      zValidator(
        "form",
        payForm,
        formErrorsHook((c) =>
          showPay(c, utility, { amount: "请输入正确的金额，最多两位小数" }, {}, 422)
        ),
      ),
      async (c) => {
        const form = c.req.valid("form");
        const input = {
          amount: (form.amount ?? "").slice(0, 20),
          quick: (form.quick ?? "").slice(0, 20),
        };
        const text = (form.amount ?? "").trim() || (form.quick ?? "").trim();
        if (!text) return showPay(c, utility, { amount: "请选择或输入充值金额" }, input, 422);
        const amount = parseYuan(text);
        if (amount === null) {
          return showPay(c, utility, { amount: "请输入正确的金额，最多两位小数" }, input, 422);
        }
        const accountId = c.get("accountId")!;
        try {
          const card = await findBoundCard(db, accountId);
          if (!card) throw new NoCardError();
          if (card.status === "cancelled") {
            throw new DomainError(
              "Card account cancelled",
              "该一卡通账户已注销，请到一卡通中心办理",
              "amount",
            );
          }
          const p = await purchaseUtility(db, money, {
            payer: { accountId, cardAccountId: card.cardAccountId, name: card.name },
            utility,
            amount,
            token: form.token ?? "",
          });
          return c.redirect(`/billing/orders/${p.orderNo}`, 303);
        } catch (err) {
          if (err instanceof BalanceTooLowError) {
            return showPay(c, utility, { amount: err.userMessage }, input, 422, {
              insufficient: true,
            });
          }
          if (err instanceof NoRoomError || err instanceof NoCardError) {
            return showPay(c, utility, {}, input, 409);
          }
          if (err instanceof DomainError) {
            return showPay(c, utility, { [err.field ?? "_form"]: err.userMessage }, input, 422);
          }
          throw err;
        }
      },
    );
  }

  app.get("/orders/:orderNo", async (c) => {
    const orderNo = c.req.param("orderNo");
    const p = /^[A-Z]{2}\d{20}$/.test(orderNo) ? await findPurchaseByOrderNo(db, orderNo) : null;
    if (!p || p.accountId !== c.get("accountId")) throw new NotFoundError(`purchase ${orderNo}`);
    const data = {
      p,
      label: UTILITY_LABELS[p.utility],
      statusLabel: STATUS_LABELS[p.status],
      unitLabel: p.utility === "electricity" ? "度" : "吨",
    };
    if (c.req.header("hx-request") === "true" && c.req.header("hx-boosted") !== "true") {
      return render(c, "billing/_order_state", data, { layout: null });
    }
    return render(c, "billing/order", data, { title: `${UTILITY_LABELS[p.utility]}充值` });
  });

  return app;
}
