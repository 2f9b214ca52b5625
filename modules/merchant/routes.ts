import { Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import { z } from "zod";
import type { Context } from "hono";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { DomainError, NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook } from "../platform/forms.ts";
import { render } from "../platform/views.ts";
import { clientIp } from "../security/mod.ts";
import { registerAdminNav, requireRole, ROLES, writeAudit } from "../staff/mod.ts";
import {
  CATEGORY_LABELS,
  createMerchant,
  getMerchant,
  listMerchants,
  updateMerchant,
} from "./service.ts";
import {
  findTerminal,
  listTerminalErrors,
  listTerminals,
  registerTerminal,
  rotateTerminalKey,
  setTerminalStatus,
  TERMINAL_KIND_LABELS,
} from "./terminals.ts";
import { terminalActivity } from "./activity.ts";
import type { MerchantCategory, TerminalKind } from "./tables.ts";

/** A reader counts as online when heard from within this many seconds (two heartbeats). */
const ONLINE_SECONDS = 70;

const merchantSchema = z.object({
  code: z.string().trim().max(32, "编码过长").optional(),
  name: z.string().trim().min(1, "请输入商户名称").max(40, "名称过长"),
  category: z.enum(["canteen", "supermarket", "shower", "other"], { message: "请选择商户类别" }),
  active: z.string().optional(),
});

const terminalSchema = z.object({
  merchant_id: z.coerce.number({ message: "请选择商户" }).int().positive("请选择商户"),
  kind: z.enum(["canteen_pos", "supermarket_pos", "qr_scanner", "shower"], {
    message: "请选择终端类型",
  }),
  name: z.string().trim().min(1, "请输入终端名称").max(40, "名称过长"),
});

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
  registerAdminNav({ href: "/admin/merchants", label: "商户", roles: [ROLES.sysadmin] });
  registerAdminNav({ href: "/admin/terminals", label: "终端", roles: [ROLES.sysadmin] });
  const actor = (c: Context<AppEnv>) => ({ staffId: c.get("staff")!.id, ip: clientIp(c) });
  const page = { layout: "admin/layout" };

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
    async (c) => {
      const form = c.req.valid("form");
      try {
        await db.transaction().execute(async (trx) => {
          const m = await createMerchant(trx, {
            code: form.code ?? "",
            name: form.name,
            category: form.category,
          });
          await writeAudit(trx, {
            ...actor(c),
            action: "merchant.created",
            targetType: "merchant",
            targetId: m.id,
            after: m,
          });
        });
      } catch (err) {
        if (err instanceof DomainError) {
          return showMerchants(c, { [err.field ?? "_form"]: err.userMessage }, {
            code: form.code ?? "",
            name: form.name,
            category: form.category,
          }, 422);
        }
        throw err;
      }
      return c.redirect("/admin/merchants", 303);
    },
  );

  const showMerchant = async (
    c: Context<AppEnv>,
    id: number,
    errors: Record<string, string>,
    status = 200,
  ) => {
    const merchant = await getMerchant(db, id);
    if (!merchant) throw new NotFoundError(`merchant ${id}`);
    const terminals = await listTerminals(db, { merchantId: id });
    return render(c, "merchant/merchant", {
      merchant,
      terminals,
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
    async (c) => {
      const id = idParam(c);
      const form = c.req.valid("form");
      try {
        await updateMerchant(db, id, {
          name: form.name,
          category: form.category as MerchantCategory,
          active: form.active === "1",
          actor: actor(c),
        });
      } catch (err) {
        if (err instanceof DomainError && !(err instanceof NotFoundError)) {
          return showMerchant(c, id, { [err.field ?? "_form"]: err.userMessage }, 422);
        }
        throw err;
      }
      return c.redirect(`/admin/merchants/${id}`, 303);
    },
  );

  const liveRows = async () => {
    const activity = terminalActivity();
    const now = Date.now();
    return (await listTerminals(db)).map((t) => ({
      ...t,
      online: (activity?.connected(t.id) ?? false) ||
        (t.lastSeenAt !== null && now - t.lastSeenAt.getTime() < ONLINE_SECONDS * 1000),
    }));
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
      return render(c, "merchant/_terminal_rows", data, { layout: null });
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
    async (c) => {
      const form = c.req.valid("form");
      try {
        const { terminal, keyHex } = await registerTerminal(db, config.appSecret, {
          merchantId: form.merchant_id,
          kind: form.kind as TerminalKind,
          name: form.name,
          actor: actor(c),
        });
        return render(c, "merchant/terminal_key", {
          terminal,
          keyHex,
          kindLabels: TERMINAL_KIND_LABELS,
          rotated: false,
        }, {
          ...page,
          title: "终端密钥",
        });
      } catch (err) {
        if (err instanceof DomainError) {
          return showTerminals(c, { [err.field ?? "_form"]: err.userMessage }, {
            name: form.name,
            kind: form.kind,
            merchant_id: String(form.merchant_id),
          }, 422);
        }
        throw err;
      }
    },
  );

  app.get("/terminals/:id", admin, async (c) => {
    const id = idParam(c);
    const terminal = await findTerminal(db, id);
    if (!terminal) throw new NotFoundError(`terminal ${id}`);
    const activity = terminalActivity();
    const connected = activity?.connected(id) ?? false;
    const online = connected ||
      (terminal.lastSeenAt !== null &&
        Date.now() - terminal.lastSeenAt.getTime() < ONLINE_SECONDS * 1000);
    return render(c, "merchant/terminal", {
      terminal,
      online,
      errors: await listTerminalErrors(db, id, 20),
      transactions: activity ? await activity.transactions(db, id, 100) : [],
      kindLabels: TERMINAL_KIND_LABELS,
    }, { ...page, title: terminal.name });
  });

  app.post("/terminals/:id/rotate", admin, async (c) => {
    const id = idParam(c);
    const keyHex = await rotateTerminalKey(db, config.appSecret, id, actor(c));
    const terminal = (await findTerminal(db, id))!;
    return render(c, "merchant/terminal_key", {
      terminal,
      keyHex,
      kindLabels: TERMINAL_KIND_LABELS,
      rotated: true,
    }, {
      ...page,
      title: "终端密钥",
    });
  });

  app.post("/terminals/:id/status", admin, async (c) => {
    const id = idParam(c);
    const form = await c.req.parseBody();
    const status = form.status === "disabled" ? "disabled" : "active";
    await setTerminalStatus(db, id, status, actor(c));
    return c.redirect(`/admin/terminals/${id}`, 303);
  });

  return app;
}
