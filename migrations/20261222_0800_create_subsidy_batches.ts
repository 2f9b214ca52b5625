import { type Kysely, sql } from "kysely";

/**
 * 补助发放: a batch of subsidies that one finance member prepares (its recipients read from a
 * list or taken as every card of a type, each row checked and refused with its reason) and
 * another approves. Approval credits each recipient's lot through the wallet (reference
 * `subsidy:<batch>:<card>`, so a retry credits nothing twice), a chunk per transaction: the batch
 * stays `approving` until every row is credited, and approving again resumes the rest.
 */
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createTable("subsidy_batches")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("purpose", "text", (c) => c.notNull())
    .addColumn("school_id", "bigint", (c) => c.notNull())
    .addColumn("purse", "text", (c) => c.notNull())
    // 'list': 学号 and amounts uploaded; 'card_type': every open card of a 卡类别, one amount.
    .addColumn("source", "text", (c) => c.notNull().check(sql`source in ('list', 'card_type')`))
    .addColumn("card_type_id", "bigint")
    .addColumn("valid_from", "timestamptz", (c) => c.notNull())
    .addColumn("valid_until", "timestamptz", (c) => c.notNull())
    .addColumn("categories", sql`text[]`, (c) => c.notNull())
    .addColumn(
      "state",
      "text",
      (c) =>
        c.notNull().defaultTo("draft")
          .check(sql`state in ('draft', 'approving', 'approved', 'withdrawn')`),
    )
    // Of the rows without an error.
    .addColumn("recipients", "integer", (c) => c.notNull())
    .addColumn("total", "bigint", (c) => c.notNull().check(sql`total >= 0`))
    .addColumn("refused", "integer", (c) => c.notNull())
    .addColumn("created_by", "bigint", (c) => c.notNull().references("staff.id"))
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("approved_by", "bigint", (c) => c.references("staff.id"))
    .addColumn("approved_at", "timestamptz")
    .addColumn("completed_at", "timestamptz")
    .addColumn("withdrawn_by", "bigint", (c) => c.references("staff.id"))
    .addColumn("withdrawn_at", "timestamptz")
    .addCheckConstraint("subsidy_batches_period", sql`valid_until > valid_from`)
    // The preparer never approves their own batch (the server checks; this keeps it so).
    .addCheckConstraint("subsidy_batches_checker", sql`approved_by <> created_by`)
    .execute();
  await db.schema.createTable("subsidy_recipients")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("batch_id", "bigint", (c) => c.notNull().references("subsidy_batches.id"))
    // The row of the uploaded list (0 for a batch of a card type).
    .addColumn("line", "integer", (c) => c.notNull())
    .addColumn("student_number", "text", (c) => c.notNull())
    .addColumn("name", "text")
    .addColumn("card_account_id", "bigint")
    .addColumn("amount", "bigint")
    // Why the row is refused (null: it is credited on approval).
    .addColumn("error", "text")
    .addColumn("granted_at", "timestamptz")
    .addCheckConstraint(
      "subsidy_recipients_ok",
      sql`error is not null or (card_account_id is not null and amount > 0)`,
    )
    .execute();
  await sql`create unique index subsidy_recipients_card on subsidy_recipients
    (batch_id, card_account_id) where error is null`.execute(db);
  await db.schema.createIndex("subsidy_recipients_batch").on("subsidy_recipients")
    .columns(["batch_id", "id"]).execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("subsidy_recipients").execute();
  await db.schema.dropTable("subsidy_batches").execute();
}
