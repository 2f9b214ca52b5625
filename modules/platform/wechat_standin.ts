/**
 * A stand-in for the WeChat 服务号 API on loopback, for tests, the e2e run and the soak. It speaks
 * the real wire format (platform/wechat_mp.ts): `/cgi-bin/token`, `/cgi-bin/message/template/
 * send`, the OAuth page `/connect/oauth2/authorize` (it answers at once with a redirect, as the
 * silent snsapi_base does inside WeChat) and `/sns/oauth2/access_token`. It records every template
 * message it accepted and can be told to fail as WeChat does: 40001 (the token no longer good),
 * 43004 (the user does not follow the 服务号), 45009 (rate limit), timeouts (no answer), bad
 * codes (40029), used codes (40163), a wrong secret (40125), a busy system (-1).
 */

/** A template message as the stand-in received it. */
export interface StandInMessage {
  touser: string;
  template_id: string;
  url?: string;
  data: Record<string, { value: string }>;
  client_msg_id?: string;
  msgid: number;
}

/** What a test tells the stand-in to do. */
export interface StandInControl {
  /** Template ids it knows (others: 40037). Empty: any. */
  templates: Set<string>;
  /** Openids that do not follow the 服务号 (43004). */
  unsubscribed: Set<string>;
  /** The next n sends answer 45009. */
  rateLimited: number;
  /** The next n sends never answer (the caller times out); what they carried is not recorded. */
  hang: number;
  /** The next n sends are taken (recorded, shown to the user) but their answer is lost. */
  lostReplies: number;
  /** The next n sends answer -1 (system busy). */
  busy: number;
  /** The next n token requests answer 40125 (wrong secret). */
  tokenRefusals: number;
  /** Who is "in WeChat" when the browser comes to the OAuth page: their openid. */
  oauthUser: string | null;
  /** The next n code exchanges answer -1 (busy); `oauthHang` never answer. */
  oauthBusy: number;
  oauthHang: number;
}

/** The running stand-in. */
export interface WechatStandIn {
  url: string;
  appId: string;
  appSecret: string;
  /** Environment settings that point the app at it. */
  env: Record<string, string>;
  control: StandInControl;
  /** Accepted template messages, in order. */
  messages: StandInMessage[];
  /** Every request's path and outcome ("send 0", "send 40001", "token", "oauth 40163", …). */
  log: string[];
  /** Access tokens handed out so far. */
  tokensIssued(): number;
  /** Makes every token handed out so far invalid (the next call answers 40001). */
  expireTokens(): void;
  /** A code WeChat would give `openid` (for tests that skip the browser redirect). */
  issueCode(openid: string): string;
  /** Resolves when `n` messages in all have been accepted. */
  waitForMessages(n: number): Promise<void>;
  close(): Promise<void>;
}

const APP_ID = "wx2421b1c4370ec43b";
const APP_SECRET = "standin-app-secret-0123456789abcd";

