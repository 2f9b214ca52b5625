/**
 * 代充's pages: for payers (no sign-in) /topup/proxy (学号 + 姓名), /topup/proxy/c/:token (a
 * student's shared link), the masked confirmation and payment, the payer's own result, sandbox
 * and JSAPI pages; for students /wallet/recharge/proxy (their link to share).
 */
import { type Context, Hono } from "hono";
import { getCookie, setCookie } from "hono/cookie";
import { zValidator } from "@hono/zod-validator";
import { z } from "zod";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { type FieldErrors, render } from "../platform/views.ts";
import { checkOauthState, isOauthCode, oauthState } from "../platform/wechat_mp.ts";
import {
  clientIp,
  keyedHash,
  randomToken,
  requireStudent,
  sha256Hex,
  timingSafeEqual,
} from "../security/mod.ts";
import { listSchools } from "../account/mod.ts";
import { findBoundCard, findCardAccount } from "../card/mod.ts";
import { GatewayError } from "./gateway.ts";
import { type Gateways, QUICK_AMOUNTS, sandboxOf, topupLimits, wechatOf } from "./deployment.ts";
import { cancelOrder, orderResult, type TopupOrder } from "./orders.ts";
import {
  findPayerOrder,
  findRecipient,
  maskName,
  maskStudentNumber,
  openProxyOrder,
  proxyLimits,
  proxyLinkOf,
  type Recipient,
  recipientOfLink,
  recipientOfTicket,
  recipientTicket,
  renewProxyLink,
} from "./proxy.ts";

const PAYER_COOKIE = "yxt_payer";
const PAYER_WX_COOKIE = "yxt_payer_wx";
const STATE_COOKIE = "yxt_payer_state";
const BASE = "/topup/proxy";

/** 代充: [学校], [学号], [姓名]. */
const lookupForm = z.object({
  school_id: z.string().max(12).optional().default(""),
  student_number: z.string().max(40).optional().default(""),
  name: z.string().max(40).optional().default(""),
}).transform((f, ctx) => {
  const schoolId = /^\d{1,9}$/.test(f.school_id) ? Number(f.school_id) : 0;
  if (!schoolId) ctx.addIssue({ code: "custom", path: ["school_id"], message: "请选择学校" });
  if (!f.student_number.trim()) {
    ctx.addIssue({ code: "custom", path: ["student_number"], message: "请输入学号" });
  }
  if (!f.name.trim()) ctx.addIssue({ code: "custom", path: ["name"], message: "请输入持卡人姓名" });
  return { schoolId, studentNumber: f.student_number, name: f.name, typed: f };
});

/** The confirmation's payment: [充值金额] or a quick amount (the typed one wins), [支付方式]. */
const payForm = z.object({
  ticket: z.string().max(80).optional().default(""),
  amount: z.string().max(40).optional().default(""),
  quick: z.string().max(20).optional().default(""),
  method: z.string().max(20).optional().default(""),
}).transform((f, ctx) => {
  const amountText = f.amount.trim() || f.quick.trim();
  if (!amountText) {
    ctx.addIssue({ code: "custom", path: ["amount"], message: "请输入充值金额" });
    return z.NEVER;
  }
  return { ticket: f.ticket, amountText, method: f.method, typed: f };
});

const callbackQuery = z.object({
  code: z.string().max(200).optional().default(""),
  state: z.string().max(200).optional().default(""),
}).catch({ code: "", state: "" });

const insideWechat = (c: Context<AppEnv>) =>
  /MicroMessenger/i.test(c.req.header("user-agent") ?? "");

async function payerWxMac(config: Config, body: string): Promise<string> {
  return (await keyedHash(config.appSecret, "proxy-payer", body)).slice(0, 32);
}

/** The WeChat openid this browser's payer proved (a signed cookie, 30 days), or null. */
async function payerOpenid(c: Context<AppEnv>, config: Config): Promise<string | null> {
  const m = /^([A-Za-z0-9_-]{6,64})\.(\d{1,12})\.([0-9a-f]{32})$/.exec(
    getCookie(c, PAYER_WX_COOKIE) ?? "",
  );
  if (!m || !timingSafeEqual(m[3], await payerWxMac(config, `${m[1]}.${m[2]}`))) return null;
  return Number(m[2]) * 1000 >= Date.now() ? m[1] : null;
}

