import type { Context, MiddlewareHandler } from "hono";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { ForbiddenError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { keyedHash, randomToken, sha256Hex, timingSafeEqual } from "../platform/crypto.ts";
import {
  createSession,
  destroySession,
  findSession,
  type SessionPolicy,
  STAFF_SESSION,
  STUDENT_SESSION,
} from "./sessions.ts";
import { leaveSessionToPage, leavesSessionToPage } from "./page_session.ts";

export const STUDENT_COOKIE = "yxt_sid";
export const STAFF_COOKIE = "yxt_staff";
const ANON_COOKIE = "yxt_anon";

/** What the session middleware needs. */
export interface SecurityDeps {
  db: Db;
  config: Config;
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
const SESSION_TOKEN = /^[A-Za-z0-9_-]{43}$/;

function cookieBase(config: Config, path: string) {
  return { httpOnly: true, sameSite: "Lax" as const, secure: config.secureCookies, path };
}

/** The client's address: the first X-Forwarded-For hop when behind our proxy, else the socket. */
export function clientIp(c: Context<AppEnv>): string {
  const fwd = c.req.header("x-forwarded-for");
  if (fwd && Deno.env.get("TRUST_PROXY") === "1") return fwd.split(",")[0].trim().slice(0, 64);
  // deno-lint-ignore no-explicit-any
  const info = (c.env as any)?.remoteAddr ?? (c.env as any)?.info?.remoteAddr;
  return info?.hostname ?? "local";
}

async function csrfTokenFor(secret: string, basis: string): Promise<string> {
  return (await keyedHash(secret, "csrf", basis)).slice(0, 40);
}

/**
 * Loads the student and staff sessions from their cookies and guards every state-changing
 * request against CSRF: the Origin (when sent) must be ours, and the form field `_csrf` or the
 * header `X-CSRF-Token` must carry the token bound to this browser's session (or, before sign-in,
 * to a random per-browser cookie). Paths in `exempt` (gateway callbacks) skip the token check.
 */
export function sessionMiddleware(
  deps: SecurityDeps,
  options: { exempt?: string[] } = {},
): MiddlewareHandler<AppEnv> {
  const exempt = options.exempt ?? [];
  const baseOrigin = new URL(deps.config.baseUrl).origin;
  return async (c, next) => {
    const isAdmin = c.req.path === "/admin" || c.req.path.startsWith("/admin/");
    let basis: string | undefined;

    const studentToken = getCookie(c, STUDENT_COOKIE);
    if (studentToken && leavesSessionToPage(c) && SESSION_TOKEN.test(studentToken)) {
      // The page checks the session in its own statement (page_session.ts); a dead session is
      // sent to sign in there, before anything is rendered with this CSRF basis.
      leaveSessionToPage(c, await sha256Hex(studentToken));
      basis = `s:${studentToken}`;
    } else if (studentToken) {
      const s = await findSession(deps.db, studentToken, "student", STUDENT_SESSION);
      if (s) {
        c.set("sessionId", s.id);
        c.set("accountId", s.subjectId);
        if (!isAdmin) basis = `s:${studentToken}`;
      }
    }
    if (isAdmin) {
      const staffToken = getCookie(c, STAFF_COOKIE);
      if (staffToken) {
        const s = await findSession(deps.db, staffToken, "staff", STAFF_SESSION);
        if (s) {
          c.set("staffSessionId", s.id);
          c.set("staffId", s.subjectId);
          basis = `t:${staffToken}`;
        }
      }
    }
    if (!basis) {
      let anon = getCookie(c, ANON_COOKIE);
      if (!anon || !/^[A-Za-z0-9_-]{22}$/.test(anon)) {
        anon = randomToken(16);
        setCookie(c, ANON_COOKIE, anon, { ...cookieBase(deps.config, "/"), maxAge: 86400 * 30 });
      }
      basis = `a:${anon}`;
    }
    const expected = await csrfTokenFor(deps.config.appSecret, basis);
    c.set("csrf", expected);

    if (!SAFE_METHODS.has(c.req.method) && !exempt.some((p) => c.req.path.startsWith(p))) {
      const origin = c.req.header("origin");
      if (
        origin && origin !== "null" && origin !== new URL(c.req.url).origin && origin !== baseOrigin
      ) {
        throw new ForbiddenError(
          `Cross-origin ${c.req.method} from ${origin}`,
          "请求来源无效，请刷新页面后重试",
        );
      }
      let sent = c.req.header("x-csrf-token") ?? "";
      if (!sent) {
        const type = c.req.header("content-type") ?? "";
        // Only signed-in staff upload files: an upload body (up to UPLOAD_BODY_LIMIT) is not
        // parsed for a token that cannot be right.
        if (type.startsWith("multipart/form-data") && !basis.startsWith("t:")) {
          throw new ForbiddenError(
            "Multipart form without a staff session",
            "页面已过期，请刷新页面后重试",
          );
        }
        if (
          type.startsWith("application/x-www-form-urlencoded") ||
          type.startsWith("multipart/form-data")
        ) {
          const body = await c.req.parseBody();
          const v = body["_csrf"];
          sent = typeof v === "string" ? v : "";
        }
      }
      if (!timingSafeEqual(sent, expected)) {
        throw new ForbiddenError("CSRF token missing or wrong", "页面已过期，请刷新页面后重试");
      }
    }
    await next();
  };
}

/** Signs a student or staff member in: ends this browser's old session and sets a new cookie. */
export async function signIn(
  c: Context<AppEnv>,
  deps: SecurityDeps,
  kind: "student" | "staff",
  subjectId: number,
): Promise<void> {
  const old = kind === "student" ? c.get("sessionId") : c.get("staffSessionId");
  if (old) await destroySession(deps.db, old);
  const policy: SessionPolicy = kind === "student" ? STUDENT_SESSION : STAFF_SESSION;
  const token = await createSession(deps.db, kind, subjectId, {
    ip: clientIp(c),
    userAgent: c.req.header("user-agent") ?? null,
    policy,
  });
  const name = kind === "student" ? STUDENT_COOKIE : STAFF_COOKIE;
  setCookie(c, name, token, {
    ...cookieBase(deps.config, kind === "student" ? "/" : "/admin"),
    maxAge: policy.absoluteSeconds,
  });
  if (kind === "student") {
    c.set("sessionId", await sha256Hex(token));
    c.set("accountId", subjectId);
  } else {
    c.set("staffSessionId", await sha256Hex(token));
    c.set("staffId", subjectId);
  }
}

const DEVICE_COOKIE = { student: "yxt_known", staff: "yxt_known_staff" } as const;
const DEVICE_TOKEN = /^[A-Za-z0-9_-]{22}$/;

/**
 * This browser's sign-in device token, set in its cookie (kept 90 days) when new. A sign-in that
 * succeeds with it proves the owner uses this browser (throttle.ts `proveSignIn`): strangers'
 * guesses elsewhere then never slow or stop it.
 */
export function signInDevice(
  c: Context<AppEnv>,
  deps: SecurityDeps,
  kind: "student" | "staff",
): string {
  const name = DEVICE_COOKIE[kind];
  const known = getCookie(c, name);
  if (known && DEVICE_TOKEN.test(known)) return known;
  const token = randomToken(16);
  setCookie(c, name, token, {
    ...cookieBase(deps.config, kind === "student" ? "/" : "/admin"),
    maxAge: 86400 * 90,
  });
  return token;
}

/** Signs out: deletes the session row and the cookie. */
export async function signOut(
  c: Context<AppEnv>,
  deps: SecurityDeps,
  kind: "student" | "staff",
): Promise<void> {
  const id = kind === "student" ? c.get("sessionId") : c.get("staffSessionId");
  if (id) await destroySession(deps.db, id);
  deleteCookie(c, kind === "student" ? STUDENT_COOKIE : STAFF_COOKIE, {
    path: kind === "student" ? "/" : "/admin",
  });
  if (kind === "student") {
    c.set("sessionId", null);
    c.set("accountId", null);
  } else {
    c.set("staffSessionId", null);
    c.set("staffId", null);
  }
}

/** Sends a visitor who is not signed in to /login, to be brought back afterwards. */
export function sendToSignIn(c: Context<AppEnv>): Response {
  const back = c.req.method === "GET" ? c.req.path + (new URL(c.req.url).search || "") : "/";
  const target = `/login?next=${encodeURIComponent(back)}`;
  if (c.req.header("hx-request") === "true") {
    return c.body(null, 204, { "hx-redirect": target });
  }
  return c.redirect(target, 303);
}

/** Only for signed-in students; others are sent to /login and brought back afterwards. */
export const requireStudent: MiddlewareHandler<AppEnv> = async (c, next) => {
  if (c.get("accountId") === null) return sendToSignIn(c);
  await next();
};

/** A `next` parameter only ever leads to one of our own paths (no open redirects). */
export function safeNext(next: string | undefined | null, fallback = "/"): string {
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.startsWith("/\\")) {
    return fallback;
  }
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f]/.test(next)) return fallback;
  return next;
}
