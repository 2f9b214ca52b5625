/**
 * Who may read `/metrics`: a client on this host (loopback, not forwarded by a proxy), or anyone
 * sending `Authorization: Bearer $METRICS_TOKEN` when that is set. A request carrying forwarding
 * headers came through a reverse proxy, which connects from loopback for clients anywhere: it
 * needs the token like any other remote client.
 */
import type { Context, MiddlewareHandler } from "hono";
import { sha256Hex, timingSafeEqual } from "./crypto.ts";
import type { AppEnv } from "./app_env.ts";

const FORWARDING_HEADERS = [
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-real-ip",
  "via",
];

/** Shortest METRICS_TOKEN accepted: it is the whole proof of a remote scraper. */
export const METRICS_TOKEN_MIN_LENGTH = 24;

/** The peer's IP address as Deno.serve gives it, or null in-process without one. */
function socketAddress(c: Context<AppEnv>): string | null {
  // deno-lint-ignore no-explicit-any
  const addr = (c.env as any)?.remoteAddr;
  return typeof addr?.hostname === "string" ? addr.hostname : null;
}

function isLoopback(ip: string | null): boolean {
  if (!ip) return false;
  const v4 = ip.startsWith("::ffff:") ? ip.slice(7) : ip;
  return v4.startsWith("127.") || ip === "::1";
}

/** True when the request comes from this host directly, not through a proxy. */
export function isLocalRequest(c: Context<AppEnv>): boolean {
  return isLoopback(socketAddress(c)) && !FORWARDING_HEADERS.some((h) => c.req.header(h));
}

/** Guards the metrics route; refusals are plain text for scrapers (401 with a challenge, or 403). */
export function metricsAccess(token: string | null): MiddlewareHandler<AppEnv> {
  if (token !== null && token.length < METRICS_TOKEN_MIN_LENGTH) {
    throw new Error(
      `Cannot start: METRICS_TOKEN must be at least ${METRICS_TOKEN_MIN_LENGTH} characters`,
    );
  }
  const expected = token === null ? null : sha256Hex(token);
  return async (c, next) => {
    const auth = c.req.header("authorization") ?? "";
    const bearer = /^Bearer (\S+)$/i.exec(auth)?.[1];
    // Hashes compared: equal lengths, so the comparison time tells nothing about the token.
    if (expected && bearer && timingSafeEqual(await sha256Hex(bearer), await expected)) {
      return await next();
    }
    if (isLocalRequest(c)) return await next();
    c.header("cache-control", "no-store");
    if (!expected) return c.text("metrics are served to this host only\n", 403);
    return c.text("metrics need the bearer token\n", 401, {
      "www-authenticate": 'Bearer realm="metrics"',
    });
  };
}
