/**
 * 微信登录 pages: the silent OAuth round trip from the 服务号 menu (/login/wechat and its callback),
 * and 我的 → 微信登录 (the binding, its endings, 解除微信绑定).
 */
import { type Context, Hono } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { zValidator } from "@hono/zod-validator";
import { z } from "zod";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { DomainError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { loadWechatMpConfig, oauthAuthorizeUrl } from "../platform/wechat_mp.ts";
import { render } from "../platform/views.ts";
import { clientIp, requireStudent, safeNext, signIn } from "../security/mod.ts";
import {
  accountForOpenid,
  checkState,
  openidFromCode,
  pendingCookie,
  pendingOpenid,
  startState,
  WECHAT_SIGNIN_TTL_S,
} from "./wechat_signin.ts";
import {
  bindWechatLogin,
  setWechatLoginEndings,
  unbindWechatLogin,
  wechatLoginOf,
} from "./wechat_login.ts";

const STATE_COOKIE = "yxt_wx_state";
const PENDING_COOKIE = "yxt_wx_pending";
/** Set when this browser went through the OAuth: /login does not send it round again. */
const TRIED_COOKIE = "yxt_wx_tried";

/** The WeChat in-app browser says so in its user agent. */
export function insideWechat(c: Context<AppEnv>): boolean {
  return /MicroMessenger/i.test(c.req.header("user-agent") ?? "");
}

function cookieOptions(config: Config, path: string) {
  return {
    httpOnly: true,
    sameSite: "Lax" as const,
    secure: config.secureCookies,
    path,
    maxAge: WECHAT_SIGNIN_TTL_S,
  };
}

/**
 * For GET /login: where to send a visitor first (the silent OAuth), or null. Only inside WeChat,
 * with the 服务号 configured, and once per round trip (a failed one leaves the password form).
 */
export function wechatSignInFirst(c: Context<AppEnv>, config: Config, next: string): string | null {
  if (!loadWechatMpConfig(config.env) || !insideWechat(c)) return null;
  if (getCookie(c, TRIED_COOKIE) || c.req.query("wechat") === "0") return null;
  return `/login/wechat${next ? `?next=${encodeURIComponent(next)}` : ""}`;
}

/** The openid the OAuth left for the password sign-in to bind, or null. */
export function pendingWechat(c: Context<AppEnv>, config: Config): Promise<string | null> {
  return pendingOpenid(config, getCookie(c, PENDING_COOKIE));
}

/** After a password sign-in inside WeChat: binds the pending openid if the student kept it on. */
export async function bindPendingWechat(
  c: Context<AppEnv>,
  deps: { db: Db; config: Config },
  accountId: number,
  wanted: boolean,
): Promise<void> {
  const openid = await pendingWechat(c, deps.config);
  if (!openid) return;
  deleteCookie(c, PENDING_COOKIE, { path: "/" });
  if (wanted) await bindWechatLogin(deps.db, accountId, openid);
}

const callbackQuery = z.object({
  code: z.string().max(200).optional().default(""),
  state: z.string().max(200).optional().default(""),
}).catch({ code: "", state: "" });

const endingsForm = z.object({
  on_password_change: z.string().max(5).optional(),
  on_loss: z.string().max(5).optional(),
});

/** The routes (mount at "/"). */
export function wechatLoginRoutes(
  deps: { db: Db; config: Config },
  options: { fetcher?: typeof fetch } = {},
): Hono<AppEnv> {
  const { db, config } = deps;
  const mp = loadWechatMpConfig(config.env);
  const app = new Hono<AppEnv>();

  const refused = (c: Context<AppEnv>, notice: string, status: number, next = "") =>
    render(c, "account/login", {
      errors: {},
      input: { next },
      notice: "",
      problem: notice,
      wechat: null,
    }, { status, title: "登录" });

  app.get("/login/wechat", async (c) => {
    const next = safeNext(c.req.query("next"));
    if (!mp) return c.redirect(`/login?next=${encodeURIComponent(next)}`, 303);
    if (c.get("accountId") !== null) return c.redirect(next, 303);
    const { state, cookie } = await startState(config, next);
    setCookie(c, STATE_COOKIE, cookie, cookieOptions(config, "/login/wechat"));
    setCookie(c, TRIED_COOKIE, "1", cookieOptions(config, "/"));
    return c.redirect(
      oauthAuthorizeUrl(mp, `${config.baseUrl}/login/wechat/callback`, state),
      302,
    );
  });

  app.get("/login/wechat/callback", zValidator("query", callbackQuery), async (c) => {
    const { code, state } = c.req.valid("query");
    const checked = await checkState(config, getCookie(c, STATE_COOKIE), state);
    // The state is single use: whatever happens next, this round trip is over.
    deleteCookie(c, STATE_COOKIE, { path: "/login/wechat" });
    if (!mp || !checked) {
      return refused(c, "微信授权已过期，请从服务号菜单重新进入，或使用手机号登录", 400);
    }
    const next = safeNext(checked.next);
    let openid: string;
    try {
      openid = await openidFromCode({ db, mp, fetcher: options.fetcher }, {
        code,
        ip: clientIp(c),
      });
    } catch (err) {
      if (!(err instanceof DomainError)) throw err;
      return refused(c, err.userMessage, err.status === 429 ? 429 : 400, next);
    }
    const accountId = await accountForOpenid(db, openid);
    if (accountId !== null) {
      await signIn(c, deps, "student", accountId);
      return c.redirect(next, 303);
    }
    setCookie(c, PENDING_COOKIE, await pendingCookie(config, openid), cookieOptions(config, "/"));
    return c.redirect(`/login?next=${encodeURIComponent(next)}`, 303);
  });

  // ---- 我的 → 微信登录
  const show = async (c: Context<AppEnv>, notice = "") => {
    const login = await wechatLoginOf(db, c.get("accountId")!);
    return render(c, "account/wechat", {
      login,
      notice: notice || (c.req.query("done") === "1" ? "已保存" : ""),
      available: mp !== null,
    }, { title: "微信登录" });
  };

  app.get("/me/wechat", requireStudent, (c) => show(c));

  app.post("/me/wechat", requireStudent, zValidator("form", endingsForm), async (c) => {
    const form = c.req.valid("form");
    const saved = await setWechatLoginEndings(db, c.get("accountId")!, {
      onPasswordChange: form.on_password_change === "1",
      onLoss: form.on_loss === "1",
    });
    if (!saved) return show(c, "未绑定微信，无需设置");
    return c.redirect("/me/wechat?done=1", 303);
  });

  app.post("/me/wechat/unbind", requireStudent, async (c) => {
    await unbindWechatLogin(db, c.get("accountId")!);
    return c.redirect("/me/wechat?unbound=1", 303);
  });

  return app;
}
