import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createTable("billing_buildings")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("code", "text", (c) => c.notNull().unique())
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema.createTable("billing_rooms")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("building_id", "bigint", (c) => c.notNull().references("billing_buildings.id"))
    .addColumn("number", "text", (c) => c.notNull())
    .addColumn(
      "capacity",
      "integer",
      (c) => c.notNull().defaultTo(4).check(sql`capacity between 1 and 20`),
    )
    .addColumn("active", "boolean", (c) => c.notNull().defaultTo(true))
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint("billing_rooms_building_number", ["building_id", "number"])
    .execute();

  // One login account lives in at most one room; the card office moves residents.
  await db.schema.createTable("billing_residents")
    .addColumn("account_id", "bigint", (c) => c.primaryKey())
    .addColumn("room_id", "bigint", (c) => c.notNull().references("billing_rooms.id"))
    .addColumn("chosen_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("moved_by_staff_id", "bigint")
    .execute();
  await db.schema.createIndex("billing_residents_room").on("billing_residents").column("room_id")
    .execute();

  // Tariffs are append-only: the row with the highest id of a kind is in force.
  await db.schema.createTable("billing_tariffs")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn(
      "kind",
      "text",
      (c) => c.notNull().check(sql`kind in ('electricity', 'water', 'shower')`),
    )
    .addColumn(
      "unit",
      "text",
      (c) => c.notNull().check(sql`unit in ('kwh', 'ton', 'liter', 'second')`),
    )
    .addColumn("fen_per_unit", "bigint", (c) => c.notNull().check(sql`fen_per_unit > 0`))
    .addColumn("preauth_amount", "bigint", (c) => c.check(sql`preauth_amount > 0`))
    .addColumn("created_by_staff_id", "bigint")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.insertInto("billing_tariffs").values([
    { kind: "electricity", unit: "kwh", fen_per_unit: 55 },
    { kind: "water", unit: "ton", fen_per_unit: 350 },
    { kind: "shower", unit: "liter", fen_per_unit: 3, preauth_amount: 500 },
  ]).execute();

  // What the meter system last told us about a room account.
  await db.schema.createTable("billing_room_meters")
    .addColumn("room_id", "bigint", (c) => c.notNull().references("billing_rooms.id"))
    .addColumn(
      "utility",
      "text",
      (c) => c.notNull().check(sql`utility in ('electricity', 'water')`),
    )
    .addColumn("balance", "bigint", (c) => c.notNull())
    .addColumn("reported_at", "timestamptz", (c) => c.notNull())
    .addPrimaryKeyConstraint("billing_room_meters_pk", ["room_id", "utility"])
    .execute();

  await db.schema.createTable("billing_purchases")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("order_no", "text", (c) => c.notNull().unique())
    .addColumn("account_id", "bigint", (c) => c.notNull())
    .addColumn("form_token", "text", (c) => c.notNull())
    .addColumn("card_account_id", "bigint", (c) => c.notNull())
    .addColumn("payer_name", "text", (c) => c.notNull())
    .addColumn("room_id", "bigint", (c) => c.notNull().references("billing_rooms.id"))
    .addColumn("room_label", "text", (c) => c.notNull())
    .addColumn(
      "utility",
      "text",
      (c) => c.notNull().check(sql`utility in ('electricity', 'water')`),
    )
    .addColumn("amount", "bigint", (c) => c.notNull().check(sql`amount > 0`))
    .addColumn("tariff_id", "bigint", (c) => c.notNull().references("billing_tariffs.id"))
    .addColumn("fen_per_unit", "bigint", (c) => c.notNull())
    .addColumn("milli_units", "bigint", (c) => c.notNull())
    .addColumn(
      "status",
      "text",
      (c) =>
        c.notNull().check(
          sql`status in ('paying', 'declined', 'delivering', 'delivered', 'refunded')`,
        ),
    )
    .addColumn("transfer_id", "bigint")
    .addColumn("refund_transfer_id", "bigint")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("paid_at", "timestamptz")
    .addColumn("delivered_at", "timestamptz")
    .addColumn("refunded_at", "timestamptz")
    .addUniqueConstraint("billing_purchases_form_token", ["account_id", "form_token"])
    .execute();
  await db.schema.createIndex("billing_purchases_room").on("billing_purchases")
    .columns(["room_id", "utility", "id"]).execute();
  await db.schema.createIndex("billing_purchases_account_day").on("billing_purchases")
    .columns(["account_id", "utility", "created_at"]).execute();
  await db.schema.createIndex("billing_purchases_paid_at").on("billing_purchases").column("paid_at")
    .execute();

  // Delivery of one purchase to the meter system; leased by one worker at a time.
  await db.schema.createTable("billing_delivery_jobs")
    .addColumn("purchase_id", "bigint", (c) => c.primaryKey().references("billing_purchases.id"))
    .addColumn(
      "state",
      "text",
      (c) =>
        c.notNull().check(
          sql`state in ('paying', 'pending', 'refunding', 'delivered', 'refunded', 'declined')`,
        ),
    )
    .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("next_attempt_at", "timestamptz", (c) => c.notNull())
    .addColumn("lease_token", "text")
    .addColumn("lease_expires_at", "timestamptz")
    .addColumn("last_error", "text")
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex("billing_delivery_jobs_due").on("billing_delivery_jobs")
    .columns(["state", "next_attempt_at"]).execute();

  // The simulated meter system (METER_ADAPTER=simulated): its own balances, orders and faults.
  await db.schema.createTable("billing_sim_meters")
    .addColumn("room_id", "bigint", (c) => c.notNull())
    .addColumn("utility", "text", (c) => c.notNull())
    .addColumn("balance", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("billing_sim_meters_pk", ["room_id", "utility"])
    .execute();
  await db.schema.createTable("billing_sim_orders")
    .addColumn("order_no", "text", (c) => c.primaryKey())
    .addColumn("room_id", "bigint", (c) => c.notNull())
    .addColumn("utility", "text", (c) => c.notNull())
    .addColumn("amount", "bigint", (c) => c.notNull())
    .addColumn("balance_after", "bigint", (c) => c.notNull())
    .addColumn("applied_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  // scope "all" fails every delivery; "room:<id>" fails one room's.
  await db.schema.createTable("billing_sim_faults")
    .addColumn("scope", "text", (c) => c.primaryKey())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  for (
    const t of [
      "billing_sim_faults",
      "billing_sim_orders",
      "billing_sim_meters",
      "billing_delivery_jobs",
      "billing_purchases",
      "billing_room_meters",
      "billing_tariffs",
      "billing_residents",
      "billing_rooms",
      "billing_buildings",
    ]
  ) {
    await db.schema.dropTable(t).execute();
  }
}
