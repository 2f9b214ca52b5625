import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  // 充值 orders: one row per attempt to top up a card account through a payment gateway.
  // The ledger credit is idempotent on `topup:<order_no>`; the order row records what the
  // gateway told us and whether finance must look at it.
  await db.schema.createTable("topup_orders")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("order_no", "text", (c) => c.notNull().unique())
    .addColumn("account_id", "bigint", (c) => c.notNull().references("accounts.id"))
    .addColumn("card_account_id", "bigint", (c) => c.notNull())
    .addColumn("amount", "bigint", (c) => c.notNull().check(sql`amount > 0`))
    .addColumn("method", "text", (c) => c.notNull().check(sql`method in ('sandbox', 'wechat')`))
    .addColumn(
      "state",
      "text",
      (c) => c.notNull().defaultTo("pending").check(sql`state in ('pending', 'paid', 'closed')`),
    )
    .addColumn("gateway_txn_id", "text")
    .addColumn("prepay_id", "text")
    .addColumn("transfer_id", "bigint")
    .addColumn("expires_at", "timestamptz", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("paid_at", "timestamptz")
    .addColumn("closed_at", "timestamptz")
    .addColumn("last_checked_at", "timestamptz")
    .addColumn("flagged", "boolean", (c) => c.notNull().defaultTo(false))
    .addColumn("flag_reason", "text")
    .addCheckConstraint("topup_paid_has_txn", sql`state <> 'paid' or gateway_txn_id is not null`)
    .execute();
  await db.schema.createIndex("topup_orders_account").on("topup_orders")
    .columns(["account_id", "created_at"]).execute();
  await db.schema.createIndex("topup_orders_card_day").on("topup_orders")
    .columns(["card_account_id", "created_at"]).execute();
  await db.schema.createIndex("topup_orders_pending").on("topup_orders").column("expires_at")
    .where(sql.ref("state"), "=", "pending").execute();
  await db.schema.createIndex("topup_orders_txn").on("topup_orders").column("gateway_txn_id")
    .unique().where(sql.ref("gateway_txn_id"), "is not", null).execute();

  // Every notify a gateway sent us, kept whatever its fate: finance sees the flagged ones.
  await db.schema.createTable("topup_notifies")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("method", "text", (c) => c.notNull())
    .addColumn("order_no", "text")
    .addColumn("received_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("outcome", "text", (c) => c.notNull())
    .addColumn("amount", "bigint")
    .addColumn("expected_amount", "bigint")
    .addColumn("gateway_txn_id", "text")
    .addColumn("detail", "text")
    .addColumn("flagged", "boolean", (c) => c.notNull().defaultTo(false))
    .addColumn("resolved_by", "bigint", (c) => c.references("staff.id"))
    .addColumn("resolved_at", "timestamptz")
    .addColumn("resolution", "text")
    .execute();
  await db.schema.createIndex("topup_notifies_flagged").on("topup_notifies").column("received_at")
    .where(sql.ref("flagged"), "=", true).execute();
  await db.schema.createIndex("topup_notifies_order").on("topup_notifies").column("order_no")
    .execute();

  // WeChat openid of a login account (JSAPI payments need the payer's openid).
  await db.schema.createTable("topup_wechat_payers")
    .addColumn(
      "account_id",
      "bigint",
      (c) => c.primaryKey().references("accounts.id").onDelete("cascade"),
    )
    .addColumn("openid", "text", (c) => c.notNull())
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  // The sandbox gateway's own side: what the "payer" did, and the notifies it still owes us.
  await db.schema.createTable("sandbox_payments")
    .addColumn("order_no", "text", (c) => c.primaryKey())
    .addColumn("amount", "bigint", (c) => c.notNull())
    .addColumn(
      "state",
      "text",
      (c) => c.notNull().defaultTo("NOTPAY").check(sql`state in ('NOTPAY', 'SUCCESS', 'CLOSED')`),
    )
    .addColumn("txn_id", "text", (c) => c.notNull().unique())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("paid_at", "timestamptz")
    .execute();
  await db.schema.createTable("sandbox_notifies")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("order_no", "text", (c) => c.notNull())
    .addColumn("body", "text", (c) => c.notNull())
    .addColumn("tamper", "text")
    .addColumn("due_at", "timestamptz", (c) => c.notNull())
    .addColumn("delivered_at", "timestamptz")
    .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("last_status", "integer")
    .execute();
  await db.schema.createIndex("sandbox_notifies_due").on("sandbox_notifies").column("due_at")
    .where(sql.ref("delivered_at"), "is", null).execute();
  await db.schema.createTable("sandbox_settings")
    .addColumn("id", "integer", (c) => c.primaryKey().check(sql`id = 1`))
    .addColumn("notify_mode", "text", (c) => c.notNull().defaultTo("normal"))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  for (
    const t of [
      "sandbox_settings",
      "sandbox_notifies",
      "sandbox_payments",
      "topup_wechat_payers",
      "topup_notifies",
      "topup_orders",
    ]
  ) {
    await db.schema.dropTable(t).execute();
  }
}
