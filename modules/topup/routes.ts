import { Hono } from "hono";
import type { Context } from "hono";
import { zValidator } from "@hono/zod-validator";
import { z } from "zod";
import type { Config } from "../platform/config.ts";
import type { Db } from "../platform/database.ts";
import { NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { render } from "../platform/views.ts";
import { clientIp, requireStudent } from "../security/mod.ts";
import { registerAdminNav, requireRole, ROLES } from "../staff/mod.ts";
import { findBoundCard } from "../card/mod.ts";
import { SANDBOX_MODES, type SandboxMode, switchSandboxMode } from "./sandbox.ts";
import { buildGateways, QUICK_AMOUNTS, sandboxOf, topupLimits, wechatOf } from "./deployment.ts";
import { handleNotify } from "./notifies.ts";
import {
  cancelOrder,
  findOwnOrder,
  openTopup,
  orderResult,
  remainingToday,
  type TopupOrder,
} from "./orders.ts";
import { oauthStartUrl, rememberPayerFromCallback } from "./payer_oauth.ts";
import { proxyRoutes } from "./proxy_routes.ts";
import type { TopupMethod } from "./tables.ts";

/**
 * 充值: an amount typed in [充值金额] or a quick amount (the typed one wins) and [支付方式];
 * `typed` is what the form shows again.
 */
const rechargeSchema = z.object({
  amount: z.string().max(40, "金额格式不正确").optional().default(""),
  quick: z.string().max(20).optional().default(""),
  method: z.string().max(20).optional().default(""),
}).transform((f, ctx) => {
  const amountText = f.amount.trim() || f.quick.trim();
  if (!amountText) {
    ctx.addIssue({ code: "custom", path: ["amount"], message: "请输入充值金额" });
    return z.NEVER;
  }
  return { amountText, method: f.method, typed: f };
});

/** WeChat's OAuth callback: what it brings back. */
const callbackQuery = z.object({
  code: z.string().optional().default(""),
  state: z.string().optional().default(""),
}).catch({ code: "", state: "" });

const modeSchema = z.object({
  mode: z.enum(Object.keys(SANDBOX_MODES) as [SandboxMode, ...SandboxMode[]], {
    message: "请选择通知方式",
  }),
});

/** 充值 pages, the sandbox's 测试支付 page, the gateways' notify endpoints, the sandbox setting. */
export function topupRoutes(deps: { db: Db; config: Config }): Hono<AppEnv> {
  const { db, config } = deps;
  const gateways = buildGateways(deps);
  const limits = topupLimits(config);
  const app = new Hono<AppEnv>();
  registerAdminNav({
    href: "/admin/topup/sandbox",
    label: "测试支付设置",
    roles: [ROLES.finance, ROLES.sysadmin],
    group: "财务处",
    order: 95,
  });

  const methods = () => [...gateways.values()].map((g) => ({ value: g.method, label: g.label }));
  // 代充: payers' pages and the student's link to share.
  app.route("/", proxyRoutes(deps, gateways));

  const showForm = async (
    c: Context<AppEnv>,
    errors: Record<string, string>,
    input: Record<string, string>,
    status = 200,
  ) => {
    const accountId = c.get("accountId")!;
    const card = await findBoundCard(db, accountId);
    const left = card ? await remainingToday(db, card.cardAccountId, limits) : 0;
    return render(c, "topup/recharge", {
      card,
      errors,
      input,
      methods: methods(),
      quick: QUICK_AMOUNTS,
      limits,
      left,
      title: "充值",
      scripts: ["quick_amount.js", "topup.js"],
    }, { status, title: "充值" });
  };

  app.get("/wallet/recharge", requireStudent, (c) => {
    const method = c.req.query("method") ?? "";
    return showForm(c, {}, {
      method: gateways.has(method as TopupMethod) ? method : methods()[0]?.value ?? "",
    });
  });

  app.post(
    "/wallet/recharge",
    requireStudent,
    zValidator(
      "form",
      rechargeSchema,
      formErrorsHook((c, errors, input) => showForm(c, errors, input, 422)),
    ),
    (c) => {
      const { typed, ...form } = c.req.valid("form");
      return runForm(
        () => openTopup(deps, gateways, { accountId: c.get("accountId")!, ...form }),
        (errors, err) => {
          if (err.status === 503) throw err;
          return showForm(c, errors, typed, err.status);
        },
        (next) => c.redirect(next, 303),
      );
    },
  );

  const ownOrder = async (c: Context<AppEnv>): Promise<TopupOrder> => {
    const order = await findOwnOrder(db, c.get("accountId")!, c.req.param("orderNo") ?? "");
    if (!order) throw new NotFoundError("top-up order");
    return order;
  };

  // The result page: 处理中 until the notify (or a query) settles it; htmx polls the status part.
  app.get("/wallet/recharge/orders/:orderNo", requireStudent, async (c) => {
    const data = { ...await orderResult(deps, gateways, await ownOrder(c)), title: "充值结果" };
    if (c.req.header("hx-request") === "true") {
      return render(c, "topup/_status", data, { layout: null });
    }
    return render(c, "topup/result", data, { title: "充值结果" });
  });

  // WeChat JSAPI: the page starts getBrandWCPayRequest with freshly signed parameters.
  app.get("/wallet/recharge/orders/:orderNo/pay", requireStudent, async (c) => {
    const order = await ownOrder(c);
    const wechat = wechatOf(gateways);
    if (order.method !== "wechat" || !wechat || !order.prepay_id) {
      throw new NotFoundError("JSAPI payment");
    }
    if (order.state !== "pending") {
      return c.redirect(`/wallet/recharge/orders/${order.order_no}`, 303);
    }
    const params = wechat.jsapiParams(order.prepay_id);
    return render(c, "topup/wechat_pay", {
      order,
      params: JSON.stringify(params),
      scripts: ["topup.js"],
    }, {
      title: "微信支付",
      tab: null,
    });
  });

  app.get("/wallet/recharge/wechat/oauth", requireStudent, async (c) => {
    return c.redirect(await oauthStartUrl(deps, gateways, c.get("accountId")!), 302);
  });

  app.get(
    "/wallet/recharge/wechat/callback",
    requireStudent,
    zValidator("query", callbackQuery),
    async (c) => {
      const accountId = c.get("accountId")!;
      await rememberPayerFromCallback(deps, gateways, accountId, c.req.valid("query"));
      return c.redirect("/wallet/recharge?method=wechat", 303);
    },
  );

  // The sandbox's 测试支付 page: only the order's own payer sees it.
  app.get("/pay/sandbox/:orderNo", requireStudent, async (c) => {
    const order = await ownOrder(c);
    const sandbox = sandboxOf(gateways);
    const payment = sandbox && order.method === "sandbox"
      ? await sandbox.payment(order.order_no)
      : null;
    if (!payment) throw new NotFoundError("sandbox payment");
    return render(c, "topup/sandbox", { order, payment, title: "测试支付" }, {
      title: "测试支付",
      tab: null,
    });
  });

  app.post("/pay/sandbox/:orderNo/confirm", requireStudent, async (c) => {
    const order = await ownOrder(c);
    const sandbox = sandboxOf(gateways);
    if (!sandbox || order.method !== "sandbox") throw new NotFoundError("sandbox payment");
    if (order.state === "pending" && order.expires_at > new Date()) {
      await sandbox.confirm(order.order_no);
    }
    return c.redirect(`/wallet/recharge/orders/${order.order_no}`, 303);
  });

  app.post("/pay/sandbox/:orderNo/cancel", requireStudent, async (c) => {
    const order = await ownOrder(c);
    if (order.method !== "sandbox") throw new NotFoundError("sandbox payment");
    await cancelOrder(deps, gateways, order);
    return c.redirect(`/wallet/recharge/orders/${order.order_no}`, 303);
  });

  // Gateway notifies: no session, no CSRF token (exempt in main.ts); the signature is the proof.
  app.post("/pay/notify/:method", async (c) => {
    const gateway = gateways.get(c.req.param("method") as TopupMethod);
    if (!gateway) return c.json({ code: "FAIL", message: "unknown gateway" }, 404);
    // At most FORM_BODY_LIMIT: a longer body was refused before this reads it (main.ts).
    const body = await c.req.text();
    const answer = await handleNotify(deps, gateway, c.req.raw.headers, body);
    return c.body(
      answer.body ?? "",
      answer.status as 200,
      answer.contentType ? { "content-type": answer.contentType } : {},
    );
  });

  const showMode = async (c: Context<AppEnv>, errors: Record<string, string>, status = 200) => {
    const sandbox = sandboxOf(gateways);
    return render(c, "topup/admin_sandbox", {
      enabled: !!sandbox,
      mode: sandbox ? await sandbox.mode() : null,
      modes: SANDBOX_MODES,
      errors,
    }, { status, layout: "admin/layout", title: "测试支付设置" });
  };

  app.get(
    "/admin/topup/sandbox",
    requireRole(ROLES.finance, ROLES.sysadmin),
    (c) => showMode(c, {}),
  );

  app.post(
    "/admin/topup/sandbox",
    requireRole(ROLES.finance, ROLES.sysadmin),
    zValidator("form", modeSchema, formErrorsHook((c, errors) => showMode(c, errors, 422))),
    async (c) => {
      const sandbox = sandboxOf(gateways);
      if (!sandbox) return showMode(c, { _form: "本部署未启用测试支付" }, 409);
      const actor = { staffId: c.get("staff")!.id, ip: clientIp(c) };
      await switchSandboxMode(db, sandbox, actor, c.req.valid("form").mode);
      return c.redirect("/admin/topup/sandbox", 303);
    },
  );

  return app;
}
