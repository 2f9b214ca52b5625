/**
 * The WeChat 服务号 (official account) API, as far as 一信通 uses it: the silent `snsapi_base`
 * OAuth that gives the openid of whoever opened a page inside WeChat (sign-in, the payer of a
 * JSAPI payment), and the `access_token` calls (template messages).
 *
 * Wire facts: the browser is sent to `open.weixin.qq.com/connect/oauth2/authorize?appid=…&
 * redirect_uri=…&response_type=code&scope=snsapi_base&state=…#wechat_redirect` and comes back to
 * redirect_uri with `code` and `state`; `GET api.weixin.qq.com/sns/oauth2/access_token?appid&
 * secret&code&grant_type=authorization_code` gives `{openid, …}` once per code (a code lives five
 * minutes; a second use is errcode 40163, an unknown one 40029). `GET /cgi-bin/token?
 * grant_type=client_credential&appid&secret` gives `{access_token, expires_in}` (7200 s); calls
 * that take it answer errcode 40001 (invalid), 40014 or 42001 (expired) when it is no longer good.
 * Errors come as HTTP 200 with `{errcode, errmsg}`.
 */

import { keyedHash, randomToken, timingSafeEqual, toBase64Url } from "./crypto.ts";

/** Settings of the 服务号: WECHAT_APPID and WECHAT_APP_SECRET (both, or the 服务号 is off). */
export interface WechatMpConfig {
  appId: string;
  appSecret: string;
  /** WECHAT_MP_API_BASE (else WECHAT_OAUTH_API_BASE), default https://api.weixin.qq.com. */
  apiBase: string;
  /** WECHAT_AUTHORIZE_BASE, default https://open.weixin.qq.com. */
  authorizeBase: string;
  /** WECHAT_MP_TIMEOUT_MS: the deadline of one API call (default 5000). */
  timeoutMs: number;
}

/** The 服务号 settings, or null when WECHAT_APPID and WECHAT_APP_SECRET are not both set. */
export function loadWechatMpConfig(env: Record<string, string | undefined>): WechatMpConfig | null {
  if (!env.WECHAT_APPID || !env.WECHAT_APP_SECRET) return null;
  const timeout = Number(env.WECHAT_MP_TIMEOUT_MS ?? "5000");
  return {
    appId: env.WECHAT_APPID,
    appSecret: env.WECHAT_APP_SECRET,
    apiBase: (env.WECHAT_MP_API_BASE || env.WECHAT_OAUTH_API_BASE || "https://api.weixin.qq.com")
      .replace(/\/+$/, ""),
    authorizeBase: (env.WECHAT_AUTHORIZE_BASE || "https://open.weixin.qq.com").replace(/\/+$/, ""),
    timeoutMs: Number.isFinite(timeout) && timeout > 0 ? timeout : 5000,
  };
}

/** What the 服务号 API refused, or could not answer (`errcode` null: unreachable or timed out). */
export class WechatMpError extends Error {
  constructor(message: string, readonly errcode: number | null, readonly timedOut = false) {
    super(message);
    this.name = "WechatMpError";
  }
}

/** Error codes that say the access token is no longer good: fetch a new one and ask again. */
export const TOKEN_ERRORS: ReadonlySet<number> = new Set([40001, 40014, 42001]);

/** Where to send the browser for the silent OAuth (snsapi_base), coming back to `redirectUri`. */
export function oauthAuthorizeUrl(
  config: Pick<WechatMpConfig, "appId" | "authorizeBase">,
  redirectUri: string,
  state: string,
): string {
  const q = new URLSearchParams({
    appid: config.appId,
    redirect_uri: redirectUri,
    response_type: "code",
    scope: "snsapi_base",
    state,
  });
  return `${config.authorizeBase}/connect/oauth2/authorize?${q}#wechat_redirect`;
}

/** A code WeChat can have given (it is checked by WeChat; this only keeps junk off the wire). */
export function isOauthCode(code: string): boolean {
  return /^[A-Za-z0-9_-]{1,128}$/.test(code);
}