/** This browser's payer token (made on its first 代充 page). */
function browserToken(c: Context<AppEnv>, config: Config): string {
  const known = getCookie(c, PAYER_COOKIE);
  if (known && /^[A-Za-z0-9_-]{22}$/.test(known)) return known;
  const token = randomToken(16);
  setCookie(c, PAYER_COOKIE, token, {
    httpOnly: true,
    sameSite: "Lax",
    secure: config.secureCookies,
    path: BASE,
    maxAge: 365 * 86400,
  });
  return token;
}

/** The keys this browser pays under: its WeChat openid's, and its own token's. */
async function payerKeys(c: Context<AppEnv>, config: Config) {
  const openid = await payerOpenid(c, config);
  const web = `web:${(await sha256Hex(browserToken(c, config))).slice(0, 32)}`;
  return { openid, wx: openid ? `wx:${openid}` : null, web };
}

/** The pages (mount at "/", inside topupRoutes). */
export function proxyRoutes(deps: { db: Db; config: Config }, gateways: Gateways): Hono<AppEnv> {
  const { db, config } = deps;
  const app = new Hono<AppEnv>();
  const limits = topupLimits(config);
  const plimits = proxyLimits(config);
  const methods = () => [...gateways.values()].map((g) => ({ value: g.method, label: g.label }));

  const showLookup = async (
    c: Context<AppEnv>,
    errors: FieldErrors,
    input: Record<string, string>,
    status = 200,
  ) => {
    browserToken(c, config);
    return render(c, "topup/proxy", { errors, input, schools: await listSchools(db) }, {
      status,
      title: "代充",
      tab: null,
    });
  };

  const showConfirm = async (
    c: Context<AppEnv>,
    recipient: Recipient,
    errors: FieldErrors,
    input: Record<string, string>,
    status = 200,
  ) => {
    browserToken(c, config);
    return render(c, "topup/proxy_confirm", {
      recipient,
      ticket: input.ticket ?? await recipientTicket(config, recipient.cardAccountId),
      errors,
      input,
      methods: methods(),
      quick: QUICK_AMOUNTS,
      limits,
      plimits,
      scripts: ["quick_amount.js", "topup.js"],
    }, { status, title: "代充", tab: null });
  };

  app.get(BASE, (c) => showLookup(c, {}, {}));

  app.post(
    BASE,
    zValidator("form", lookupForm, formErrorsHook((c, e, i) => showLookup(c, e, i, 422))),
    (c) => {
      const { typed, ...form } = c.req.valid("form");
      return runForm(
        () => findRecipient(db, { ...form, ip: clientIp(c) }),
        (errors, err) => showLookup(c, errors, typed, err.status),
        async (recipient) =>
          c.redirect(
            `${BASE}/confirm?t=${await recipientTicket(config, recipient.cardAccountId)}`,
            303,
          ),
      );
    },
  );

  /** The confirmation, after the payer's WeChat OAuth when JSAPI will need the openid. */
  const confirmFor = async (c: Context<AppEnv>, recipient: Recipient, ticket?: string) => {
    if (wechatOf(gateways) && insideWechat(c) && !await payerOpenid(c, config)) {
      const here = new URL(c.req.url);
      return c.redirect(
        `${BASE}/wechat?next=${encodeURIComponent(here.pathname + here.search)}`,
        302,
      );
    }
    const form = { method: methods()[0]?.value ?? "", ...(ticket ? { ticket } : {}) };
    return showConfirm(c, recipient, {}, form);
  };

  // A student's shared link: the confirmation itself (the link is meant to be passed on).
  app.get(`${BASE}/c/:token`, async (c) => {
    const recipient = await recipientOfLink(db, c.req.param("token"));
    if (!recipient) {
      return render(c, "topup/proxy_gone", {}, { status: 404, title: "代充", tab: null });
    }
    return confirmFor(c, recipient);
  });

  app.get(`${BASE}/confirm`, async (c) => {
    const ticket = c.req.query("t") ?? "";
    const recipient = await recipientOfTicket(deps, ticket);
    if (!recipient) return c.redirect(BASE, 303);
    return confirmFor(c, recipient, ticket);
  });

  app.post(
    `${BASE}/pay`,
    zValidator(
      "form",
      payForm,
      formErrorsHook(async (c, e, i) => {
        const recipient = await recipientOfTicket(deps, i.ticket ?? "");
        if (!recipient) return c.redirect(BASE, 303);
        return showConfirm(c, recipient, e, i, 422);
      }),
    ),
    async (c) => {
      const { typed, ...form } = c.req.valid("form");
      const keys = await payerKeys(c, config);
      const wechat = form.method === "wechat";
      return await runForm(
        () =>
          openProxyOrder(deps, gateways, {
            ...form,
            payerKey: wechat && keys.wx ? keys.wx : keys.web,
            openid: wechat ? keys.openid : null,
          }),
        async (errors, err) => {
          const recipient = await recipientOfTicket(deps, form.ticket);
          if (!recipient) return showLookup(c, errors, {}, err.status);
          if (err.status === 503) throw err;
          return showConfirm(c, recipient, errors, typed, err.status);
        },
        ({ order, start }) =>
          c.redirect(
            start.kind === "redirect"
              ? `${BASE}/orders/${order.order_no}/sandbox`
              : `${BASE}/orders/${order.order_no}/pay`,
            303,
          ),
      );
    },
  );

  // The payer's WeChat: snsapi_base, the state tied to this browser.
  app.get(`${BASE}/wechat`, async (c) => {
    const wechat = wechatOf(gateways);
    const next = c.req.query("next") ?? BASE;
    if (!wechat || !next.startsWith(`${BASE}/`)) return c.redirect(BASE, 303);
    const { state, cookie } = await oauthState(config.appSecret, "proxy-payer", next);
    setCookie(c, STATE_COOKIE, cookie, {
      httpOnly: true,
      sameSite: "Lax",
      secure: config.secureCookies,
      path: BASE,
      maxAge: 600,
    });
    return c.redirect(wechat.authorizeUrl(`${config.baseUrl}${BASE}/wechat/callback`, state), 302);
  });

  app.get(`${BASE}/wechat/callback`, zValidator("query", callbackQuery), async (c) => {
    const wechat = wechatOf(gateways);
    const { code, state } = c.req.valid("query");
    const back = await checkOauthState(
      config.appSecret,
      "proxy-payer",
      getCookie(c, STATE_COOKIE),
      state,
    );
    setCookie(c, STATE_COOKIE, "", { path: BASE, maxAge: 0 });
    if (!wechat || !back || !back.next.startsWith(`${BASE}/`) || !isOauthCode(code)) {
      return proxyGone(c, "微信授权已过期，请重新打开代充链接", 400);
    }
    try {
      await rememberPayerOpenid(c, config, await wechat.openidForCode(code));
    } catch (err) {
      if (!(err instanceof GatewayError)) throw err;
      return proxyGone(c, "微信授权失败，请稍后再试", 502);
    }
    return c.redirect(back.next, 303);
  });

  const payerOrder = async (c: Context<AppEnv>): Promise<TopupOrder> => {
    const keys = await payerKeys(c, config);
    const no = c.req.param("orderNo") ?? "";
    const order = await findPayerOrder(db, no, keys.wx) ?? await findPayerOrder(db, no, keys.web);
    if (!order) throw new NotFoundError("proxy top-up order");
    return order;
  };

  // The payer's result: whether it went through, the amount, whom for (masked). Nothing else.
  app.get(`${BASE}/orders/:orderNo`, async (c) => {
    const { order } = await orderResult(deps, gateways, await payerOrder(c));
    const { maskedName, maskedStudentNumber } = await maskedOf(db, order);
    const data = { order, maskedName, maskedStudentNumber, title: "代充结果" };
    if (c.req.header("hx-request") === "true") {
      return render(c, "topup/_proxy_status", data, { layout: null });
    }
    return render(c, "topup/proxy_result", data, { title: "代充结果", tab: null });
  });

  app.get(`${BASE}/orders/:orderNo/pay`, async (c) => {
    const order = await payerOrder(c);
    const wechat = wechatOf(gateways);
    if (order.method !== "wechat" || !wechat || !order.prepay_id) {
      throw new NotFoundError("JSAPI payment");
    }
    if (order.state !== "pending") return c.redirect(`${BASE}/orders/${order.order_no}`, 303);
    return render(c, "topup/wechat_pay", {
      order,
      params: JSON.stringify(wechat.jsapiParams(order.prepay_id)),
      resultPath: `${BASE}/orders/${order.order_no}`,
      scripts: ["topup.js"],
    }, { title: "微信支付", tab: null });
  });

  app.get(`${BASE}/orders/:orderNo/sandbox`, async (c) => {
    const order = await payerOrder(c);
    const sandbox = sandboxOf(gateways);
    const payment = sandbox && order.method === "sandbox"
      ? await sandbox.payment(order.order_no)
      : null;
    if (!payment) throw new NotFoundError("sandbox payment");
    return render(c, "topup/sandbox", {
      order,
      payment,
      base: `${BASE}/orders/${order.order_no}`,
      title: "测试支付",
    }, { title: "测试支付", tab: null });
  });

  app.post(`${BASE}/orders/:orderNo/sandbox/confirm`, async (c) => {
    const order = await payerOrder(c);
    const sandbox = sandboxOf(gateways);
    if (!sandbox || order.method !== "sandbox") throw new NotFoundError("sandbox payment");
    if (order.state === "pending" && order.expires_at > new Date()) {
      await sandbox.confirm(order.order_no);
    }
    return c.redirect(`${BASE}/orders/${order.order_no}`, 303);
  });

  app.post(`${BASE}/orders/:orderNo/sandbox/cancel`, async (c) => {
    const order = await payerOrder(c);
    if (order.method !== "sandbox") throw new NotFoundError("sandbox payment");
    await cancelOrder(deps, gateways, order);
    return c.redirect(`${BASE}/orders/${order.order_no}`, 303);
  });

  // ---- The student: 请家人代充 (their link to share).
  const showLink = async (c: Context<AppEnv>, notice = "") => {
    const card = await findBoundCard(db, c.get("accountId")!);
    const token = card && card.status !== "cancelled"
      ? await proxyLinkOf(db, card.cardAccountId)
      : null;
    return render(c, "topup/proxy_link", {
      card,
      link: token ? `${config.baseUrl}${BASE}/c/${token}` : null,
      linkPath: token ? `${BASE}/c/${token}` : null,
      masked: card
        ? { name: maskName(card.name), number: maskStudentNumber(card.studentNumber) }
        : null,
      plimits,
      notice,
      scripts: ["topup.js"],
    }, { title: "请家人代充" });
  };

  app.get("/wallet/recharge/proxy", requireStudent, (c) => showLink(c));

  app.post("/wallet/recharge/proxy/renew", requireStudent, async (c) => {
    const card = await findBoundCard(db, c.get("accountId")!);
    if (!card || card.status === "cancelled") return showLink(c);
    await renewProxyLink(db, card.cardAccountId);
    return showLink(c, "已生成新链接，旧链接已失效");
  });

  return app;
}

/** The masked recipient of an order, for its payer's result page. */
async function maskedOf(db: Db, order: TopupOrder) {
  const card = await findCardAccount(db, order.card_account_id);
  return {
    maskedName: card ? maskName(card.name) : "",
    maskedStudentNumber: card ? maskStudentNumber(card.studentNumber) : "",
  };
}

/** The page that says a 代充 link or its WeChat sign-in cannot go on, and why. */
function proxyGone(c: Context<AppEnv>, problem: string, status: 400 | 502) {
  return render(c, "topup/proxy_gone", { problem }, { status, title: "代充", tab: null });
}

/** Remembers the payer's WeChat openid for 30 days in a cookie sealed with the app's secret. */
async function rememberPayerOpenid(
  c: Context<AppEnv>,
  config: Config,
  openid: string,
): Promise<void> {
  const body = `${openid}.${Math.floor(Date.now() / 1000) + 30 * 86400}`;
  setCookie(c, PAYER_WX_COOKIE, `${body}.${await payerWxMac(config, body)}`, {
    httpOnly: true,
    sameSite: "Lax",
    secure: config.secureCookies,
    path: BASE,
    maxAge: 30 * 86400,
  });
}
