import { type Kysely, sql } from "kysely";

/**
 * 电量不足 / 水量不足: the card office sets, per room size (床位数), the credit below which a
 * room's residents are told (in 度 or 吨, kept in thousandths); a room's reading that crosses below
 * it writes one alert (the notifier reads alerts in commit-safe order by `xid`, modules/platform/
 * feed.ts); `low_since` on the room's meter row keeps it to one alert until the credit is back up.
 */
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createTable("billing_low_credit_thresholds")
    .addColumn(
      "utility",
      "text",
      (c) => c.notNull().check(sql`utility in ('electricity', 'water')`),
    )
    .addColumn("capacity", "integer", (c) => c.notNull().check(sql`capacity between 1 and 20`))
    .addColumn("milli_units", "bigint", (c) => c.notNull().check(sql`milli_units > 0`))
    .addColumn("updated_by_staff_id", "bigint")
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("billing_low_credit_thresholds_pk", ["utility", "capacity"])
    .execute();
  await db.schema.alterTable("billing_room_meters").addColumn("low_since", "timestamptz").execute();
  await db.schema.createTable("billing_low_credit_alerts")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("room_id", "bigint", (c) => c.notNull().references("billing_rooms.id"))
    .addColumn("utility", "text", (c) => c.notNull())
    .addColumn("balance", "bigint", (c) => c.notNull())
    .addColumn("remaining_milli", "bigint", (c) => c.notNull())
    .addColumn("threshold_milli", "bigint", (c) => c.notNull())
    .addColumn("at", "timestamptz", (c) => c.notNull())
    .addColumn("xid", sql`xid8`, (c) => c.notNull().defaultTo(sql`pg_current_xact_id()`))
    .execute();
  await sql`create index billing_low_credit_alerts_xid on billing_low_credit_alerts (xid, id)`
    .execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("billing_low_credit_alerts").execute();
  await db.schema.alterTable("billing_room_meters").dropColumn("low_since").execute();
  await db.schema.dropTable("billing_low_credit_thresholds").execute();
}
