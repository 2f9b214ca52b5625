import { sql } from "kysely";
import { type Db, PREPARED } from "../platform/database.ts";
import { randomToken, sha256Hex } from "../platform/crypto.ts";
import "./tables.ts";

/** How long a session lives without use, and at most. */
export interface SessionPolicy {
  idleSeconds: number;
  absoluteSeconds: number;
}

/** Students stay signed in on their phone for a week of idleness, 30 days at most. */
export const STUDENT_SESSION: SessionPolicy = {
  idleSeconds: 7 * 86400,
  absoluteSeconds: 30 * 86400,
};
/** Staff sessions are short: 30 minutes idle, one working day at most. */
export const STAFF_SESSION: SessionPolicy = { idleSeconds: 30 * 60, absoluteSeconds: 12 * 3600 };

/** A live session found by its cookie token. */
export interface SessionRecord {
  id: string;
  kind: "student" | "staff";
  subjectId: number;
}

interface SessionRow {
  kind: "student" | "staff";
  subject_id: number;
  last_seen_at: Date;
  idle_expires_at: Date;
  absolute_expires_at: Date;
}

/** Creates a session and returns the token for the cookie (only its hash is stored). */
export async function createSession(
  db: Db,
  kind: "student" | "staff",
  subjectId: number,
  options: { ip?: string | null; userAgent?: string | null; policy: SessionPolicy },
): Promise<string> {
  const token = randomToken(32);
  const now = Date.now();
  await db.insertInto("sessions").values({
    id: await sha256Hex(token),
    kind,
    subject_id: subjectId,
    idle_expires_at: new Date(now + options.policy.idleSeconds * 1000),
    absolute_expires_at: new Date(now + options.policy.absoluteSeconds * 1000),
    ip: options.ip?.slice(0, 64) ?? null,
    user_agent: options.userAgent?.slice(0, 300) ?? null,
  }).execute();
  return token;
}

/** A session's use is written (last seen, idle expiry) at most this often. */
export const TOUCH_EVERY_MS = 60_000;

/**
 * Finds the live session of a cookie token, extending its idle expiry at most once a minute so
 * reading a page is not a write per request.
 */
export async function findSession(
  db: Db,
  token: string,
  kind: "student" | "staff",
  policy: SessionPolicy,
): Promise<SessionRecord | null> {
  if (!/^[A-Za-z0-9_-]{43}$/.test(token)) return null;
  const id = await sha256Hex(token);
  // Every signed-in request runs this: a prepared statement (parsed and planned once).
  const { rows: [row] } = await sql<SessionRow>`${sql.raw(PREPARED)}
    select kind, subject_id, last_seen_at, idle_expires_at, absolute_expires_at from sessions
    where id = ${id} and kind = ${kind}`.execute(db);
  if (!row) return null;
  const now = Date.now();
  if (row.idle_expires_at.getTime() <= now || row.absolute_expires_at.getTime() <= now) {
    await db.deleteFrom("sessions").where("id", "=", id).execute();
    return null;
  }
  if (now - row.last_seen_at.getTime() > TOUCH_EVERY_MS) {
    await db.updateTable("sessions").set({
      last_seen_at: new Date(now),
      idle_expires_at: new Date(
        Math.min(now + policy.idleSeconds * 1000, row.absolute_expires_at.getTime()),
      ),
    }).where("id", "=", id).execute();
  }
  return { id, kind: row.kind, subjectId: row.subject_id };
}

/** Ends one session. */
export async function destroySession(db: Db, id: string): Promise<void> {
  await db.deleteFrom("sessions").where("id", "=", id).execute();
}

/** Ends every session of a subject except `exceptId` (after a password change or reset). */
export async function destroySessionsOf(
  db: Db,
  kind: "student" | "staff",
  subjectId: number,
  exceptId?: string | null,
): Promise<void> {
  let q = db.deleteFrom("sessions").where("kind", "=", kind).where("subject_id", "=", subjectId);
  if (exceptId) q = q.where("id", "<>", exceptId);
  await q.execute();
}

/** Deletes expired sessions; run now and then. */
export async function purgeExpiredSessions(db: Db): Promise<number> {
  const now = new Date();
  const r = await db.deleteFrom("sessions")
    .where((eb) => eb.or([eb("idle_expires_at", "<=", now), eb("absolute_expires_at", "<=", now)]))
    .executeTakeFirst();
  return Number(r.numDeletedRows);
}