/** One GET or POST to the API; the JSON answer, or WechatMpError (errcode ≠ 0, network, timeout). */
export async function wechatMpCall(
  config: Pick<WechatMpConfig, "apiBase" | "timeoutMs">,
  path: string,
  options: { query: Record<string, string>; body?: unknown; fetcher?: typeof fetch },
): Promise<Record<string, unknown>> {
  const url = `${config.apiBase}${path}?${new URLSearchParams(options.query)}`;
  let text: string;
  try {
    const res = await (options.fetcher ?? fetch)(url, {
      method: options.body === undefined ? "GET" : "POST",
      headers: options.body === undefined ? {} : { "content-type": "application/json" },
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: AbortSignal.timeout(config.timeoutMs),
    });
    text = await res.text();
    if (!res.ok) throw new WechatMpError(`WeChat ${path} answered HTTP ${res.status}`, null);
  } catch (err) {
    if (err instanceof WechatMpError) throw err;
    const timedOut = (err as Error).name === "TimeoutError";
    throw new WechatMpError(
      `WeChat ${path} ${timedOut ? "timed out" : "unreachable"}: ${(err as Error).message}`,
      null,
      timedOut,
    );
  }
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text);
  } catch {
    throw new WechatMpError(`WeChat ${path} answered with a body that is not JSON`, null);
  }
  const errcode = typeof json.errcode === "number" ? json.errcode : 0;
  if (errcode !== 0) {
    // errmsg may quote the request (a code, a token): only the number goes into the message.
    throw new WechatMpError(`WeChat ${path} refused: errcode ${errcode}`, errcode);
  }
  return json;
}

/** Exchanges an OAuth code for the openid of the WeChat user who brought it (once per code). */
export async function openidForCode(
  config: WechatMpConfig,
  code: string,
  fetcher?: typeof fetch,
): Promise<string> {
  const json = await wechatMpCall(config, "/sns/oauth2/access_token", {
    query: {
      appid: config.appId,
      secret: config.appSecret,
      code,
      grant_type: "authorization_code",
    },
    fetcher,
  });
  const openid = json.openid;
  if (typeof openid !== "string" || !/^[A-Za-z0-9_-]{6,64}$/.test(openid)) {
    throw new WechatMpError("WeChat OAuth answered without an openid", null);
  }
  return openid;
}

/** A fresh access token and how long it lives, in seconds. */
export async function fetchAccessToken(
  config: WechatMpConfig,
  fetcher?: typeof fetch,
): Promise<{ token: string; expiresIn: number }> {
  const json = await wechatMpCall(config, "/cgi-bin/token", {
    query: { grant_type: "client_credential", appid: config.appId, secret: config.appSecret },
    fetcher,
  });
  if (typeof json.access_token !== "string" || !json.access_token) {
    throw new WechatMpError("WeChat token answer without access_token", null);
  }
  const expiresIn = typeof json.expires_in === "number" ? json.expires_in : 7200;
  return { token: json.access_token, expiresIn };
}

/** How long an OAuth round trip may take (its state cookie lives this long). */
export const OAUTH_STATE_TTL_S = 600;

const enc = new TextEncoder();

function fromBase64Url(s: string): string | null {
  try {
    const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/"));
    return new TextDecoder().decode(Uint8Array.from(bin, (ch) => ch.charCodeAt(0)));
  } catch {
    return null;
  }
}

async function stateMac(secret: string, purpose: string, body: string): Promise<string> {
  return (await keyedHash(secret, `oauth-state:${purpose}`, body)).slice(0, 32);
}

/**
 * A fresh OAuth `state` and the cookie value that ties it to this browser, with where to go after
 * (signed under `secret` for `purpose`; ten minutes). Send the state to WeChat, keep the cookie.
 */
export async function oauthState(
  secret: string,
  purpose: string,
  next: string,
  now = Date.now(),
): Promise<{ state: string; cookie: string }> {
  const state = randomToken(16);
  const body = `${state}.${Math.floor(now / 1000) + OAUTH_STATE_TTL_S}.${
    toBase64Url(enc.encode(next.slice(0, 300)))
  }`;
  return { state, cookie: `${body}.${await stateMac(secret, purpose, body)}` };
}

/**
 * Where to go after an OAuth callback, when `state` is the one this browser's cookie holds and
 * the cookie is ours and fresh; else null (someone else's callback, or a stale one).
 */
export async function checkOauthState(
  secret: string,
  purpose: string,
  cookie: string | undefined,
  state: string,
  now = Date.now(),
): Promise<{ next: string } | null> {
  const parts = (cookie ?? "").split(".");
  if (parts.length !== 4 || !state) return null;
  const [nonce, expires, next64, sig] = parts;
  const body = `${nonce}.${expires}.${next64}`;
  if (!timingSafeEqual(sig, await stateMac(secret, purpose, body))) return null;
  if (!timingSafeEqual(nonce, state) || Number(expires) * 1000 < now) return null;
  const next = fromBase64Url(next64);
  return next === null ? null : { next };
}
