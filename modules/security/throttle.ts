import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { TooManyAttemptsError } from "../platform/errors.ts";
import "./tables.ts";

/** How many events a key may have in a window, and how long it stays locked after that. */
export interface ThrottleRule {
  limit: number;
  windowSeconds: number;
  /** Lock time once the limit is reached; defaults to the rest of the window. */
  lockSeconds?: number;
}

/** Seconds until `key` may try again, or 0 when it is not locked. */
export async function lockedFor(db: Db, key: string): Promise<number> {
  const row = await db.selectFrom("throttles").select("locked_until").where("key", "=", key)
    .executeTakeFirst();
  if (!row?.locked_until) return 0;
  const ms = row.locked_until.getTime() - Date.now();
  return ms > 0 ? Math.ceil(ms / 1000) : 0;
}

/** Throws TooManyAttemptsError (with the wait in its message) while `key` is locked. */
export async function assertNotLocked(db: Db, key: string, userMessage?: (wait: number) => string) {
  const wait = await lockedFor(db, key);
  if (wait > 0) throw new TooManyAttemptsError(key, wait, userMessage?.(wait));
}

/**
 * Counts one event (a failure, a send) against `key` atomically. Returns how many remain in the
 * window and, when this event reached the limit, how long the key is now locked.
 */
export async function recordEvent(
  db: Db,
  key: string,
  rule: ThrottleRule,
): Promise<{ count: number; remaining: number; lockedFor: number }> {
  const window = `${rule.windowSeconds} seconds`;
  const lock = `${rule.lockSeconds ?? rule.windowSeconds} seconds`;
  const row = await sql<{ count: number; locked_until: Date | null }>`
    insert into throttles (key, count, window_started_at, locked_until)
    values (${key}, 1, now(), case when 1 >= ${rule.limit}::int then now() + ${lock}::interval end)
    on conflict (key) do update set
      count = case when throttles.window_started_at < now() - ${window}::interval
                     and (throttles.locked_until is null or throttles.locked_until < now())
                   then 1 else throttles.count + 1 end,
      window_started_at = case when throttles.window_started_at < now() - ${window}::interval
                     and (throttles.locked_until is null or throttles.locked_until < now())
                   then now() else throttles.window_started_at end,
      locked_until = case
        when (case when throttles.window_started_at < now() - ${window}::interval
                     and (throttles.locked_until is null or throttles.locked_until < now())
                   then 1 else throttles.count + 1 end) >= ${rule.limit}::int
          then greatest(coalesce(throttles.locked_until, now()), now() + ${lock}::interval)
        else throttles.locked_until end
    returning count, locked_until`.execute(db);
  const r = row.rows[0];
  const locked = r.locked_until
    ? Math.max(0, Math.ceil((r.locked_until.getTime() - Date.now()) / 1000))
    : 0;
  return { count: r.count, remaining: Math.max(0, rule.limit - r.count), lockedFor: locked };
}

/** Forgets the events of `key` (after a success, or when staff unlock it). */
export async function clearThrottle(db: Db, key: string): Promise<void> {
  await db.deleteFrom("throttles").where("key", "=", key).execute();
}
