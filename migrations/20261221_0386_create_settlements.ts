import { type Kysely, sql } from "kysely";

/** Transfer and account kinds before this migration (20261220_0385_create_purses's lists). */
const TRANSFER_KINDS = `'purchase', 'shower', 'electricity', 'water', 'topup', 'refund',
  'utility_refund', 'reversal', 'adjustment', 'void', 'cash_out', 'topup_refund',
  'topup_refund_return', 'subsidy', 'subsidy_reversal', 'subsidy_expiry', 'subsidy_return'`;
const ACCOUNT_KINDS = `'card', 'merchant', 'gateway', 'utility', 'adjustment', 'void', 'cash',
  'subsidy'`;

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  // 商户结算: what the school owes a merchant run by an outside operator is its ledger account's
  // balance. A statement covers the merchant's transfers named in its lines (each transfer in one
  // statement at most, so a refund after a statement was approved lands in the next one); paying
  // it moves the payable to the payout clearing account and the management fee to the school's
  // fee income, once (`settlement_payout`, `settlement_fee`).
  await sql`alter table ledger_transfers drop constraint ledger_transfers_kind_check,
    add constraint ledger_transfers_kind_check check (kind in (${sql.raw(TRANSFER_KINDS)},
      'settlement_payout', 'settlement_fee'))`.execute(db);
  await sql`alter table ledger_accounts drop constraint ledger_accounts_kind_check,
    add constraint ledger_accounts_kind_check check (kind in (${sql.raw(ACCOUNT_KINDS)},
      'clearing', 'revenue'))`.execute(db);
  await db.schema.createTable("settlement_statements")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("merchant_id", "bigint", (c) => c.notNull().references("merchants.id"))
    .addColumn(
      "period",
      "text",
      (c) => c.notNull().check(sql`period in ('daily', 'weekly', 'monthly')`),
    )
    // China days as text (YYYY-MM-DD), both inclusive.
    .addColumn(
      "period_start",
      "text",
      (c) => c.notNull().check(sql`period_start ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$'`),
    )
    .addColumn("period_end", "text", (c) => c.notNull().check(sql`period_end >= period_start`))
    /** Transfers made before this instant (the period's end) are in, unless an earlier had them. */
    .addColumn("cutoff", "timestamptz", (c) => c.notNull())
    .addColumn("gross", "bigint", (c) => c.notNull())
    .addColumn("gross_count", "integer", (c) => c.notNull())
    .addColumn("refunds", "bigint", (c) => c.notNull())
    .addColumn("refund_count", "integer", (c) => c.notNull())
    .addColumn("net", "bigint", (c) => c.notNull())
    .addColumn("fee_rate_bp", "integer", (c) => c.notNull())
    .addColumn("fee", "bigint", (c) => c.notNull())
    .addColumn("payable", "bigint", (c) => c.notNull())
    .addColumn(
      "state",
      "text",
      (c) =>
        c.notNull().defaultTo("prepared").check(
          sql`state in ('prepared', 'approved', 'rejected', 'paid')`,
        ),
    )
    .addColumn("prepared_by", "bigint", (c) => c.notNull().references("staff.id"))
    .addColumn("prepared_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("decided_by", "bigint", (c) => c.references("staff.id"))
    .addColumn("decided_at", "timestamptz")
    .addColumn("decision_note", "text")
    .addColumn("paid_by", "bigint", (c) => c.references("staff.id"))
    .addColumn("paid_at", "timestamptz")
    .addColumn("bank_reference", "text")
    .addColumn("payout_transfer_id", "bigint")
    .addColumn("fee_transfer_id", "bigint")
    .addCheckConstraint(
      "settlement_sums",
      sql`net = gross - refunds and payable = net - fee and fee >= 0 and payable >= 0`,
    )
    .addCheckConstraint(
      "settlement_checker",
      sql`state = 'prepared' or (decided_by is not null and decided_by <> prepared_by)`,
    )
    .addCheckConstraint(
      "settlement_paid",
      sql`(state = 'paid') = (paid_at is not null) and
        (state <> 'paid' or payable = 0 or (bank_reference is not null and payout_transfer_id is not null))`,
    )
    .execute();
  // One live statement per merchant and period, whatever the concurrency.
  await sql`create unique index settlement_statements_period on settlement_statements
    (merchant_id, period_start) where state <> 'rejected'`.execute(db);
  await db.schema.createTable("settlement_lines")
    .addColumn("transfer_id", "bigint", (c) => c.primaryKey())
    .addColumn(
      "statement_id",
      "bigint",
      (c) => c.notNull().references("settlement_statements.id").onDelete("cascade"),
    )
    /** What the transfer did to the merchant's account: + a payment, − a refund or reversal. */
    .addColumn("merchant_delta", "bigint", (c) => c.notNull())
    // The transfer as the statement shows it (copied: transfers are immutable).
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn("terminal_id", "bigint")
    .addColumn("created_at", "timestamptz", (c) => c.notNull())
    .execute();
  await db.schema.createIndex("settlement_lines_statement").on("settlement_lines")
    .column("statement_id").execute();
  // A merchant's transfers, for its statements and the verifier's "owed" check.
  await sql`create index ledger_transfers_merchant on ledger_transfers (merchant_id, id)
    where merchant_id is not null`.execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index ledger_transfers_merchant`.execute(db);
  await db.schema.dropTable("settlement_lines").execute();
  await db.schema.dropTable("settlement_statements").execute();
  await sql`delete from ledger_accounts where kind in ('clearing', 'revenue')`.execute(db);
  await sql`alter table ledger_accounts drop constraint ledger_accounts_kind_check,
    add constraint ledger_accounts_kind_check check (kind in (${sql.raw(ACCOUNT_KINDS)}))`
    .execute(db);
  await sql`alter table ledger_transfers drop constraint ledger_transfers_kind_check,
    add constraint ledger_transfers_kind_check check (kind in (${sql.raw(TRANSFER_KINDS)}))`
    .execute(db);
}
