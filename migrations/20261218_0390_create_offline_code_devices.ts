import { type Kysely, sql } from "kysely";

/**
 * 离线付款码 (docs/OFFLINE_PAYMENT_CODES.md): the phones a card may pay offline from, each step of
 * a device paid at most once, and the card office's offline limits.
 *
 * A device's key is derived from APP_SECRET, its id and its salt; nothing secret is stored. Its
 * handle (7 digits) is unique for all time, so an old code can never name a newer device.
 */
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createTable("offline_code_devices")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("card_account_id", "bigint", (c) => c.notNull().references("card_accounts.id"))
    .addColumn("handle", "text", (c) => c.notNull().unique().check(sql`handle ~ '^[0-9]{7}$'`))
    .addColumn("salt", "text", (c) => c.notNull())
    .addColumn("model", "text", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("seen_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("used_at", "timestamptz")
    .addColumn("revoked_at", "timestamptz")
    .addColumn(
      "revoked_reason",
      "text",
      (c) => c.check(sql`revoked_reason in ('removed', 'frozen', 'replaced')`),
    )
    .execute();
  await sql`create index offline_code_devices_live on offline_code_devices (card_account_id)
    where revoked_at is null`.execute(db);
  await sql`create index offline_code_devices_card on offline_code_devices (card_account_id, created_at)`
    .execute(db);

  // One payment per device and time step: the primary key is the rule, inside the statement
  // that moves the money.
  await db.schema.createTable("offline_code_uses")
    .addColumn("device_id", "bigint", (c) => c.notNull().references("offline_code_devices.id"))
    .addColumn("step", "bigint", (c) => c.notNull())
    .addColumn("card_account_id", "bigint", (c) => c.notNull())
    .addColumn("amount", "bigint", (c) => c.notNull().check(sql`amount > 0`))
    .addColumn("china_day", "date", (c) => c.notNull())
    .addColumn("reference", "text", (c) => c.notNull().unique())
    .addColumn("transfer_id", "bigint", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("offline_code_uses_pkey", ["device_id", "step"])
    .execute();
  await sql`create index offline_code_uses_day on offline_code_uses (card_account_id, china_day)`
    .execute(db);

  // The card office's offline limits: one row.
  await db.schema.createTable("offline_code_limits")
    .addColumn("id", "integer", (c) => c.primaryKey().check(sql`id = 1`))
    .addColumn("pay_limit", "bigint", (c) => c.notNull().check(sql`pay_limit > 0`))
    .addColumn("daily_limit", "bigint", (c) => c.notNull().check(sql`daily_limit > 0`))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("updated_by", "bigint", (c) => c.references("staff.id"))
    .execute();
  await sql`insert into offline_code_limits (id, pay_limit, daily_limit) values (1, 3000, 10000)`
    .execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("offline_code_limits").execute();
  await db.schema.dropTable("offline_code_uses").execute();
  await db.schema.dropTable("offline_code_devices").execute();
}
