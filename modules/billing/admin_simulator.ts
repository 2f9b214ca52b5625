/** 模拟计量系统: the simulated meter system's fault switches, to rehearse failures (sysadmin). */
import { type Context, Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { type FieldErrors, render } from "../platform/views.ts";
import { requireRole } from "../staff/mod.ts";
import { actorOf, ADMIN, type AdminDeps } from "./_admin.ts";
import { switchSimulatedFault } from "./admin_actions.ts";
import { simulatedFaults } from "./admin_reads.ts";
import { BILLING_ROLES } from "./roles.ts";
import { simulatorForm } from "./schemas.ts";

/** The simulator page, mounted under /admin/billing. */
export function simulatorAdmin({ db, config }: AdminDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const simulator = requireRole(...BILLING_ROLES.simulator);

  const show = async (c: Context<AppEnv>, errors: FieldErrors = {}, status = 200) => {
    const enabled = config.meterAdapter === "simulated";
    const data = { enabled, ...await simulatedFaults(db), errors };
    return render(c, "billing/admin_simulator", data, { ...ADMIN, status, title: "模拟计量系统" });
  };

  app.get("/simulator", simulator, (c) => show(c));

  app.post(
    "/simulator",
    simulator,
    zValidator(
      "form",
      simulatorForm,
      formErrorsHook((c, e) => show(c, { _form: Object.values(e)[0] }, 422)),
    ),
    (c) =>
      runForm(
        () => switchSimulatedFault(db, actorOf(c), c.req.valid("form")),
        (e) => show(c, e, 422),
        () => c.redirect("/admin/billing/simulator", 303),
      ),
  );

  return app;
}
