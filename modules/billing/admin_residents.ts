/** 宿舍住户: look a resident up by 手机号, place or move them, move them out (card office). */
import { type Context, Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { type FieldErrors, render } from "../platform/views.ts";
import { requireRole } from "../staff/mod.ts";
import { actorOf, ADMIN, type AdminDeps } from "./_admin.ts";
import { placeResident, unplaceResident } from "./admin_actions.ts";
import { residentByPhone } from "./admin_reads.ts";
import { BILLING_ROLES } from "./roles.ts";
import { residentMoveForm, residentQuery, residentRemoveForm } from "./schemas.ts";

/** The residents page, mounted under /admin/billing. */
export function residentsAdmin({ db }: AdminDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const residents = requireRole(...BILLING_ROLES.residents);

  const show = async (
    c: Context<AppEnv>,
    phone: string,
    errors: FieldErrors = {},
    input: Record<string, string> = {},
    status = 200,
  ) => {
    const lookup = await residentByPhone(db, phone);
    const data = { phone, found: lookup.found, errors: { ...lookup.errors, ...errors }, input };
    return render(c, "billing/admin_residents", data, { ...ADMIN, status, title: "宿舍住户" });
  };
  const done = (c: Context<AppEnv>, phone: string) =>
    c.redirect(`/admin/billing/residents?phone=${phone}`, 303);

  app.get(
    "/residents",
    residents,
    zValidator("query", residentQuery),
    (c) => show(c, c.req.valid("query").phone),
  );

  app.post(
    "/residents/move",
    residents,
    zValidator("form", residentMoveForm, formErrorsHook((c, e, i) => show(c, "", e, i, 422))),
    (c) => {
      const f = c.req.valid("form");
      const phone = f.phone.trim();
      return runForm(
        () => placeResident(db, actorOf(c), { ...f, phone }),
        (e) => show(c, phone, e, f, 422),
        () => done(c, phone),
      );
    },
  );

  app.post(
    "/residents/remove",
    residents,
    zValidator("form", residentRemoveForm, formErrorsHook((c, e, i) => show(c, "", e, i, 422))),
    (c) => {
      const phone = c.req.valid("form").phone.trim();
      return runForm(
        () => unplaceResident(db, actorOf(c), phone),
        (e) => show(c, phone, e, {}, 422),
        () => done(c, phone),
      );
    },
  );

  return app;
}
