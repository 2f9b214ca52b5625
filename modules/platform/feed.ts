/**
 * Committed feeds: reading an append-only table's new rows exactly once, in commit-safe order.
 *
 * A row's id is drawn when it is inserted, not when its transaction commits, so a reader that
 * remembers "the last id I saw" skips an id that commits after a higher one. Instead the table
 * keeps each row's transaction id (`xid xid8 default pg_current_xact_id()`, indexed on
 * `(xid, id)`), and a reader takes only rows below the horizon, `pg_snapshot_xmin` of the current
 * snapshot: every transaction below it has ended, so no row can still appear there. Its position
 * is the last (xid, id) it took; the next read starts after it. A row whose transaction rolled
 * back never exists; one that committed is read once, as long as the reader moves its position
 * in the transaction that acts on what it read.
 *
 * Transaction ids are PostgreSQL's own 64-bit ones (no wrap-around); PGlite has them too. A long
 * writing transaction holds the horizon back (its rows, and everything after it, wait for it);
 * read-only ones do not.
 */
import { type RawBuilder, sql } from "kysely";
import type { Db } from "./database.ts";

/** Where a feed's reader stands: the last row it took. */
export interface FeedPosition {
  /** The row's transaction id (xid8 as text). */
  xid: string;
  id: number;
}

/** Before every row. */
export const FEED_START: FeedPosition = { xid: "0", id: 0 };

/** The horizon now: every transaction with an id below it has ended (xid8 as text). */
export async function feedHorizon(db: Db): Promise<string> {
  const { rows } = await sql<{ xmin: string }>`
    select pg_snapshot_xmin(pg_current_snapshot())::text as xmin`.execute(db);
  return rows[0].xmin;
}

/**
 * Waits until the horizon has passed every transaction that began before this call (at most
 * `timeoutMs`): a reader run before then rightly sees nothing of the latest rows yet. The horizon
 * is the server's (transaction ids are per cluster), so another database's open transaction on the
 * same server holds it back too.
 */
export async function horizonPassesNow(db: Db, timeoutMs = 30_000): Promise<void> {
  const { rows } = await sql<{ xid: string }>`select pg_current_xact_id()::text as xid`.execute(db);
  const mark = BigInt(rows[0].xid);
  const deadline = Date.now() + timeoutMs;
  while (BigInt(await feedHorizon(db)) <= mark) {
    if (Date.now() > deadline) {
      throw new Error(`the feeds' horizon stayed behind for ${timeoutMs} ms`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * The rows of a feed after `from` and below `horizon`, as a condition on the owner's `xid` and
 * `id` columns (order the rows by both and move the position to the last one taken).
 */
export function committedAfter(
  from: FeedPosition,
  horizon: string,
  columns: { xid: string; id: string } = { xid: "xid", id: "id" },
): RawBuilder<boolean> {
  const xid = sql.ref(columns.xid);
  const id = sql.ref(columns.id);
  return sql<boolean>`(${xid}, ${id}) > (${from.xid}::xid8, ${from.id}::bigint)
    and ${xid} < ${horizon}::xid8`;
}
