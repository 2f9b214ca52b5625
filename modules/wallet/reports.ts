import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { chinaDaySql } from "../platform/china_time.ts";
import { merchantsByIds } from "../merchant/mod.ts";
import type { Channel, TransferKind } from "./tables.ts";

/** A transfer as finance sees it (for the refund console and exports). */
export interface TransferView {
  id: number;
  reference: string;
  kind: TransferKind;
  channel: Channel | null;
  amount: number;
  cardAccountId: number | null;
  balanceAfter: number | null;
  merchantId: number | null;
  merchantName: string | null;
  terminalId: number | null;
  relatedTransferId: number | null;
  /** Refunds and reversals already given back (purchases and showers only). */
  returned: number;
  details: unknown;
  createdAt: Date;
}

/** Transfers, newest first, filtered; `returned` tells finance what is left to refund. */
export async function listTransfers(
  db: Db,
  filter: {
    id?: number;
    reference?: string;
    cardAccountId?: number;
    merchantId?: number;
    terminalId?: number;
    kinds?: TransferKind[];
    from?: Date;
    to?: Date;
    beforeId?: number;
    limit?: number;
  } = {},
): Promise<TransferView[]> {
  let q = db.selectFrom("ledger_transfers as t")
    .select([
      "t.id",
      "t.reference",
      "t.kind",
      "t.channel",
      "t.amount",
      "t.card_account_id",
      "t.balance_after",
      "t.merchant_id",
      "t.terminal_id",
      "t.related_transfer_id",
      "t.details",
      "t.created_at",
      sql<number>`(select coalesce(sum(r.amount), 0) from ledger_transfers r
        where r.related_transfer_id = t.id and r.kind in ('refund', 'reversal'))`.as("returned"),
    ])
    .where("t.kind", "<>", "void");
  if (filter.id) q = q.where("t.id", "=", filter.id);
  if (filter.reference) q = q.where("t.reference", "=", filter.reference);
  if (filter.cardAccountId) q = q.where("t.card_account_id", "=", filter.cardAccountId);
  if (filter.merchantId) q = q.where("t.merchant_id", "=", filter.merchantId);
  if (filter.terminalId) q = q.where("t.terminal_id", "=", filter.terminalId);
  if (filter.kinds?.length) q = q.where("t.kind", "in", filter.kinds);
  if (filter.from) q = q.where("t.created_at", ">=", filter.from);
  if (filter.to) q = q.where("t.created_at", "<", filter.to);
  if (filter.beforeId) q = q.where("t.id", "<", filter.beforeId);
  const rows = await q.orderBy("t.id", "desc").limit(Math.min(filter.limit ?? 100, 1000)).execute();
  const merchants = await merchantsByIds(db, rows.map((r) => r.merchant_id));
  return rows.map((r) => ({
    id: r.id,
    reference: r.reference,
    kind: r.kind,
    channel: r.channel,
    amount: r.amount,
    cardAccountId: r.card_account_id,
    balanceAfter: r.balance_after,
    merchantId: r.merchant_id,
    merchantName: r.merchant_id === null ? null : merchants.get(r.merchant_id)?.name ?? null,
    terminalId: r.terminal_id,
    relatedTransferId: r.related_transfer_id,
    returned: Number(r.returned),
    details: r.details,
    createdAt: r.created_at,
  }));
}

/** One row of the daily merchant report: China-time day, merchant, terminal. */
export interface DailyMerchantRow {
  day: string;
  merchantId: number;
  merchantName: string;
  terminalId: number | null;
  /** Purchases and showers: count and amount. */
  count: number;
  amount: number;
  /** Refunds and reversals given back on that day. */
  returned: number;
}

/**
 * Per China-time day, merchant and terminal: how many payments and how much, and what was
 * given back. Computed from transfers (merchant accounts are never updated per payment).
 */
export async function dailyMerchantTotals(
  db: Db,
  range: { from: Date; to: Date; merchantId?: number },
): Promise<DailyMerchantRow[]> {
  const merchantFilter = range.merchantId ? sql`and t.merchant_id = ${range.merchantId}` : sql``;
  const r = await sql<{
    day: string;
    merchant_id: number;
    terminal_id: number | null;
    count: number;
    amount: number;
    returned: number;
  }>`
    select ${chinaDaySql("t.created_at")} as day, t.merchant_id, t.terminal_id,
      count(*) filter (where t.kind in ('purchase', 'shower'))::int as count,
      coalesce(sum(t.amount) filter (where t.kind in ('purchase', 'shower')), 0) as amount,
      coalesce(sum(t.amount) filter (where t.kind in ('refund', 'reversal')), 0) as returned
    from ledger_transfers t
    where t.created_at >= ${range.from} and t.created_at < ${range.to}
      and t.merchant_id is not null
      and t.kind in ('purchase', 'shower', 'refund', 'reversal') ${merchantFilter}
    group by 1, 2, 3`.execute(db);
  const merchants = await merchantsByIds(db, r.rows.map((x) => x.merchant_id));
  const rows = r.rows.filter((x) => merchants.has(x.merchant_id)).map((x) => ({
    day: x.day,
    merchantId: x.merchant_id,
    merchantName: merchants.get(x.merchant_id)!.name,
    terminalId: x.terminal_id,
    count: Number(x.count),
    amount: Number(x.amount),
    returned: Number(x.returned),
  }));
  // By day, merchant name and terminal (payment codes, without a terminal, first).
  return rows.sort((a, b) =>
    a.day.localeCompare(b.day) || compareText(a.merchantName, b.merchantName) ||
    (a.terminalId ?? -1) - (b.terminalId ?? -1)
  );
}

/** Text order as the database compares it (code points), not the runtime's locale. */
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
