/**
 * Committed card events in commit-safe order (platform/feed.ts), for the notifier's security
 * notices: 绑定, 解绑, 挂失, 解挂, 补卡, card-password changes and resets. Each event is written in
 * the transaction of the change it records.
 */
import type { Db } from "../platform/database.ts";
import { committedAfter, type FeedPosition } from "../platform/feed.ts";
import "./tables.ts";

/** A committed card event and whom it concerns. */
export interface FeedCardEvent {
  id: number;
  xid: string;
  cardAccountId: number;
  kind: string;
  actor: "student" | "staff" | "import" | "system" | "reader";
  at: Date;
  chipNumber: string | null;
  details: unknown;
  /** The login account it concerns: the event's own (绑定, 解绑), else the card's bound one. */
  accountId: number | null;
}

/** Card events committed after `from` and below `horizon`, oldest first, at most `limit`. */
export async function cardEventsAfter(
  db: Db,
  from: FeedPosition,
  horizon: string,
  limit: number,
): Promise<FeedCardEvent[]> {
  const rows = await db.selectFrom("card_events as e")
    .innerJoin("card_accounts as a", "a.id", "e.card_account_id")
    .select([
      "e.id",
      "e.card_account_id",
      "e.kind",
      "e.actor",
      "e.at",
      "e.chip_number",
      "e.details",
      "e.account_id",
      "a.account_id as holder",
    ])
    .select((eb) => eb.cast<string>("e.xid", "text").as("xid"))
    .where(committedAfter(from, horizon, { xid: "e.xid", id: "e.id" }))
    .orderBy("e.xid").orderBy("e.id").limit(limit).execute();
  return rows.map((r) => ({
    id: r.id,
    xid: r.xid,
    cardAccountId: r.card_account_id,
    kind: r.kind,
    actor: r.actor,
    at: r.at,
    chipNumber: r.chip_number,
    details: r.details,
    accountId: r.account_id ?? r.holder,
  }));
}

/** The login account each of these card accounts is bound to (unbound ones are left out). */
export async function accountsOfCards(
  db: Db,
  cardAccountIds: number[],
): Promise<Map<number, number>> {
  const ids = [...new Set(cardAccountIds)];
  if (ids.length === 0) return new Map();
  const rows = await db.selectFrom("card_accounts").select(["id", "account_id"])
    .where("id", "in", ids).where("account_id", "is not", null).execute();
  return new Map(rows.map((r) => [r.id, r.account_id!]));
}
