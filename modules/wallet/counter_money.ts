/**
 * A card's money as the card office's counter screen shows it: the balance (the wallet's own
 * `getBalance`, all purses) and each purse (现金, 补助, …), what is held and by whom, the last
 * transactions with the purses that paid them, and every transaction a page at a time for the
 * staff list. Reads only.
 */
import type { Db } from "../platform/database.ts";
import { type Paging, paging } from "../platform/listing.ts";
import { merchantsByIds } from "../merchant/mod.ts";
import { type Balance, getBalance } from "./ledger.ts";
import { activeHolds } from "./holds.ts";
import { type HistoryRow, KIND_LABELS, listTransactions, withMerchants } from "./history.ts";
import { type PurseLine, purseLines, splitsOf, type TransferSplit } from "./purses.ts";
import type { TransferKind } from "./tables.ts";
import "./tables.ts";

/** The counter screen's money panel of one card. */
export interface CounterMoney {
  balance: Balance;
  /** Each purse: cash first, then those with money (补助 with when it ends). */
  purses: PurseLine[];
  /** Shower pre-authorisations in progress, with the merchant that holds each. */
  holds: Array<{ id: number; amount: number; merchantName: string; createdAt: Date }>;
  /** The last 10 transactions, newest first, with the purses that paid (null: cash only). */
  recent: Array<HistoryRow & { split: TransferSplit | null }>;
  kindLabels: Record<TransferKind, string>;
}

/** The balance, the holds and the last 10 transactions of a card account. */
export async function counterMoney(db: Db, cardAccountId: number): Promise<CounterMoney> {
  const [balance, purses, holds, recent] = await Promise.all([
    getBalance(db, cardAccountId),
    purseLines(db, cardAccountId),
    activeHolds(db, cardAccountId),
    listTransactions(db, cardAccountId, { limit: 10 }),
  ]);
  const [merchants, splits] = await Promise.all([
    merchantsByIds(db, holds.map((h) => h.merchantId)),
    splitsOf(db, recent),
  ]);
  return {
    balance,
    purses,
    holds: holds.map((h) => ({
      id: h.id,
      amount: h.amount,
      merchantName: merchants.get(h.merchantId)?.name ?? `商户 #${h.merchantId}`,
      createdAt: h.createdAt,
    })),
    recent: recent.map((r) => ({ ...r, split: splits.get(r.id) ?? null })),
    kindLabels: KIND_LABELS,
  };
}

/** The filters of a card's transaction list at the counter. */
export interface CardTransferFilter {
  kind?: TransferKind;
  /** China-time bounds, [from, to). */
  from?: Date;
  to?: Date;
}

/**
 * A card's transactions newest first: page `page` of them (the last page when past the end), or
 * every one (`ALL_ROWS`), with how many there are.
 */
export async function cardTransfers(
  db: Db,
  cardAccountId: number,
  filter: CardTransferFilter,
  page: number | Paging | undefined,
): Promise<{ rows: HistoryRow[]; total: number; paging: Paging }> {
  let q = db.selectFrom("ledger_transfers").where("card_account_id", "=", cardAccountId);
  if (filter.kind) q = q.where("kind", "=", filter.kind);
  if (filter.from) q = q.where("created_at", ">=", filter.from);
  if (filter.to) q = q.where("created_at", "<", filter.to);
  const { n } = await q.select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow();
  const total = Number(n);
  const p = typeof page === "object" ? page : paging(page, total);
  const rows = await q.select([
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
  ]).orderBy("id", "desc").limit(p.perPage).offset(p.offset).execute();
  return { rows: await withMerchants(db, rows), total, paging: p };
}
