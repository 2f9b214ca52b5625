/** Top-up orders as staff read them: flagged ones, a period's paid ones, recent ones. */
import type { Db } from "../platform/database.ts";
import type { TopupOrder } from "./orders.ts";
import type { TopupMethod, TopupState } from "./tables.ts";
import "./tables.ts";

/** Orders flagged for finance, newest first. */
export async function listFlaggedOrders(db: Db, limit = 200): Promise<TopupOrder[]> {
  return await db.selectFrom("topup_orders").selectAll().where("flagged", "=", true)
    .orderBy("id", "desc").limit(limit).execute();
}

/** Paid orders of a period (by paid time), for reconciliation with a gateway's statement. */
export async function paidOrdersBetween(
  db: Db,
  method: TopupMethod,
  from: Date,
  to: Date,
): Promise<TopupOrder[]> {
  return await db.selectFrom("topup_orders").selectAll()
    .where("method", "=", method).where("state", "=", "paid")
    .where("paid_at", ">=", from).where("paid_at", "<", to).orderBy("paid_at").execute();
}

/** Orders by their numbers (reconciliation looks up what the statement names). */
export async function ordersByNumbers(db: Db, orderNos: string[]): Promise<TopupOrder[]> {
  if (orderNos.length === 0) return [];
  return await db.selectFrom("topup_orders").selectAll().where("order_no", "in", orderNos)
    .execute();
}

/** Recent orders for the staff list, newest first, optionally only one card account's. */
export async function listOrders(
  db: Db,
  filter: { cardAccountId?: number; orderNo?: string; limit?: number } = {},
) {
  let q = db.selectFrom("topup_orders").selectAll();
  if (filter.cardAccountId) q = q.where("card_account_id", "=", filter.cardAccountId);
  if (filter.orderNo) q = q.where("order_no", "=", filter.orderNo);
  return await q.orderBy("id", "desc").limit(filter.limit ?? 100).execute();
}

/** The filters of 充值订单. */
export interface OrderFilter {
  orderNo?: string;
  /** The card accounts of a 学号 (several schools may share it). */
  cardAccountIds?: number[];
  state?: TopupState;
  /** Created in [from, to). */
  from?: Date;
  to?: Date;
}

/** 充值订单 for finance: a page of the filtered orders (newest first) and how many there are. */
export async function pageOrders(
  db: Db,
  filter: OrderFilter,
  page: (total: number) => { offset: number; perPage: number },
): Promise<{ rows: TopupOrder[]; total: number; page: { offset: number; perPage: number } }> {
  let q = db.selectFrom("topup_orders");
  if (filter.orderNo) q = q.where("order_no", "=", filter.orderNo);
  if (filter.cardAccountIds) {
    if (filter.cardAccountIds.length === 0) {
      return { rows: [], total: 0, page: { offset: 0, perPage: 0 } };
    }
    q = q.where("card_account_id", "in", filter.cardAccountIds);
  }
  if (filter.state) q = q.where("state", "=", filter.state);
  if (filter.from) q = q.where("created_at", ">=", filter.from);
  if (filter.to) q = q.where("created_at", "<", filter.to);
  const { n } = await q.select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow();
  const total = Number(n);
  const p = page(total);
  const rows = await q.selectAll().orderBy("id", "desc").limit(p.perPage).offset(p.offset)
    .execute();
  return { rows, total, page: p };
}