/** Starts the stand-in on a free loopback port. */
export function startWechatStandIn(): WechatStandIn {
  const control: StandInControl = {
    templates: new Set(),
    unsubscribed: new Set(),
    rateLimited: 0,
    hang: 0,
    lostReplies: 0,
    busy: 0,
    tokenRefusals: 0,
    oauthUser: null,
    oauthBusy: 0,
    oauthHang: 0,
  };
  const messages: StandInMessage[] = [];
  const log: string[] = [];
  const valid = new Set<string>();
  let issued = 0;
  let msgid = 1_000_000;
  const codes = new Map<string, { openid: string; used: boolean; at: number }>();
  const sent = new Map<string, number>();
  const hanging: Array<() => void> = [];
  let waiters: Array<{ n: number; resolve: () => void }> = [];
  const ac = new AbortController();

  const issueCode = (openid: string) => {
    const code = crypto.randomUUID().replaceAll("-", "");
    codes.set(code, { openid, used: false, at: Date.now() });
    return code;
  };
  const err = (errcode: number, errmsg: string) => Response.json({ errcode, errmsg });
  const hang = () =>
    new Promise<Response>((resolve) => {
      // Answered only when the stand-in closes; the caller gives up long before.
      hanging.push(() => resolve(err(-1, "system error")));
    });

  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: ac.signal,
    onListen: () => {},
  }, async (req) => {
    const url = new URL(req.url);
    const q = url.searchParams;
    if (url.pathname === "/cgi-bin/token") {
      if (q.get("grant_type") !== "client_credential" || q.get("appid") !== APP_ID) {
        log.push("token 40013");
        return err(40013, "invalid appid");
      }
      if (q.get("secret") !== APP_SECRET || control.tokenRefusals > 0) {
        if (control.tokenRefusals > 0) control.tokenRefusals--;
        log.push("token 40125");
        return err(40125, "invalid appsecret");
      }
      const token = `TOKEN_${++issued}_${crypto.randomUUID().slice(0, 8)}`;
      valid.add(token);
      log.push("token");
      return Response.json({ access_token: token, expires_in: 7200 });
    }
    if (url.pathname === "/cgi-bin/message/template/send" && req.method === "POST") {
      const body = await req.text();
      if (control.hang > 0) {
        control.hang--;
        log.push("send timeout");
        return await hang();
      }
      if (!valid.has(q.get("access_token") ?? "")) {
        log.push("send 40001");
        return err(40001, "invalid credential, access_token is invalid or not latest");
      }
      let m: Omit<StandInMessage, "msgid">;
      try {
        m = JSON.parse(body);
      } catch {
        log.push("send 47001");
        return err(47001, "data format error");
      }
      if (typeof m.touser !== "string" || !/^o[A-Za-z0-9_-]{5,63}$/.test(m.touser)) {
        log.push("send 40003");
        return err(40003, "invalid openid");
      }
      if (
        typeof m.template_id !== "string" ||
        (control.templates.size > 0 && !control.templates.has(m.template_id))
      ) {
        log.push("send 40037");
        return err(40037, "invalid template_id");
      }
      if (
        !m.data || typeof m.data !== "object" ||
        Object.values(m.data).some((v) => typeof v?.value !== "string")
      ) {
        log.push("send 47001");
        return err(47001, "data format error");
      }
      if (control.busy > 0) {
        control.busy--;
        log.push("send -1");
        return err(-1, "system error");
      }
      if (control.rateLimited > 0) {
        control.rateLimited--;
        log.push("send 45009");
        return err(45009, "reach max api daily quota limit");
      }
      if (control.unsubscribed.has(m.touser)) {
        log.push("send 43004");
        return err(43004, "require subscribe");
      }
      // client_msg_id: one message per openid and id (WeChat keeps them ten minutes).
      const dedupe = m.client_msg_id ? `${m.touser}:${m.client_msg_id}` : null;
      const known = dedupe ? sent.get(dedupe) : undefined;
      if (known !== undefined) {
        log.push("send 0 duplicate");
        return Response.json({ errcode: 0, errmsg: "ok", msgid: known });
      }
      const record = { ...m, msgid: ++msgid };
      messages.push(record);
      if (dedupe) sent.set(dedupe, record.msgid);
      waiters = waiters.filter((w) => {
        if (messages.length >= w.n) w.resolve();
        return messages.length < w.n;
      });
      if (control.lostReplies > 0) {
        control.lostReplies--;
        log.push("send 0 reply lost");
        return await hang();
      }
      log.push("send 0");
      return Response.json({ errcode: 0, errmsg: "ok", msgid: record.msgid });
    }
    if (url.pathname === "/connect/oauth2/authorize") {
      const redirect = q.get("redirect_uri");
      if (q.get("appid") !== APP_ID || !redirect || q.get("scope") !== "snsapi_base") {
        log.push("authorize refused");
        return new Response("redirect_uri 参数错误", { status: 400 });
      }
      const back = new URL(redirect);
      if (control.oauthUser) back.searchParams.set("code", issueCode(control.oauthUser));
      back.searchParams.set("state", q.get("state") ?? "");
      log.push("authorize");
      return new Response(null, { status: 302, headers: { location: back.toString() } });
    }
    if (url.pathname === "/sns/oauth2/access_token") {
      if (control.oauthHang > 0) {
        control.oauthHang--;
        log.push("oauth timeout");
        return await hang();
      }
      if (q.get("appid") !== APP_ID || q.get("secret") !== APP_SECRET) {
        log.push("oauth 40125");
        return err(40125, "invalid appsecret");
      }
      if (q.get("grant_type") !== "authorization_code") {
        log.push("oauth 40002");
        return err(40002, "invalid grant_type");
      }
      if (control.oauthBusy > 0) {
        control.oauthBusy--;
        log.push("oauth -1");
        return err(-1, "system error");
      }
      const c = codes.get(q.get("code") ?? "");
      if (!c || Date.now() - c.at > 300_000) {
        log.push("oauth 40029");
        return err(40029, "invalid code");
      }
      if (c.used) {
        log.push("oauth 40163");
        return err(40163, "code been used");
      }
      c.used = true;
      log.push("oauth");
      return Response.json({
        access_token: `SNS_${crypto.randomUUID().slice(0, 8)}`,
        expires_in: 7200,
        refresh_token: "REFRESH",
        openid: c.openid,
        scope: "snsapi_base",
      });
    }
    log.push(`unknown ${url.pathname}`);
    return err(40066, "invalid url");
  });
  const url = `http://127.0.0.1:${server.addr.port}`;
  return {
    url,
    appId: APP_ID,
    appSecret: APP_SECRET,
    env: {
      WECHAT_APPID: APP_ID,
      WECHAT_APP_SECRET: APP_SECRET,
      WECHAT_MP_API_BASE: url,
      WECHAT_AUTHORIZE_BASE: url,
    },
    control,
    messages,
    log,
    tokensIssued: () => issued,
    expireTokens: () => valid.clear(),
    issueCode,
    waitForMessages(n) {
      if (messages.length >= n) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ n, resolve }));
    },
    async close() {
      for (const h of hanging) h();
      ac.abort();
      await server.finished;
    },
  };
}
