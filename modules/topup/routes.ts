import { Hono } from "hono";
import type { Context } from "hono";
import { zValidator } from "@hono/zod-validator";
import { z } from "zod";
import type { Config } from "../platform/config.ts";
import type { Db } from "../platform/database.ts";
import { DomainError, NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook } from "../platform/forms.ts";
import { render } from "../platform/views.ts";
import { keyedHash, timingSafeEqual } from "../platform/crypto.ts";
import { clientIp, requireStudent } from "../security/mod.ts";
import { registerAdminNav, requireRole, ROLES, writeAudit } from "../staff/mod.ts";
import { findBoundCard } from "../card/mod.ts";
import { getTransaction } from "../wallet/mod.ts";
import { GatewayError } from "./gateway.ts";
import { SANDBOX_MODES, type SandboxMode } from "./sandbox.ts";
import { buildGateways, QUICK_AMOUNTS, sandboxOf, topupLimits, wechatOf } from "./deployment.ts";
import { handleNotify } from "./notifies.ts";
import {
  cancelOrder,
  checkOrder,
  createOrder,
  findOwnOrder,
  openidOf,
  remainingToday,
  rememberOpenid,
  type TopupOrder,
} from "./orders.ts";
import type { TopupMethod } from "./tables.ts";

const rechargeSchema = z.object({
  amount: z.string().max(40, "金额格式不正确").optional().default(""),
  quick: z.string().max(20).optional().default(""),
  method: z.string().max(20).optional().default(""),
});

const modeSchema = z.object({
  mode: z.enum(Object.keys(SANDBOX_MODES) as [SandboxMode, ...SandboxMode[]], {
    message: "请选择通知方式",
  }),
});

/** A pending order is asked about at most this often while its result page polls. */
const POLL_CHECK_AFTER_MS = 10_000;

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
  });

  const methods = () => [...gateways.values()].map((g) => ({ value: g.method, label: g.label }));

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
    async (c) => {
      const form = c.req.valid("form");
      const accountId = c.get("accountId")!;
      const amountText = form.amount.trim() || form.quick.trim();
      const input = { amount: form.amount, quick: form.quick, method: form.method };
      if (!amountText) return showForm(c, { amount: "请输入充值金额" }, input, 422);
      if (form.method === "wechat" && gateways.has("wechat") && !(await openidOf(db, accountId))) {
        // JSAPI needs the payer's openid: learn it once through WeChat's silent OAuth.
        return c.redirect("/wallet/recharge/wechat/oauth", 303);
      }
      try {
        const { order, start } = await createOrder(deps, gateways, {
          accountId,
          amountText,
          method: form.method,
          openid: form.method === "wechat" ? await openidOf(db, accountId) : null,
        });
        if (start.kind === "redirect") return c.redirect(start.url, 303);
        return c.redirect(`/wallet/recharge/orders/${order.order_no}/pay`, 303);
      } catch (err) {
        if (err instanceof DomainError && err.status !== 503) {
          return showForm(c, { [err.field ?? "_form"]: err.userMessage }, input, err.status);
        }
        throw err;
      }
    },
  );

  const ownOrder = async (c: Context<AppEnv>): Promise<TopupOrder> => {
    const order = await findOwnOrder(db, c.get("accountId")!, c.req.param("orderNo") ?? "");
    if (!order) throw new NotFoundError("top-up order");
    return order;
  };

  // The result page: 处理中 until the notify (or a query) settles it; htmx polls the status part.
  app.get("/wallet/recharge/orders/:orderNo", requireStudent, async (c) => {
    let order = await ownOrder(c);
    const due = !order.last_checked_at ||
      Date.now() - order.last_checked_at.getTime() > POLL_CHECK_AFTER_MS;
    if (
      order.state === "pending" && due &&
      Date.now() - order.created_at.getTime() > POLL_CHECK_AFTER_MS
    ) {
      await checkOrder(deps, gateways, order);
      order = (await findOwnOrder(db, order.account_id, order.order_no))!;
    }
    // 充值成功 shows the balance right after this credit (its transfer's balance-after).
    const credit = order.state === "paid" && order.transfer_id !== null
      ? await getTransaction(db, order.card_account_id, order.transfer_id)
      : null;
    const data = { order, balanceAfter: credit?.balanceAfter ?? null, title: "充值结果" };
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

  const oauthState = async (accountId: number, ts: number) =>
    `${ts}.${
      (await keyedHash(config.appSecret, "wechat-oauth", `${accountId}:${ts}`)).slice(0, 32)
    }`;

  app.get("/wallet/recharge/wechat/oauth", requireStudent, async (c) => {
    const wechat = wechatOf(gateways);
    if (!wechat) throw new NotFoundError("WeChat Pay");
    const state = await oauthState(c.get("accountId")!, Math.floor(Date.now() / 1000));
    return c.redirect(
      wechat.authorizeUrl(`${config.baseUrl}/wallet/recharge/wechat/callback`, state),
      302,
    );
  });

  app.get("/wallet/recharge/wechat/callback", requireStudent, async (c) => {
    const wechat = wechatOf(gateways);
    if (!wechat) throw new NotFoundError("WeChat Pay");
    const code = c.req.query("code") ?? "";
    const state = c.req.query("state") ?? "";
    const ts = Number(state.split(".")[0]);
    const fresh = Number.isSafeInteger(ts) && Math.abs(Date.now() / 1000 - ts) < 600;
    if (
      !fresh || !timingSafeEqual(state, await oauthState(c.get("accountId")!, ts)) ||
      !/^[A-Za-z0-9_-]{1,128}$/.test(code)
    ) {
      throw new DomainError("Bad OAuth callback", "授权已过期，请返回充值页面重试");
    }
    try {
      await rememberOpenid(db, c.get("accountId")!, await wechat.openidForCode(code));
    } catch (err) {
      if (err instanceof GatewayError) {
        throw new DomainError(err.message, "微信授权失败，请稍后再试");
      }
      throw err;
    }
    return c.redirect("/wallet/recharge?method=wechat", 303);
  });

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
      const mode = c.req.valid("form").mode;
      await db.transaction().execute(async (trx) => {
        const before = await sandbox.mode(trx);
        await sandbox.setMode(mode, trx);
        await writeAudit(trx, {
          staffId: c.get("staff")!.id,
          action: "topup.sandbox_mode",
          targetType: "sandbox",
          targetId: "notify_mode",
          before: { mode: before },
          after: { mode },
          ip: clientIp(c),
        });
      });
      return c.redirect("/admin/topup/sandbox", 303);
    },
  );

  return app;
}
