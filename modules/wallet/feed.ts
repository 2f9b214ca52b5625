/**
 * The card side of every committed transfer, in commit-safe order (platform/feed.ts), for a
 * reader outside the wallet (the notifier's 消费提醒, 充值到账, 退款到账, 余额不足). The
 * transfer's `xid` column is filled by its default in the statement that moves the money: no
 * money path names it, and nothing is read on the hot path.
 */
import type { Db } from "../platform/database.ts";
import { committedAfter, type FeedPosition } from "../platform/feed.ts";
import { type HistoryRow, withMerchants } from "./history.ts";

/** A committed card transfer with its feed position. */
export interface FeedTransfer extends HistoryRow {
  cardAccountId: number;
  /** The transaction that wrote it (xid8 as text). */
  xid: string;
}

/** Card transfers committed after `from` and below `horizon`, oldest first, at most `limit`. */
export async function cardTransfersAfter(
  db: Db,
  from: FeedPosition,
  horizon: string,
  limit: number,
): Promise<FeedTransfer[]> {
  const rows = await db.selectFrom("ledger_transfers")
    .select([
      "id",
      "kind",
      "channel",
      "amount",
      "card_delta",
      "balance_after",
      "merchant_id",
      "terminal_id",
      "created_at",
      "details",
      "card_account_id",
    ])
    .select((eb) => eb.cast<string>("xid", "text").as("xid"))
    .where(committedAfter(from, horizon))
    .where("card_account_id", "is not", null)
    .orderBy("xid").orderBy("id").limit(limit).execute();
  const described = await withMerchants(db, rows);
  return described.map((r, i) => ({
    ...r,
    cardAccountId: rows[i].card_account_id!,
    xid: rows[i].xid,
  }));
}
