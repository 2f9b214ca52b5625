import { sql } from "kysely";
import { chinaDaySql } from "../platform/china_time.ts";
import { writeCsv } from "../platform/csv.ts";
import type { Db } from "../platform/database.ts";
import { fenToYuanText as yuan } from "../platform/money.ts";
import type { Utility } from "./tables.ts";
import "./tables.ts";

/** One China-time day of one utility: money taken, money given back, and what stays. */
export interface RevenueRow {
  day: string;
  utility: Utility;
  purchases: number;
  paid: number;
  refunds: number;
  refunded: number;
  net: number;
}

/**
 * Daily utility revenue between two China-time days (inclusive): payments by the day they were
 * paid, refunds by the day they were refunded.
 */
export async function dailyRevenue(db: Db, from: string, to: string): Promise<RevenueRow[]> {
  const paid = await db.selectFrom("billing_purchases")
    .select([
      chinaDaySql("paid_at").as("day"),
      "utility",
      sql<number>`count(*)`.as("n"),
      sql<number>`coalesce(sum(amount), 0)`.as("total"),
    ])
    .where("paid_at", "is not", null)
    .where(chinaDaySql("paid_at"), ">=", from).where(chinaDaySql("paid_at"), "<=", to)
    .groupBy([chinaDaySql("paid_at"), "utility"]).execute();
  const refunded = await db.selectFrom("billing_purchases")
    .select([
      chinaDaySql("refunded_at").as("day"),
      "utility",
      sql<number>`count(*)`.as("n"),
      sql<number>`coalesce(sum(amount), 0)`.as("total"),
    ])
    .where("refunded_at", "is not", null)
    .where(chinaDaySql("refunded_at"), ">=", from).where(chinaDaySql("refunded_at"), "<=", to)
    .groupBy([chinaDaySql("refunded_at"), "utility"]).execute();
  const rows = new Map<string, RevenueRow>();
  const row = (day: string, utility: Utility) => {
    const key = `${day}|${utility}`;
    let r = rows.get(key);
    if (!r) {
      r = { day, utility, purchases: 0, paid: 0, refunds: 0, refunded: 0, net: 0 };
      rows.set(key, r);
    }
    return r;
  };
  for (const p of paid) {
    const r = row(p.day, p.utility);
    r.purchases = Number(p.n);
    r.paid = Number(p.total);
  }
  for (const p of refunded) {
    const r = row(p.day, p.utility);
    r.refunds = Number(p.n);
    r.refunded = Number(p.total);
  }
  for (const r of rows.values()) r.net = r.paid - r.refunded;
  return [...rows.values()].sort((a, b) =>
    b.day.localeCompare(a.day) || a.utility.localeCompare(b.utility)
  );
}

/** The revenue report as CSV for Excel (amounts in yuan with two decimals; platform/csv.ts). */
export function revenueCsv(rows: RevenueRow[]): string {
  return writeCsv([
    ["日期", "类别", "笔数", "收入(元)", "退款笔数", "退款(元)", "净收入(元)"],
    ...rows.map((r) => [
      r.day,
      r.utility === "electricity" ? "电费" : "冷水",
      r.purchases,
      yuan(r.paid),
      r.refunds,
      yuan(r.refunded),
      yuan(r.net),
    ]),
  ]);
}

/** Each room of a building with its residents count and the last reported meter balances. */
export async function buildingBalances(db: Db, buildingId: number) {
  const rooms = await db.selectFrom("billing_rooms")
    .select(["id", "number", "capacity", "active"])
    .select((eb) =>
      eb.selectFrom("billing_residents").select(sql<number>`count(*)`.as("n"))
        .whereRef("billing_residents.room_id", "=", "billing_rooms.id").as("residents")
    )
    .where("building_id", "=", buildingId)
    .orderBy(sql`length(number)`).orderBy("number").execute();
  const meters = await db.selectFrom("billing_room_meters")
    .innerJoin("billing_rooms", "billing_rooms.id", "billing_room_meters.room_id")
    .select(["billing_room_meters.room_id", "utility", "balance", "reported_at"])
    .where("billing_rooms.building_id", "=", buildingId).execute();
  return rooms.map((r) => {
    const of = (u: Utility) => meters.find((m) => m.room_id === r.id && m.utility === u) ?? null;
    return {
      ...r,
      residents: Number(r.residents ?? 0),
      electricity: of("electricity"),
      water: of("water"),
    };
  });
}

/** Delivery jobs staff should look at: not finished, or finished badly, newest first. */
export async function deliveryQueue(
  db: Db,
  options: { now: Date; stuckAfterMs?: number; limit?: number },
) {
  const stuckBefore = new Date(options.now.getTime() - (options.stuckAfterMs ?? 10 * 60_000));
  const rows = await db.selectFrom("billing_delivery_jobs")
    .innerJoin("billing_purchases", "billing_purchases.id", "billing_delivery_jobs.purchase_id")
    .select([
      "billing_purchases.id",
      "billing_purchases.order_no as orderNo",
      "billing_purchases.room_label as room",
      "billing_purchases.utility",
      "billing_purchases.amount",
      "billing_purchases.payer_name as payerName",
      "billing_purchases.created_at as createdAt",
      "billing_delivery_jobs.state",
      "billing_delivery_jobs.attempts",
      "billing_delivery_jobs.next_attempt_at as nextAttemptAt",
      "billing_delivery_jobs.lease_expires_at as leaseExpiresAt",
      "billing_delivery_jobs.last_error as lastError",
      "billing_delivery_jobs.updated_at as updatedAt",
    ])
    .where((eb) =>
      eb.or([
        eb("billing_delivery_jobs.state", "in", ["paying", "pending", "refunding"]),
        eb.and([
          eb("billing_delivery_jobs.state", "=", "refunded"),
          eb(
            "billing_delivery_jobs.updated_at",
            ">=",
            new Date(options.now.getTime() - 7 * 86400_000),
          ),
        ]),
      ])
    )
    .orderBy("billing_purchases.id", "desc").limit(options.limit ?? 200).execute();
  return rows.map((r) => ({
    ...r,
    stuck: (r.state === "pending" || r.state === "paying" || r.state === "refunding") &&
      r.createdAt.getTime() < stuckBefore.getTime(),
  }));
}

/** The sums of a revenue report's rows. */
export function revenueTotal(
  rows: RevenueRow[],
): { paid: number; refunded: number; net: number } {
  return rows.reduce(
    (a, r) => ({ paid: a.paid + r.paid, refunded: a.refunded + r.refunded, net: a.net + r.net }),
    { paid: 0, refunded: 0, net: 0 },
  );
}
