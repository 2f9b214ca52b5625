/**
 * What the meter system reports of rooms' remaining credit (with each delivery, and when read
 * every METER_READ_EVERY_S), and 电量不足 / 水量不足: the card office sets, per room size, the credit
 * below which residents are told; a reading that takes a room from at or above it to below writes
 * one alert in the reading's transaction (the notifier reads alerts as a committed feed,
 * platform/feed.ts), and the room is alerted again only after its credit was back up.
 */
import type { Db } from "../platform/database.ts";
import { committedAfter, type FeedPosition } from "../platform/feed.ts";
import { logger } from "../platform/log.ts";
import type { MeterAdapter, MeterReading, MeterRoom } from "./meters.ts";
import { currentTariff, UNIT_LABELS } from "./tariffs.ts";
import type { Utility } from "./tables.ts";
import "./tables.ts";

const log = logger("billing.readings");

/** A threshold of 低余量提醒. */
export interface LowCreditThreshold {
  utility: Utility;
  /** Room size (床位数). */
  capacity: number;
  /** Thousandths of 度 (electricity) or 吨 (water). */
  milliUnits: number;
}

/** Every threshold set, by utility and room size. */
export async function listThresholds(db: Db): Promise<LowCreditThreshold[]> {
  const rows = await db.selectFrom("billing_low_credit_thresholds")
    .select(["utility", "capacity", "milli_units"]).orderBy("utility").orderBy("capacity")
    .execute();
  return rows.map((r) => ({ utility: r.utility, capacity: r.capacity, milliUnits: r.milli_units }));
}

/** Sets (or with `milliUnits` null, removes) a threshold; the change for the audit record. */
export async function setThreshold(
  trx: Db,
  t: { utility: Utility; capacity: number; milliUnits: number | null; staffId: number | null },
): Promise<{ before: number | null; after: number | null }> {
  const before = await trx.selectFrom("billing_low_credit_thresholds").select("milli_units")
    .where("utility", "=", t.utility).where("capacity", "=", t.capacity).executeTakeFirst();
  if (t.milliUnits === null) {
    await trx.deleteFrom("billing_low_credit_thresholds").where("utility", "=", t.utility)
      .where("capacity", "=", t.capacity).execute();
  } else {
    const values = {
      milli_units: t.milliUnits,
      updated_by_staff_id: t.staffId,
      updated_at: new Date(),
    };
    await trx.insertInto("billing_low_credit_thresholds")
      .values({ utility: t.utility, capacity: t.capacity, ...values })
      .onConflict((oc) => oc.columns(["utility", "capacity"]).doUpdateSet(values)).execute();
  }
  return { before: before?.milli_units ?? null, after: t.milliUnits };
}

/** "15.2 度" for thousandths of a unit (to a tenth). */
export function unitsText(milli: number, utility: Utility): string {
  const unit = UNIT_LABELS[utility === "electricity" ? "kwh" : "ton"];
  return `${Number((milli / 1000).toFixed(1))} ${unit}`;
}

/**
 * Keeps the newest reading of a room account (an older one than stored is ignored) and, when it
 * crosses below the room size's threshold, writes the alert; inside the caller's transaction.
 */
export async function recordMeterReading(
  trx: Db,
  roomId: number,
  utility: Utility,
  reading: { balance: number; reportedAt: Date },
): Promise<void> {
  const stored = await trx.insertInto("billing_room_meters").values({
    room_id: roomId,
    utility,
    balance: reading.balance,
    reported_at: reading.reportedAt,
  }).onConflict((oc) =>
    oc.columns(["room_id", "utility"]).doUpdateSet({
      balance: reading.balance,
      reported_at: reading.reportedAt,
    })
      .where("billing_room_meters.reported_at", "<=", reading.reportedAt)
  ).returning("low_since").executeTakeFirst();
  if (!stored) return;
  const threshold = await trx.selectFrom("billing_low_credit_thresholds")
    .innerJoin("billing_rooms", "billing_rooms.capacity", "billing_low_credit_thresholds.capacity")
    .select("billing_low_credit_thresholds.milli_units")
    .where("billing_rooms.id", "=", roomId)
    .where("billing_low_credit_thresholds.utility", "=", utility).executeTakeFirst();
  const tariff = await currentTariff(trx, utility);
  const remaining = Math.floor((reading.balance * 1000) / tariff.fenPerUnit);
  const low = threshold !== undefined && remaining < threshold.milli_units;
  if (low === (stored.low_since !== null)) return;
  await trx.updateTable("billing_room_meters").set({ low_since: low ? reading.reportedAt : null })
    .where("room_id", "=", roomId).where("utility", "=", utility).execute();
  if (!low) return;
  await trx.insertInto("billing_low_credit_alerts").values({
    room_id: roomId,
    utility,
    balance: reading.balance,
    remaining_milli: remaining,
    threshold_milli: threshold!.milli_units,
    at: reading.reportedAt,
  }).execute();
}

