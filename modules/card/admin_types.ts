/**
 * 卡类别 and 餐次 pages: the card types with their limits, 补助 and price rules (mounted at
 * /admin/card-types) and a canteen's meal periods with caps and discounts by type (mounted at
 * /admin/meal-periods, linked from the merchant's page). The system administrator edits (each
 * change audited), finance may look.
 */
import { type Context, Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import type { Db } from "../platform/database.ts";
import { NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { render } from "../platform/views.ts";
import { clientIp } from "../security/mod.ts";
import { registerAdminNav, requireRole, type Role, ROLES } from "../staff/mod.ts";
import { CATEGORY_LABELS, getMerchant, listMerchants, type Merchant } from "../merchant/mod.ts";
import { CardError } from "./errors.ts";
import { cardTypeSchema, idField, mealPeriodSchema } from "./schemas.ts";
import {
  cardCountsByType,
  deleteCardType,
  findCardType,
  listCardTypes,
  PRICED_CATEGORIES,
  saveCardType,
} from "./types.ts";
import {
  deleteMealPeriod,
  listMealPeriods,
  MEAL_NAMES,
  mealPeriodCounts,
  saveMealPeriod,
} from "./meal_periods.ts";

type C = Context<AppEnv>;
type Errors = Record<string, string>;

/** Who edits types and periods, and who may look. */
export const TYPE_EDIT_ROLES: Role[] = [ROLES.sysadmin];
export const TYPE_VIEW_ROLES: Role[] = [ROLES.sysadmin, ROLES.finance];

const ADMIN = { layout: "admin/layout" } as const;
const KIND_LABELS = { student: "学生", staff: "教职工" } as const;
const DONE: Record<string, string> = {
  saved: "已保存，自下一笔消费起生效；已发生的交易按当时的价格记录，不受影响",
  deleted: "已删除",
};

const actor = (c: C) => ({ staffId: c.get("staff")!.id, ip: clientIp(c) });
const canEdit = (c: C) => TYPE_EDIT_ROLES.some((r) => c.get("staff")!.roles.includes(r));
const idOf = (c: C) => {
  const id = Number(c.req.param("id"));
  if (!Number.isSafeInteger(id) || id <= 0) throw new NotFoundError("record");
  return id;
};
const categories = PRICED_CATEGORIES.map((k) => ({ key: k, label: CATEGORY_LABELS[k] }));

/** 卡类别 under /admin/card-types. */
export function cardTypeRoutes(deps: { db: Db }): Hono<AppEnv> {
  const { db } = deps;
  const app = new Hono<AppEnv>();
  registerAdminNav({
    href: "/admin/card-types",
    label: "卡类别",
    roles: TYPE_VIEW_ROLES,
    group: "系统",
    order: 30,
  });

  app.get("/", requireRole(...TYPE_VIEW_ROLES), async (c) =>
    render(c, "card/admin_types", {
      types: await listCardTypes(db),
      counts: await cardCountsByType(db),
      kinds: KIND_LABELS,
      categories,
      canEdit: canEdit(c),
      notice: DONE[c.req.query("done") ?? ""] ?? null,
    }, { ...ADMIN, title: "卡类别" }));

  const showType = async (
    c: C,
    id: number | null,
    errors: Errors,
    typed?: Record<string, string>,
    status = 200,
  ) => {
    const type = id === null ? null : await findCardType(db, id);
    if (id !== null && !type) throw new NotFoundError("card type");
    return render(c, "card/admin_type", {
      type,
      cards: id === null ? 0 : (await cardCountsByType(db)).get(id) ?? 0,
      typed: typed ?? null,
      errors,
      kinds: KIND_LABELS,
      categories,
      canEdit: canEdit(c),
      notice: DONE[c.req.query("done") ?? ""] ?? null,
    }, { ...ADMIN, status, title: type ? `卡类别 · ${type.name}` : "新建卡类别" });
  };
  const save = (id: (c: C) => number | null) =>
    zValidator(
      "form",
      cardTypeSchema,
      formErrorsHook((c, errors, typed) => showType(c, id(c), errors, typed, 422)),
    );

  app.get("/new", requireRole(...TYPE_EDIT_ROLES), (c) => showType(c, null, {}));
  app.post("/new", requireRole(...TYPE_EDIT_ROLES), save(() => null), (c) => {
    const { input, typed } = c.req.valid("form");
    return runForm(
      () => saveCardType(db, actor(c), null, input),
      (errors, err) => showType(c, null, errors, typed, err.status),
      (id) => c.redirect(`/admin/card-types/${id}?done=saved`, 303),
    );
  });

  app.get("/:id{[0-9]+}", requireRole(...TYPE_VIEW_ROLES), (c) => showType(c, idOf(c), {}));
  app.post("/:id{[0-9]+}", requireRole(...TYPE_EDIT_ROLES), save(idOf), (c) => {
    const { input, typed } = c.req.valid("form");
    return runForm(
      () => saveCardType(db, actor(c), idOf(c), input),
      (errors, err) => showType(c, idOf(c), errors, typed, err.status),
      (id) => c.redirect(`/admin/card-types/${id}?done=saved`, 303),
    );
  });

  app.post(
    "/:id{[0-9]+}/delete",
    requireRole(...TYPE_EDIT_ROLES),
    zValidator("form", idField("confirm")),
    (c) =>
      runForm(
        async () => {
          if (c.req.valid("form") !== 1) {
            throw new CardError("Delete not confirmed", "请确认删除该卡类别", "_form");
          }
          await deleteCardType(db, actor(c), idOf(c));
        },
        (errors, err) => showType(c, idOf(c), errors, undefined, err.status),
        () => c.redirect("/admin/card-types?done=deleted", 303),
      ),
  );

  return app;
}

/** 餐次 under /admin/meal-periods: the canteens, then one canteen's periods. */
export function mealPeriodRoutes(deps: { db: Db }): Hono<AppEnv> {
  const { db } = deps;
  const app = new Hono<AppEnv>();
  registerAdminNav({
    href: "/admin/meal-periods",
    label: "餐次",
    roles: TYPE_VIEW_ROLES,
    group: "系统",
    order: 31,
  });

  app.get("/", requireRole(...TYPE_VIEW_ROLES), async (c) =>
    render(c, "card/admin_meals", {
      canteens: (await listMerchants(db)).filter((m) => m.category === "canteen"),
      counts: await mealPeriodCounts(db),
    }, { ...ADMIN, title: "餐次" }));

  const canteen = async (c: C): Promise<Merchant> => {
    const m = await getMerchant(db, idOf(c));
    if (!m || m.category !== "canteen") throw new NotFoundError("canteen merchant");
    return m;
  };
  const showMeals = async (
    c: C,
    errors: Errors,
    typed: Record<string, string> | null = null,
    status = 200,
  ) => {
    const merchant = await canteen(c);
    return render(c, "card/admin_meal", {
      merchant,
      periods: await listMealPeriods(db, merchant.id),
      types: await listCardTypes(db),
      names: MEAL_NAMES,
      typed,
      errors,
      canEdit: canEdit(c),
      notice: DONE[c.req.query("done") ?? ""] ?? null,
    }, { ...ADMIN, status, title: `餐次 · ${merchant.name}` });
  };
  const back = (c: C) => c.redirect(`/admin/meal-periods/${idOf(c)}?done=saved`, 303);

  app.get("/:id{[0-9]+}", requireRole(...TYPE_VIEW_ROLES), (c) => showMeals(c, {}));
  app.post(
    "/:id{[0-9]+}",
    requireRole(...TYPE_EDIT_ROLES),
    zValidator(
      "form",
      mealPeriodSchema,
      formErrorsHook((c, errors, typed) => showMeals(c, errors, typed, 422)),
    ),
    async (c) => {
      const { periodId, input, typed } = c.req.valid("form");
      const merchant = await canteen(c);
      return runForm(
        () => saveMealPeriod(db, actor(c), merchant.id, periodId, input),
        (errors, err) => showMeals(c, errors, typed, err.status),
        () => back(c),
      );
    },
  );
  app.post(
    "/:id{[0-9]+}/delete",
    requireRole(...TYPE_EDIT_ROLES),
    zValidator("form", idField("period_id")),
    async (c) => {
      const merchant = await canteen(c);
      const periodId = c.req.valid("form");
      return runForm(
        () => deleteMealPeriod(db, actor(c), merchant.id, periodId ?? 0),
        (errors, err) => showMeals(c, errors, null, err.status),
        () => c.redirect(`/admin/meal-periods/${merchant.id}?done=deleted`, 303),
      );
    },
  );

  return app;
}
