import { type Kysely, sql } from "kysely";

/**
 * The wallet ledger: double-entry accounts and append-only transfers, holds for shower
 * pre-authorisations, and payment codes.
 *
 * Card wallets keep `balance` (money that is there, >= held) and `overdraft` (what offline
 * uploads took beyond it) as two non-negative columns, so the signed balance is
 * `balance - overdraft`. Online operations only ever subtract from `balance`, whose CHECK
 * (balance >= held >= 0) the database enforces; only the offline path adds to `overdraft`.
 * Other accounts (merchants, gateways, revenue) keep zero in these columns: their totals are sums
 * of transfers, so no canteen payment updates a shared row.
 */
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createTable("ledger_accounts")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("kind", "text", (c) =>
      c.notNull().check(
        sql`kind in ('card', 'merchant', 'gateway', 'utility', 'adjustment', 'void')`,
      ))
    .addColumn("card_account_id", "bigint", (c) => c.unique())
    .addColumn("merchant_id", "bigint", (c) => c.unique().references("merchants.id"))
    .addColumn("code", "text", (c) => c.unique())
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("balance", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("held", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("overdraft", "bigint", (c) => c.notNull().defaultTo(0))
    // Student settings (付款设置): per-payment and daily limits for card and code payments.
    .addColumn("pay_limit", "bigint", (c) => c.notNull().defaultTo(20000))
    .addColumn("daily_limit", "bigint", (c) => c.notNull().defaultTo(50000))
    .addColumn("code_frozen", "boolean", (c) => c.notNull().defaultTo(false))
    // Spending of the current China-time day, for the daily limit without summing transfers.
    .addColumn("spent_day", "date")
    .addColumn("spent_today", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addCheckConstraint("ledger_accounts_held_covered", sql`held >= 0 and balance >= held`)
    .addCheckConstraint("ledger_accounts_overdraft", sql`overdraft >= 0`)
    .addCheckConstraint(
      "ledger_accounts_only_cards_hold_money",
      sql`kind = 'card' or (balance = 0 and held = 0 and overdraft = 0)`,
    )
    .addCheckConstraint(
      "ledger_accounts_owner",
      sql`(kind = 'card') = (card_account_id is not null) and
          (kind = 'merchant') = (merchant_id is not null) and
          (kind in ('card', 'merchant') or code is not null)`,
    )
    .addCheckConstraint("ledger_accounts_limits", sql`pay_limit > 0 and daily_limit > 0`)
    .execute();

  await db.insertInto("ledger_accounts").values([
    { kind: "adjustment", code: "adjustment", name: "调账" },
    { kind: "utility", code: "utility:electricity", name: "电费收入" },
    { kind: "utility", code: "utility:water", name: "冷水收入" },
    { kind: "void", code: "void", name: "撤销占位" },
  ]).execute();

  // Transfers are immutable. No foreign keys to ledger_accounts on purpose: a foreign-key check
  // takes a KEY SHARE lock on the referenced row, which would turn every merchant account into a
  // hot row again. The verifier checks that every transfer's accounts exist.
  await db.schema.createTable("ledger_transfers")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("reference", "text", (c) => c.notNull().unique())
    .addColumn("kind", "text", (c) =>
      c.notNull().check(
        sql`kind in ('purchase', 'shower', 'electricity', 'water', 'topup', 'refund',
          'utility_refund', 'reversal', 'adjustment', 'void')`,
      ))
    .addColumn("channel", "text", (c) => c.check(sql`channel in ('card', 'qr', 'offline')`))
    // Money leaves the debit account and arrives in the credit account.
    .addColumn("debit_account_id", "bigint", (c) => c.notNull())
    .addColumn("credit_account_id", "bigint", (c) => c.notNull())
    .addColumn("amount", "bigint", (c) => c.notNull())
    // The card side, for history: which card account, its signed change and balance after.
    .addColumn("card_account_id", "bigint")
    .addColumn("card_delta", "bigint")
    .addColumn("balance_after", "bigint")
    .addColumn("merchant_id", "bigint")
    .addColumn("terminal_id", "bigint")
    .addColumn("related_transfer_id", "bigint")
    .addColumn("payment_code", "text")
    .addColumn("details", "jsonb")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addCheckConstraint(
      "ledger_transfers_amount",
      sql`(kind = 'void' and amount = 0) or (kind <> 'void' and amount > 0)`,
    )
    .addCheckConstraint(
      "ledger_transfers_two_sides",
      sql`kind = 'void' or debit_account_id <> credit_account_id`,
    )
    .execute();
  await db.schema.createIndex("ledger_transfers_card").on("ledger_transfers")
    .columns(["card_account_id", "id desc"]).where(sql.ref("card_account_id"), "is not", null)
    .execute();
  await db.schema.createIndex("ledger_transfers_related").on("ledger_transfers")
    .column("related_transfer_id").where(sql.ref("related_transfer_id"), "is not", null).execute();
  // Exactly one redemption per payment code, whatever the concurrency: the database decides.
  await sql`create unique index ledger_transfers_payment_code on ledger_transfers (payment_code)
    where payment_code is not null`.execute(db);
  // One reversal and one utility refund per original transfer.
  await sql`create unique index ledger_transfers_one_reversal on ledger_transfers
    (related_transfer_id) where kind = 'reversal'`.execute(db);
  await sql`create unique index ledger_transfers_one_utility_refund on ledger_transfers
    (related_transfer_id) where kind = 'utility_refund'`.execute(db);

  await db.schema.createTable("ledger_holds")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("reference", "text", (c) => c.notNull().unique())
    .addColumn("card_account_id", "bigint", (c) => c.notNull())
    .addColumn("merchant_id", "bigint", (c) => c.notNull().references("merchants.id"))
    .addColumn("terminal_id", "bigint")
    .addColumn("requested", "bigint", (c) => c.notNull())
    .addColumn("amount", "bigint", (c) => c.notNull().check(sql`amount > 0`))
    .addColumn("state", "text", (c) =>
      c.notNull().defaultTo("active").check(
        sql`state in ('active', 'settled', 'released', 'expired')`,
      ))
    .addColumn("expires_at", "timestamptz", (c) => c.notNull())
    .addColumn("settle_reference", "text", (c) => c.unique())
    .addColumn("settle_transfer_id", "bigint")
    .addColumn("charged", "bigint")
    .addColumn("uncollected", "bigint")
    .addColumn("closed_at", "timestamptz")
    .addColumn("close_reason", "text")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`create index ledger_holds_active on ledger_holds (expires_at) where state = 'active'`
    .execute(db);
  await db.schema.createIndex("ledger_holds_card").on("ledger_holds").column("card_account_id")
    .execute();

  await db.schema.createTable("payment_codes")
    .addColumn("code", "text", (c) => c.primaryKey())
    .addColumn("card_account_id", "bigint", (c) => c.notNull())
    .addColumn("expires_at", "timestamptz", (c) => c.notNull())
    .addColumn("superseded_at", "timestamptz")
    .addColumn("used_at", "timestamptz")
    .addColumn("transfer_id", "bigint")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex("payment_codes_card").on("payment_codes")
    .columns(["card_account_id", "created_at"]).execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("payment_codes").execute();
  await db.schema.dropTable("ledger_holds").execute();
  await db.schema.dropTable("ledger_transfers").execute();
  await db.schema.dropTable("ledger_accounts").execute();
}