/** A committed low-credit alert and the residents it goes to. */
export interface FeedLowCredit {
  id: number;
  xid: string;
  /** "1号楼 305". */
  room: string;
  utility: Utility;
  /** "15.2 度". */
  remaining: string;
  threshold: string;
  at: Date;
  /** Login accounts living in the room now. */
  residentIds: number[];
}

/** Alerts committed after `from` and below `horizon`, oldest first, at most `limit`. */
export async function lowCreditAlertsAfter(
  db: Db,
  from: FeedPosition,
  horizon: string,
  limit: number,
): Promise<FeedLowCredit[]> {
  const rows = await db.selectFrom("billing_low_credit_alerts as a")
    .innerJoin("billing_rooms as r", "r.id", "a.room_id")
    .innerJoin("billing_buildings as b", "b.id", "r.building_id")
    .select([
      "a.id",
      "a.room_id",
      "a.utility",
      "a.remaining_milli",
      "a.threshold_milli",
      "a.at",
      "r.number",
      "b.name as building",
    ])
    .select((eb) => eb.cast<string>("a.xid", "text").as("xid"))
    .where(committedAfter(from, horizon, { xid: "a.xid", id: "a.id" }))
    .orderBy("a.xid").orderBy("a.id").limit(limit).execute();
  const roomIds = [...new Set(rows.map((r) => r.room_id))];
  const residents = roomIds.length
    ? await db.selectFrom("billing_residents").select(["room_id", "account_id"])
      .where("room_id", "in", roomIds).execute()
    : [];
  return rows.map((r) => ({
    id: r.id,
    xid: r.xid,
    room: `${r.building} ${r.number}`,
    utility: r.utility,
    remaining: unitsText(r.remaining_milli, r.utility),
    threshold: unitsText(r.threshold_milli, r.utility),
    at: r.at,
    residentIds: residents.filter((x) => x.room_id === r.room_id).map((x) => x.account_id),
  }));
}

/** Rooms read per request to the meter system. */
const READ_BATCH = 200;

/**
 * Reads the credit of every occupied room's electricity and water accounts from the meter system
 * and records it; returns how many readings were recorded. A failing batch is logged and skipped
 * (the next round reads it again).
 */
export async function readMeters(db: Db, meter: MeterAdapter): Promise<number> {
  if (!meter.readBalances) return 0;
  const rooms = await db.selectFrom("billing_rooms")
    .innerJoin("billing_buildings", "billing_buildings.id", "billing_rooms.building_id")
    .select(["billing_rooms.id", "billing_rooms.number", "billing_buildings.code"])
    .where("billing_rooms.active", "=", true)
    .where((eb) =>
      eb.exists(
        eb.selectFrom("billing_residents").select("account_id")
          .whereRef("billing_residents.room_id", "=", "billing_rooms.id"),
      )
    ).orderBy("billing_rooms.id").execute();
  const accounts: MeterRoom[] = rooms.flatMap((r) =>
    (["electricity", "water"] as const).map((utility) => ({
      roomId: r.id,
      buildingCode: r.code,
      roomNumber: r.number,
      utility,
    }))
  );
  let recorded = 0;
  for (let i = 0; i < accounts.length; i += READ_BATCH) {
    let readings: MeterReading[];
    try {
      readings = await meter.readBalances(accounts.slice(i, i + READ_BATCH));
    } catch (err) {
      log.warn("meter reading failed", { err: (err as Error).message });
      continue;
    }
    for (const r of readings) {
      await db.transaction().execute((trx) => recordMeterReading(trx, r.roomId, r.utility, r));
      recorded++;
    }
  }
  return recorded;
}
