import { Hono } from "hono";
import type { Context, MiddlewareHandler } from "hono";
import { compress } from "hono/compress";
import { HTTPException } from "hono/http-exception";
import { sql } from "kysely";
import type { Db } from "./database.ts";
import { DomainError, TooManyAttemptsError } from "./errors.ts";
import { logger } from "./log.ts";
import { httpDuration, httpErrors, httpRequests, renderMetrics } from "./metrics.ts";
import { serveAsset } from "./assets.ts";
import { render } from "./views.ts";
import { readinessCheck } from "./readiness.ts";
import { type BodyLimits, FORM_BODY_LIMIT, limitBodies } from "./body_limit.ts";
import { metricsAccess } from "./metrics_access.ts";
import type { AppEnv } from "./app_env.ts";

export type { AdminNavItem, AppEnv, CurrentStaff } from "./app_env.ts";

const log = logger("http");

/** A stylesheet or a page script: no document of its own, so a CSP or framing rule means nothing. */
const SUBRESOURCE = /^(text\/css|(text|application)\/javascript)\b/;

/**
 * Sets the security headers on every response: our own scripts only, no framing. Stylesheets and
 * page scripts get only nosniff (the policy that governs them is their page's; the bytes count on
 * a phone's cold load). The service worker's script keeps the policy: it is its worker's own.
 */
const securityHeaders: MiddlewareHandler<AppEnv> = async (c, next) => {
  await next();
  const h = c.res.headers;
  h.set("x-content-type-options", "nosniff");
  if (SUBRESOURCE.test(h.get("content-type") ?? "") && c.req.path !== "/sw.js") return;
  h.set(
    "content-security-policy",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
      "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
  );
  h.set("x-frame-options", "DENY");
  h.set("referrer-policy", "same-origin");
  if (!h.has("cache-control")) h.set("cache-control", "no-store");
};

/** Request id, a structured log line and metrics for every request. */
const observe: MiddlewareHandler<AppEnv> = async (c, next) => {
  const start = performance.now();
  const requestId = c.req.header("x-request-id")?.slice(0, 64) || crypto.randomUUID();
  c.set("requestId", requestId);
  await next();
  const seconds = (performance.now() - start) / 1000;
  const route = c.req.routePath || "unmatched";
  const status = c.res.status;
  httpRequests.inc({ method: c.req.method, route, status: String(status) });
  httpDuration.observe({ route }, seconds);
  if (status >= 500) httpErrors.inc({ route });
  if (!c.req.path.startsWith("/static/")) {
    log.info("request", {
      id: requestId,
      method: c.req.method,
      path: c.req.path,
      route,
      status,
      ms: Math.round(seconds * 10000) / 10,
    });
  }
};

/** Answers a failed request: a Chinese message in a page, or a fragment for htmx. */
function renderError(c: Context<AppEnv>, status: number, message: string): Response {
  const isAdmin = c.req.path.startsWith("/admin");
  return render(c, "error", { message, status }, {
    status,
    title: "出错了",
    layout: isAdmin ? "admin/layout" : "layout",
  });
}

export interface BaseAppOptions {
  db: Db;
  /** Body limits of every route; without them every body is limited as a form. */
  bodyLimits?: BodyLimits;
  /** `METRICS_TOKEN`: a bearer token that opens `/metrics` to other hosts than this one. */
  metricsToken?: string | null;
  /** Mark every page 演示环境 (demo mode, demo data or the sandbox gateway). */
  demoMark?: boolean;
}

/**
 * The application shell: observation, security headers, compression, static assets, health and
 * metrics, error pages. Modules' routes are mounted on it by main.ts.
 */
export function createBaseApp(options: BaseAppOptions): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.use("*", observe);
  app.use("*", securityHeaders);
  app.use("*", async (c, next) => {
    c.set("sessionId", null);
    c.set("accountId", null);
    c.set("staff", null);
    c.set("staffSessionId", null);
    c.set("staffId", null);
    c.set("csrf", "");
    c.set("adminNav", []);
    c.set("demo", options.demoMark ?? false);
    await next();
  });
  // Before anything reads a body (the CSRF check included).
  app.use(
    "*",
    limitBodies(
      options.bodyLimits ??
        { forms: FORM_BODY_LIMIT, uploads: { paths: [], maxSize: FORM_BODY_LIMIT } },
    ),
  );
  app.use("*", compress({ threshold: 512 }));

  app.get("/static/:path{.+}", (c) => {
    const res = serveAsset(c.req.param("path"), c.req.header("accept-encoding"));
    return res ?? c.text("Not found", 404);
  });

  // Browsers ask for it on the first load of any page.
  app.get("/favicon.ico", (c) => {
    const res = serveAsset("favicon.ico", c.req.header("accept-encoding"));
    return res ?? c.text("Not found", 404);
  });

  app.get("/healthz", async (c) => {
    try {
      await sql`select 1`.execute(options.db);
      return c.json({ status: "ok", database: "reachable" });
    } catch (err) {
      log.error("health check failed", { err: (err as Error).message });
      return c.json({ status: "error", database: "unreachable" }, 503);
    }
  });

  // For load balancers: also no while migrations are pending or the process is shutting down.
  app.get("/readyz", readinessCheck(options.db));

  app.get("/metrics", metricsAccess(options.metricsToken ?? null), (c) => {
    return c.text(renderMetrics(), 200, { "content-type": "text/plain; version=0.0.4" });
  });

  app.onError((err, c) => {
    if (err instanceof DomainError) {
      if (err instanceof TooManyAttemptsError) c.header("retry-after", String(err.retryAfter));
      return renderError(c, err.status, err.userMessage);
    }
    if (err instanceof HTTPException) {
      const status = err.status;
      const message = status === 413
        ? "提交的内容过大"
        : status === 400
        ? "请求格式不正确"
        : "请求无法处理";
      return renderError(c, status, message);
    }
    log.error("unhandled error", {
      id: c.get("requestId"),
      path: c.req.path,
      err: (err as Error)?.stack ?? String(err),
    });
    return renderError(c, 500, "系统繁忙，请稍后再试");
  });

  app.notFound((c) => renderError(c, 404, "页面不存在"));
  return app;
}
