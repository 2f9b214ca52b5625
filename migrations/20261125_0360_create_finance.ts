import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  // Refunds made by finance. The reference is the one-time token of the form that asked for it,
  // so a double submit finds the first row instead of refunding twice.
  await db.schema.createTable("finance_refunds")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("reference", "text", (c) => c.notNull().unique())
    .addColumn("transfer_id", "bigint", (c) => c.notNull())
    .addColumn("amount", "bigint", (c) => c.notNull().check(sql`amount > 0`))
    .addColumn("reason", "text", (c) => c.notNull())
    .addColumn("staff_id", "bigint", (c) => c.notNull().references("staff.id"))
    .addColumn("refund_transfer_id", "bigint")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex("finance_refunds_transfer").on("finance_refunds").column(
    "transfer_id",
  )
    .execute();

  // Manual adjustments: proposed by one staff member, decided by another (maker-checker).
  await db.schema.createTable("finance_adjustments")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("card_account_id", "bigint", (c) => c.notNull())
    .addColumn("amount", "bigint", (c) => c.notNull().check(sql`amount <> 0`))
    .addColumn("reason", "text", (c) => c.notNull())
    .addColumn(
      "state",
      "text",
      (c) =>
        c.notNull().defaultTo("proposed").check(sql`state in ('proposed', 'approved', 'rejected')`),
    )
    .addColumn("proposed_by", "bigint", (c) => c.notNull().references("staff.id"))
    .addColumn("proposed_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("decided_by", "bigint", (c) => c.references("staff.id"))
    .addColumn("decided_at", "timestamptz")
    .addColumn("transfer_id", "bigint")
    .addCheckConstraint(
      "finance_adjustment_four_eyes",
      sql`decided_by is null or decided_by <> proposed_by`,
    )
    .execute();

  // Uploaded gateway statements and what reconciling them found.
  await db.schema.createTable("finance_reconciliations")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("staff_id", "bigint", (c) => c.notNull().references("staff.id"))
    .addColumn("filename", "text", (c) => c.notNull())
    .addColumn("period_from", "date", (c) => c.notNull())
    .addColumn("period_to", "date", (c) => c.notNull())
    .addColumn("rows_total", "integer", (c) => c.notNull())
    .addColumn("matched", "integer", (c) => c.notNull())
    .addColumn("missing_ours", "integer", (c) => c.notNull())
    .addColumn("missing_theirs", "integer", (c) => c.notNull())
    .addColumn("mismatched", "integer", (c) => c.notNull())
    .addColumn("result", "jsonb", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("finance_reconciliations").execute();
  await db.schema.dropTable("finance_adjustments").execute();
  await db.schema.dropTable("finance_refunds").execute();
}
