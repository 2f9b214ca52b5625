/**
 * Sign-in from the 服务号 menu without typing: a page opened inside WeChat by someone not signed in
 * goes through the silent snsapi_base OAuth; WeChat brings back a code, exchanged once for the
 * openid of whoever holds the phone. An openid bound to an account (wechat_login.ts) signs that
 * account in; any other is remembered for ten minutes in a signed cookie, and the password
 * sign-in that follows in the same browser binds it if the student leaves 绑定此微信 on.
 *
 * The `state` WeChat carries back is a random nonce also kept in a cookie of this browser (signed,
 * with where to go after): a callback whose state is not this browser's is refused, so nobody can
 * sign a victim in with a code of their own. A code is taken once here (and WeChat refuses a
 * second use too); the exchange is throttled per address.
 */
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { DomainError, TooManyAttemptsError } from "../platform/errors.ts";
import { logger } from "../platform/log.ts";
import {
  checkOauthState,
  isOauthCode,
  OAUTH_STATE_TTL_S,
  oauthState,
  openidForCode,
  type WechatMpConfig,
  WechatMpError,
} from "../platform/wechat_mp.ts";
import { keyedHash, recordEvent, sha256Hex, timingSafeEqual } from "../security/mod.ts";
import { findAccount } from "./repository.ts";
import { accountOfOpenid } from "./wechat_login.ts";

const log = logger("account.wechat");

/** How long an OAuth round trip (and a remembered openid) lasts. */
export const WECHAT_SIGNIN_TTL_S = OAUTH_STATE_TTL_S;

/** Callbacks per client address in ten minutes (each costs a call to WeChat). */
const CALLBACK_IP_RULE = { limit: 30, windowSeconds: 600 };

async function mac(config: Config, purpose: string, text: string): Promise<string> {
  return (await keyedHash(config.appSecret, purpose, text)).slice(0, 32);
}

/** A fresh OAuth state and the cookie that ties it (and `next`) to this browser. */
export function startState(
  config: Config,
  next: string,
  now = Date.now(),
): Promise<{ state: string; cookie: string }> {
  return oauthState(config.appSecret, "wechat-signin", next, now);
}

/** Where to go after the callback, when `state` is the one this browser's cookie holds. */
export function checkState(
  config: Config,
  cookie: string | undefined,
  state: string,
  now = Date.now(),
): Promise<{ next: string } | null> {
  return checkOauthState(config.appSecret, "wechat-signin", cookie, state, now);
}

/**
 * The openid behind a callback's code: refused (with what to tell the student) when the code is
 * malformed, was already brought here, or WeChat will not exchange it.
 */
export async function openidFromCode(
  deps: { db: Db; mp: WechatMpConfig; fetcher?: typeof fetch },
  input: { code: string; ip: string },
): Promise<string> {
  const expired = new DomainError("Bad OAuth code", "微信授权已失效，请从服务号菜单重新进入");
  if (!isOauthCode(input.code)) throw expired;
  const ipKey = `wechat-signin:ip:${input.ip}`;
  const byIp = await recordEvent(deps.db, ipKey, CALLBACK_IP_RULE);
  if (byIp.count > CALLBACK_IP_RULE.limit) {
    throw new TooManyAttemptsError(ipKey, byIp.lockedFor, "操作过于频繁，请稍后再试");
  }
  // Once per code, whatever WeChat would say to a second try.
  const once = await recordEvent(deps.db, `wechat-code:${await sha256Hex(input.code)}`, {
    limit: 1,
    windowSeconds: WECHAT_SIGNIN_TTL_S,
  });
  if (once.count > 1) throw expired;
  try {
    return await openidForCode(deps.mp, input.code, deps.fetcher);
  } catch (err) {
    if (!(err instanceof WechatMpError)) throw err;
    log.warn("wechat sign-in code refused", { errcode: err.errcode, timedOut: err.timedOut });
    if (err.errcode === 40029 || err.errcode === 40163) throw expired;
    throw new DomainError(
      `WeChat OAuth failed: ${err.message}`,
      "微信授权暂时不可用，请使用手机号和登录密码登录",
    );
  }
}

/** The account an openid signs in as: bound, and not waiting for a new password after a reset. */
export async function accountForOpenid(db: Db, openid: string): Promise<number | null> {
  const id = await accountOfOpenid(db, openid);
  if (id === null) return null;
  const account = await findAccount(db, id);
  return account && !account.mustChangePassword ? account.id : null;
}

/** A signed cookie remembering an openid (not yet bound) for the password sign-in to bind. */
export async function pendingCookie(
  config: Config,
  openid: string,
  now = Date.now(),
): Promise<string> {
  const body = `${openid}.${Math.floor(now / 1000) + WECHAT_SIGNIN_TTL_S}`;
  return `${body}.${await mac(config, "wechat-pending", body)}`;
}

/** The openid of a valid, fresh pending cookie, or null. */
export async function pendingOpenid(
  config: Config,
  cookie: string | undefined,
  now = Date.now(),
): Promise<string | null> {
  const m = /^([A-Za-z0-9_-]{6,64})\.(\d{1,12})\.([0-9a-f]{32})$/.exec(cookie ?? "");
  if (!m) return null;
  if (!timingSafeEqual(m[3], await mac(config, "wechat-pending", `${m[1]}.${m[2]}`))) return null;
  return Number(m[2]) * 1000 >= now ? m[1] : null;
}
