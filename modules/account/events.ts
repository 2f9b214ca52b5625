/**
 * A login account's security events (password changed or reset, a WeChat bound for sign-in or
 * released): written in the transaction of the change, read by the notifier in commit-safe order
 * (platform/feed.ts) for security notices, which no setting silences.
 */
import type { Db } from "../platform/database.ts";
import { committedAfter, type FeedPosition } from "../platform/feed.ts";
import type { AccountEventKind } from "./tables.ts";
import "./tables.ts";

/** Records an event inside the caller's transaction (the change and its event commit together). */
export async function recordAccountEvent(
  trx: Db,
  event: {
    accountId: number;
    kind: AccountEventKind;
    actor: "student" | "staff";
    details?: Record<string, unknown>;
  },
): Promise<void> {
  await trx.insertInto("account_events").values({
    account_id: event.accountId,
    kind: event.kind,
    actor: event.actor,
    details: event.details ? JSON.stringify(event.details) : null,
  }).execute();
}

/** A committed account event. */
export interface FeedAccountEvent {
  id: number;
  xid: string;
  accountId: number;
  kind: AccountEventKind;
  actor: "student" | "staff";
  at: Date;
  details: Record<string, unknown> | null;
}

/** Account events committed after `from` and below `horizon`, oldest first, at most `limit`. */
export async function accountEventsAfter(
  db: Db,
  from: FeedPosition,
  horizon: string,
  limit: number,
): Promise<FeedAccountEvent[]> {
  const rows = await db.selectFrom("account_events")
    .select(["id", "account_id", "kind", "actor", "at", "details"])
    .select((eb) => eb.cast<string>("xid", "text").as("xid"))
    .where(committedAfter(from, horizon))
    .orderBy("xid").orderBy("id").limit(limit).execute();
  return rows.map((r) => ({
    id: r.id,
    xid: r.xid,
    accountId: r.account_id,
    kind: r.kind,
    actor: r.actor,
    at: r.at,
    details: (r.details ?? null) as Record<string, unknown> | null,
  }));
}
