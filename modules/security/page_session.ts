import type { Context } from "hono";
import { type RawBuilder, sql } from "kysely";
import { type Db, PREPARED } from "../platform/database.ts";
import type { AppEnv } from "../platform/http.ts";
import { STUDENT_SESSION, TOUCH_EVERY_MS } from "./sessions.ts";

/**
 * The hottest student pages (余额, the 付款码 refresh) check the session inside their own statement
 * instead of a lookup of their own first: one round trip fewer per request. Such a page registers
 * its method and path here, and its handler calls `studentPageQuery` (not `requireStudent`) before
 * anything else. The session middleware then only hashes the cookie token for it (a POST's CSRF
 * token is still checked: it is bound to that token); nothing is cached, so a session ended
 * anywhere (sign out, a password change or reset, on any server) is refused by the page's very
 * next statement.
 */
const paths = new Set<string>();

/** Requests whose student cookie the page's statement will check (the session's id). */
const pending = new WeakMap<Request, string>();

/** Registers a path whose handler checks the student session with `studentPageQuery`. */
export function checkSessionInPageQuery(path: string, method: "GET" | "POST" = "GET"): void {
  paths.add(`${method} ${path}`);
}

/** For the session middleware: whether this request's session is left to its page's statement. */
export function leavesSessionToPage(c: Context<AppEnv>): boolean {
  return paths.has(`${c.req.method} ${c.req.path}`);
}

/** For the session middleware: the session id (token hash) the page's statement will check. */
export function leaveSessionToPage(c: Context<AppEnv>, sessionId: string): void {
  pending.set(c.req.raw, sessionId);
}

/**
 * Runs a page's query for the signed-in student in one statement with the session check: the
 * session must exist and be within its idle and absolute expiry (as `findSession`), and its use
 * is recorded as `findSession` does (at most once a minute the idle expiry moves to a full idle
 * period from now, never past the absolute one; an expired session row is deleted). `page` gets
 * SQL for the login account id and returns a subquery of at most one row. Returns null when no
 * student is signed in (answer with `sendToSignIn`); otherwise the page's row (its columns all
 * null when its subquery yielded none), with `accountId` and `sessionId` set on the context.
 */
export async function studentPageQuery<T extends Record<string, unknown>>(
  c: Context<AppEnv>,
  db: Db,
  page: (accountId: RawBuilder<number>) => RawBuilder<T>,
): Promise<{ [K in keyof T]: T[K] | null } | null> {
  const signedIn = c.get("accountId");
  if (signedIn !== null) {
    // The middleware already checked the session (a path it did not leave to the page).
    const { rows: [row] } = await sql<{ [K in keyof T]: T[K] | null }>`select p.*
      from (select 1) one left join lateral (${page(sql<number>`${signedIn}`)}) p on true`
      .execute(db);
    return row;
  }
  const id = pending.get(c.req.raw);
  if (!id) return null;
  const now = Date.now();
  const at = new Date(now);
  const touchBefore = new Date(now - TOUCH_EVERY_MS);
  const idleEnd = new Date(now + STUDENT_SESSION.idleSeconds * 1000);
  const { rows: [row] } = await sql<T & { session_subject_id: number }>`${sql.raw(PREPARED)}
    with s as (
      select subject_id from sessions
      where id = ${id} and kind = 'student'
        and idle_expires_at > ${at} and absolute_expires_at > ${at}
    ), touched as (
      update sessions set last_seen_at = ${at},
        idle_expires_at = least(${idleEnd}::timestamptz, absolute_expires_at)
      where id = ${id} and kind = 'student'
        and idle_expires_at > ${at} and absolute_expires_at > ${at}
        and last_seen_at < ${touchBefore}
    ), expired as (
      delete from sessions
      where id = ${id} and kind = 'student'
        and (idle_expires_at <= ${at} or absolute_expires_at <= ${at})
    )
    select s.subject_id as session_subject_id, p.*
    from s left join lateral (${page(sql<number>`s.subject_id`)}) p on true`.execute(db);
  if (!row) return null;
  const { session_subject_id, ...rest } = row;
  c.set("sessionId", id);
  c.set("accountId", session_subject_id);
  return rest as unknown as { [K in keyof T]: T[K] | null };
}
