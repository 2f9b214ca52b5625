import { Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import type { Context } from "hono";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { render } from "../platform/views.ts";
import { clientIp } from "../security/mod.ts";
import { registerAdminNav, requireRole, ROLES } from "../staff/mod.ts";
import { CATEGORY_LABELS, getMerchant, listMerchants, updateMerchant } from "./service.ts";
import { addMerchant } from "./admin_actions.ts";
import {
  findTerminal,
  listTerminalErrors,
  listTerminals,
  registerTerminal,
  rotateTerminalKey,
  setTerminalStatus,
  TERMINAL_KIND_LABELS,
} from "./terminals.ts";
import { isOnline, terminalActivity } from "./activity.ts";
import { addMerchantOperator, merchantOperators } from "./operators.ts";
import { merchantSchema, operatorSchema, terminalSchema, terminalStatusForm } from "./schemas.ts";

function idParam(c: Context<AppEnv>): number {
  const id = Number(c.req.param("id"));
  if (!Number.isSafeInteger(id) || id <= 0) throw new NotFoundError("record");
  return id;
}

/** Staff pages (system administrator): merchants, terminals, keys, the live view. */
export function merchantRoutes(deps: { db: Db; config: Config }): Hono<AppEnv> {
  const { db, config } = deps;
  const app = new Hono<AppEnv>();
  const admin = requireRole(ROLES.sysadmin);
  const sys = { roles: [ROLES.sysadmin], group: "系统" as const };
  registerAdminNav({ href: "/admin/merchants", label: "商户", ...sys, order: 10 });
  registerAdminNav({ href: "/admin/terminals", label: "终端", ...sys, order: 11 });
  const actor = (c: Context<AppEnv>) => ({ staffId: c.get("staff")!.id, ip: clientIp(c) });
  const page = { layout: "admin/layout" };
  /** A terminal's key, shown once: after registering it or rotating it. */
  const showKey = (c: Context<AppEnv>, terminal: unknown, keyHex: string, rotated: boolean) =>
    render(c, "merchant/terminal_key", {
      terminal,
      keyHex,
      kindLabels: TERMINAL_KIND_LABELS,
      rotated,
    }, { ...page, title: "终端密钥" });

  const showMerchants = async (
    c: Context<AppEnv>,
    errors: Record<string, string>,
    input: Record<string, string>,
    status = 200,
  ) =>
    render(c, "merchant/merchants", {
      list: await listMerchants(db),
      labels: CATEGORY_LABELS,
      errors,
      input,
    }, {
      ...page,
      status,
      title: "商户",
    });

  app.get("/merchants", admin, (c) => showMerchants(c, {}, {}));

  app.post(
    "/merchants",
    admin,
    zValidator(
      "form",
      merchantSchema,
      formErrorsHook((c, errors, input) => showMerchants(c, errors, input, 422)),
    ),
    (c) => {
      const { typed, ...form } = c.req.valid("form");
      return runForm(
        () => addMerchant(db, actor(c), form),
        (errors) => showMerchants(c, errors, typed, 422),
        () => c.redirect("/admin/merchants", 303),
      );
    },
  );

  const showMerchant = async (
    c: Context<AppEnv>,
    id: number,
    errors: Record<string, string>,
    status = 200,
    operator: { errors?: Record<string, string>; typed?: Record<string, string> } = {},
  ) => {
    const merchant = await getMerchant(db, id);
    if (!merchant) throw new NotFoundError(`merchant ${id}`);
    const terminals = await listTerminals(db, { merchantId: id });
    return render(c, "merchant/merchant", {
      merchant,
      terminals,
      operators: await merchantOperators(db, id),
      operatorErrors: operator.errors ?? {},
      operatorInput: operator.typed ?? {},
      added: c.req.query("done") === "operator",
      labels: CATEGORY_LABELS,
      kindLabels: TERMINAL_KIND_LABELS,
      errors,
    }, {
      ...page,
      status,
      title: merchant.name,
    });
  };

  app.get("/merchants/:id", admin, (c) => showMerchant(c, idParam(c), {}));

  app.post(
    "/merchants/:id",
    admin,
    zValidator(
      "form",
      merchantSchema,
      formErrorsHook((c, errors) => showMerchant(c, idParam(c), errors, 422)),
    ),
    (c) => {
      const [id, form] = [idParam(c), c.req.valid("form")];
      return runForm(
        () => updateMerchant(db, id, { ...form, actor: actor(c) }),
        (errors) => showMerchant(c, id, errors, 422),
        () => c.redirect(`/admin/merchants/${id}`, 303),
      );
    },
  );

  // 经营者账号: an outside operator's read-only sign-in to this merchant's statements.
  app.post(
    "/merchants/:id/operators",
    admin,
    zValidator(
      "form",
      operatorSchema,
      formErrorsHook((c, errors, input) =>
        showMerchant(c, idParam(c), {}, 422, {
          errors,
          typed: { username: input.username ?? "", name: input.name ?? "" },
        })
      ),
    ),
    (c) => {
      const [id, { typed, ...form }] = [idParam(c), c.req.valid("form")];
      return runForm(
        () => addMerchantOperator(db, actor(c), { merchantId: id, ...form }),
        (errors) => showMerchant(c, id, {}, 422, { errors, typed }),
        () => c.redirect(`/admin/merchants/${id}?done=operator#operators`, 303),
      );
    },
  );

  const liveRows = async () => {
    const now = Date.now();
    return (await listTerminals(db)).map((t) => ({ ...t, online: isOnline(t, now) }));
  };

  const showTerminals = async (
    c: Context<AppEnv>,
    errors: Record<string, string>,
    input: Record<string, string>,
    status = 200,
  ) => {
    const data = {
      rows: await liveRows(),
      merchants: await listMerchants(db),
      kindLabels: TERMINAL_KIND_LABELS,
      errors,
      input,
    };
    if (c.req.header("hx-request") === "true" && c.req.query("live") === "1") {
      return render(c, "merchant/_terminals_live", data, { layout: null });
    }
    return render(c, "merchant/terminals", data, { ...page, status, title: "终端" });
  };

  app.get("/terminals", admin, (c) => showTerminals(c, {}, {}));

  app.post(
    "/terminals",
    admin,
    zValidator(
      "form",
      terminalSchema,
      formErrorsHook((c, errors, input) => showTerminals(c, errors, input, 422)),
    ),
    (c) => {
      const { typed, ...form } = c.req.valid("form");
      return runForm(
        () => registerTerminal(db, config.appSecret, { ...form, actor: actor(c) }),
        (errors) => showTerminals(c, errors, typed, 422),
        ({ terminal, keyHex }) => showKey(c, terminal, keyHex, false),
      );
    },
  );

  app.get("/terminals/:id", admin, async (c) => {
    const id = idParam(c);
    const terminal = await findTerminal(db, id);
    if (!terminal) throw new NotFoundError(`terminal ${id}`);
    const activity = terminalActivity();
    return render(c, "merchant/terminal", {
      terminal,
      online: isOnline(terminal),
      errors: await listTerminalErrors(db, id, 20),
      transactions: activity ? await activity.transactions(db, id, 100) : [],
      kindLabels: TERMINAL_KIND_LABELS,
    }, { ...page, title: terminal.name });
  });

  app.post("/terminals/:id/rotate", admin, async (c) => {
    const id = idParam(c);
    const keyHex = await rotateTerminalKey(db, config.appSecret, id, actor(c));
    return showKey(c, (await findTerminal(db, id))!, keyHex, true);
  });

  app.post("/terminals/:id/status", admin, zValidator("form", terminalStatusForm), async (c) => {
    const id = idParam(c);
    await setTerminalStatus(db, id, c.req.valid("form").status, actor(c));
    return c.redirect(`/admin/terminals/${id}`, 303);
  });

  return app;
}
