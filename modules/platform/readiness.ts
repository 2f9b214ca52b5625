/**
 * `/readyz`, for load balancers: should this instance be sent traffic now? Unlike `/healthz` (the
 * process answers and reaches its database: for monitoring), it also says no while migrations
 * this code needs are not applied yet, and from the moment the process begins to shut down.
 */
import type { Context } from "hono";
import { sql } from "kysely";
import type { Db } from "./database.ts";
import { pendingMigrations } from "./migrate.ts";

let draining = false;

/** From now on /readyz answers 503 "draining" (SIGTERM received: finish, take nothing new). */
export function markDraining(on = true): void {
  draining = on;
}

const CHECK_TIMEOUT_MS = 2000;

function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** The /readyz handler for `db`. */
export function readinessCheck(db: Db): (c: Context) => Promise<Response> {
  // Once every migration of this code is applied it stays so (newer code may add more: this
  // code does not need them, see docs/OPERATIONS.md on upgrades).
  let migrated = false;
  return async (c) => {
    if (draining) return c.json({ status: "draining" }, 503);
    try {
      await within(sql`select 1`.execute(db), CHECK_TIMEOUT_MS);
    } catch {
      return c.json({ status: "not ready", database: "unreachable" }, 503);
    }
    if (!migrated) {
      try {
        const pending = await within(pendingMigrations(db), CHECK_TIMEOUT_MS);
        if (pending.length) {
          return c.json({ status: "not ready", migrations: "pending", pending }, 503);
        }
        migrated = true;
      } catch {
        return c.json({ status: "not ready", database: "unreachable" }, 503);
      }
    }
    return c.json({ status: "ready" });
  };
}
