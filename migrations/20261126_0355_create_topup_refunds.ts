import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  // 退回微信: finance pays (part of) a top-up back to where it came from. The card is debited when
  // the row is written; `refund_no` is the gateway's out_refund_no (the same one on every retry,
  // so the gateway pays at most once); `reference` is the one-time token of the form.
  await db.schema.createTable("topup_refunds")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("refund_no", "text", (c) => c.notNull().unique())
    .addColumn("reference", "text", (c) => c.notNull().unique())
    .addColumn("order_id", "bigint", (c) => c.notNull().references("topup_orders.id"))
    .addColumn("amount", "bigint", (c) => c.notNull().check(sql`amount > 0`))
    .addColumn("reason", "text", (c) => c.notNull())
    .addColumn("staff_id", "bigint", (c) => c.notNull().references("staff.id"))
    .addColumn(
      "state",
      "text",
      (c) =>
        c.notNull().defaultTo("processing")
          .check(sql`state in ('processing', 'succeeded', 'failed', 'abnormal')`),
    )
    .addColumn("transfer_id", "bigint", (c) => c.notNull())
    .addColumn("return_transfer_id", "bigint")
    .addColumn("gateway_refund_id", "text")
    .addColumn("gateway_state", "text")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("finished_at", "timestamptz")
    .addColumn("last_checked_at", "timestamptz")
    .execute();
  await db.schema.createIndex("topup_refunds_order").on("topup_refunds").column("order_id")
    .execute();
  await db.schema.createIndex("topup_refunds_processing").on("topup_refunds").column("id")
    .where(sql.ref("state"), "=", "processing").execute();

  // The sandbox gateway's own record of refunds.
  await db.schema.createTable("sandbox_refunds")
    .addColumn("refund_no", "text", (c) => c.primaryKey())
    .addColumn("order_no", "text", (c) => c.notNull())
    .addColumn("amount", "bigint", (c) => c.notNull())
    .addColumn("refund_id", "text", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("sandbox_refunds").execute();
  await db.schema.dropTable("topup_refunds").execute();
}
