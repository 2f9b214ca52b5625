import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  // 毕业离校: a batch closes the cards of a graduating class on a date, each card a job of its own
  // (platform/jobs.ts: claimed with a lease, retried, settled in the card's own transaction with
  // its money and its closing), so a crash resumes where it stopped and no card is closed twice.
  await db.schema.createTable("closeout_batches")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("school_id", "bigint", (c) => c.notNull())
    /** How the cards were chosen: card type, 学号 prefix, how many 学号 a list named. */
    .addColumn("criteria", "jsonb", (c) => c.notNull())
    /** The China day the cards are closed (from its start). */
    .addColumn("close_on", "text", (c) => c.notNull())
    .addColumn(
      "refund_rule",
      "text",
      (c) => c.notNull().check(sql`refund_rule in ('origin_first', 'payout_only')`),
    )
    /** Balances below this (fen) stay on the closed account, paid at the counter if asked. */
    .addColumn("threshold", "bigint", (c) => c.notNull().check(sql`threshold >= 0`))
    .addColumn(
      "payout_method",
      "text",
      (c) => c.notNull().check(sql`payout_method in ('cash', 'bank')`),
    )
    .addColumn(
      "state",
      "text",
      (c) =>
        c.notNull().defaultTo("draft").check(sql`state in ('draft', 'scheduled', 'cancelled')`),
    )
    .addColumn("card_count", "integer", (c) => c.notNull())
    .addColumn("created_by", "bigint", (c) => c.notNull().references("staff.id"))
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("notified_at", "timestamptz")
    .addColumn("scheduled_by", "bigint", (c) => c.references("staff.id"))
    .addColumn("scheduled_at", "timestamptz")
    .addColumn("cancelled_at", "timestamptz")
    .execute();
  await db.schema.createTable("closeout_cards")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("batch_id", "bigint", (c) => c.notNull().references("closeout_batches.id"))
    // A card is in one batch at most: closed once.
    .addColumn("card_account_id", "bigint", (c) => c.notNull().unique())
    .addColumn("student_number", "text", (c) => c.notNull())
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn(
      "state",
      "text",
      (c) => c.notNull().check(sql`state in ('pending', 'queued', 'done', 'failed')`),
    )
    .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("next_attempt_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("lease_token", "text")
    .addColumn("lease_expires_at", "timestamptz")
    .addColumn("last_error", "text")
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    // What closing it did.
    .addColumn("outcome", "text", (c) => c.check(sql`outcome in ('closed', 'already_closed')`))
    .addColumn("balance", "bigint")
    .addColumn("refunded", "bigint")
    .addColumn("refund_nos", sql`text[]`)
    .addColumn("left_on_card", "bigint")
    .addColumn(
      "disposition",
      "text",
      (c) => c.check(sql`disposition in ('none', 'refunded', 'payout', 'kept', 'debt')`),
    )
    .addColumn("debt", "bigint")
    .addColumn("finished_at", "timestamptz")
    .execute();
  await db.schema.createIndex("closeout_cards_batch").on("closeout_cards")
    .columns(["batch_id", "student_number"]).execute();
  await sql`create index closeout_cards_due on closeout_cards (next_attempt_at)
    where state = 'queued'`.execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("closeout_cards").execute();
  await db.schema.dropTable("closeout_batches").execute();
}
