import { Hono } from "hono";
import type { Context } from "hono";
import { zValidator } from "@hono/zod-validator";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { DomainError, NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { render } from "../platform/views.ts";
import { randomToken, requireStudent, safeNext } from "../security/mod.ts";
import { findBoundCard } from "../card/mod.ts";
import { BalanceTooLowError, NoCardError, NoRoomError } from "./errors.ts";
import type { UtilityMoney } from "./delivery.ts";
import {
  findPurchaseByOrderNo,
  LIMITS,
  maskName,
  purchaseFromBoundCard,
  QUICK_AMOUNTS,
  roomHistory,
  roomMeter,
  STATUS_LABELS,
  UTILITY_LABELS,
} from "./purchases.ts";
import {
  chooseRoomFromForm,
  findResidence,
  listOpenBuildings,
  listRooms,
  roomLabel,
} from "./rooms.ts";
import { currentTariff, UNIT_LABELS } from "./tariffs.ts";
import type { Utility } from "./tables.ts";
import { payForm, roomChoiceForm, roomQuery, typedAmount } from "./schemas.ts";

type Input = Record<string, string>;
import { cardBalance, walletMoney } from "./wallet_link.ts";

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

  app.get("/room", zValidator("query", roomQuery), (c) => showRoom(c, c.req.valid("query")));

  app.post(
    "/room",
    zValidator(
      "form",
      roomChoiceForm,
      formErrorsHook((c) => showRoom(c, {}, { room: "请选择房间" }, 422)),
    ),
    (c) => {
      const { buildingId, roomId, next } = c.req.valid("form");
      return runForm(
        () => chooseRoomFromForm(db, c.get("accountId")!, { buildingId, roomId }),
        (e) => showRoom(c, { building: buildingId, next }, { room: e.room ?? e._form }, 422),
        () => c.redirect(safeNext(next, "/billing/electricity"), 303),
      );
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

  /** A refused purchase: the same form, with why (or 余额不足 and the way to 充值). */
  function payRefused(c: Context<AppEnv>, utility: Utility, err: unknown, typed: Input) {
    if (err instanceof BalanceTooLowError) {
      const errors = { amount: err.userMessage };
      return showPay(c, utility, errors, typed, 422, { insufficient: true });
    }
    if (err instanceof NoRoomError || err instanceof NoCardError) {
      return showPay(c, utility, {}, typed, 409);
    }
    if (!(err instanceof DomainError)) throw err;
    return showPay(c, utility, { [err.field ?? "_form"]: err.userMessage }, typed, 422);
  }

  for (const [path, utility] of Object.entries(UTILITY_PATHS)) {
    app.get(`/${path}`, (c) => showPay(c, utility));

    const unreadable = formErrorsHook((c, e, i) =>
      showPay(c, utility, { amount: e.amount ?? e.token ?? e.quick }, typedAmount(i), 422)
    );
    app.post(
      `/${path}`,
      zValidator("form", payForm, unreadable),
      async (c) => {
        const { amount, token, typed } = c.req.valid("form");
        const accountId = c.get("accountId")!;
        try {
          const input = { accountId, utility, amount, token };
          const p = await purchaseFromBoundCard(db, money, input);
          return c.redirect(`/billing/orders/${p.orderNo}`, 303);
        } catch (err) {
          return await payRefused(c, utility, err, typed);
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
