/** 费率: the tariffs in force and their history (sysadmin and finance see; sysadmin sets). */
import { type Context, Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { type FieldErrors, render } from "../platform/views.ts";
import { requireRole } from "../staff/mod.ts";
import { actorOf, ADMIN, type AdminDeps, mayDo } from "./_admin.ts";
import { changeTariff } from "./admin_actions.ts";
import { BILLING_ROLES } from "./roles.ts";
import { tariffForm } from "./schemas.ts";
import type { TariffKind } from "./tables.ts";
import { currentTariff, KIND_LABELS, KIND_UNITS, tariffHistory, UNIT_LABELS } from "./tariffs.ts";

const KINDS: TariffKind[] = ["electricity", "water", "shower"];

/** The tariffs page, mounted under /admin/billing. */
export function tariffsAdmin({ db }: AdminDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  const show = async (
    c: Context<AppEnv>,
    errors: FieldErrors = {},
    input: Record<string, string> = {},
    status = 200,
  ) =>
    render(c, "billing/admin_tariffs", {
      current: await Promise.all(KINDS.map((k) => currentTariff(db, k))),
      history: await tariffHistory(db, 30),
      kindLabels: KIND_LABELS,
      unitLabels: UNIT_LABELS,
      kindUnits: KIND_UNITS,
      canEdit: mayDo(c, BILLING_ROLES.tariffsEdit),
      errors,
      input,
    }, { ...ADMIN, status, title: "费率" });

  app.get("/tariffs", requireRole(...BILLING_ROLES.tariffsView), (c) => show(c));

  app.post(
    "/tariffs",
    requireRole(...BILLING_ROLES.tariffsEdit),
    zValidator("form", tariffForm, formErrorsHook((c, e, i) => show(c, e, i, 422))),
    (c) => {
      const { fenPerUnit, preauthFen, ...typed } = c.req.valid("form");
      return runForm(
        () => changeTariff(db, actorOf(c), { ...typed, fenPerUnit, preauthFen }),
        (e) => show(c, e, typed, 422),
        () => c.redirect("/admin/billing/tariffs", 303),
      );
    },
  );

  return app;
}
