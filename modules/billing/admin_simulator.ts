/** 模拟计量系统: the simulated meter system's fault switches, to rehearse failures (sysadmin). */
import { type Context, Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { type FieldErrors, render } from "../platform/views.ts";
import { requireRole } from "../staff/mod.ts";
import { actorOf, ADMIN, type AdminDeps } from "./_admin.ts";
import { switchSimulatedFault, useSimulated } from "./admin_actions.ts";
import { simulatedFaults } from "./admin_reads.ts";
import { BILLING_ROLES } from "./roles.ts";
import { meterAdapterFor } from "./meters.ts";
import { readMeters } from "./readings.ts";
import { simulatedUseForm, simulatorForm } from "./schemas.ts";

/** The simulator page, mounted under /admin/billing. */
export function simulatorAdmin({ db, config }: AdminDeps): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const simulator = requireRole(...BILLING_ROLES.simulator);

  const show = async (
    c: Context<AppEnv>,
    errors: FieldErrors = {},
    status = 200,
    notice = "",
  ) => {
    const enabled = config.meterAdapter === "simulated";
    const data = { enabled, ...await simulatedFaults(db), errors, notice };
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

  // 模拟用量: a room uses credit, as its residents would; the next reading (or 立即抄表) sees it.
  app.post(
    "/simulator/use",
    simulator,
    zValidator(
      "form",
      simulatedUseForm,
      formErrorsHook((c, e) => show(c, { use: Object.values(e)[0] }, 422)),
    ),
    (c) =>
      runForm(
        () => useSimulated(db, actorOf(c), c.req.valid("form")),
        (e) => show(c, { use: Object.values(e)[0] }, 422),
        () => c.redirect("/admin/billing/simulator", 303),
      ),
  );

  // 立即抄表: reads every occupied room now instead of at the next METER_READ_EVERY_S.
  app.post("/simulator/read", simulator, async (c) => {
    const n = await readMeters(db, meterAdapterFor({ db, config }));
    return show(c, {}, 200, `已抄表：${n} 个房间账户`);
  });

  return app;
}
