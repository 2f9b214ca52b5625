import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  // Offline records the reader server refused to charge, for 财务处 to accept (charge through the
  // wallet under the record's own reference, so at most once) or reject. Names are kept as they
  // were at upload: the list reads the same after a terminal or merchant is renamed.
  await db.schema.createTable("finance_offline_reviews")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("reference", "text", (c) => c.notNull().unique())
    .addColumn("terminal_id", "bigint", (c) => c.notNull())
    .addColumn("terminal_name", "text", (c) => c.notNull())
    .addColumn("merchant_id", "bigint", (c) => c.notNull())
    .addColumn("merchant_name", "text", (c) => c.notNull())
    .addColumn("offline_sequence", "bigint", (c) => c.notNull())
    .addColumn("chip", "text", (c) => c.notNull())
    .addColumn("card_account_id", "bigint")
    .addColumn("amount", "bigint", (c) => c.notNull())
    .addColumn("occurred_at", "timestamptz", (c) => c.notNull())
    .addColumn("reason", "text", (c) => c.notNull())
    .addColumn(
      "state",
      "text",
      (c) =>
        c.notNull().defaultTo("pending").check(sql`state in ('pending', 'accepted', 'rejected')`),
    )
    .addColumn("decided_by", "bigint", (c) => c.references("staff.id"))
    .addColumn("decided_at", "timestamptz")
    .addColumn("note", "text")
    .addColumn("transfer_id", "bigint")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`create index finance_offline_reviews_pending on finance_offline_reviews (created_at)
    where state = 'pending'`.execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("finance_offline_reviews").execute();
}
