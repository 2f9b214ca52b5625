import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  // One row per money-moving request of a reader: the idempotency record and the reply sent.
  await db.schema.createTable("terminal_requests")
    .addColumn("terminal_id", "bigint", (c) => c.notNull())
    .addColumn("sequence", "bigint", (c) => c.notNull())
    .addColumn("type", "smallint", (c) => c.notNull())
    .addColumn("request", "bytea", (c) => c.notNull())
    .addColumn("status", "integer", (c) => c.notNull())
    .addColumn("reply_type", "smallint", (c) => c.notNull())
    .addColumn("reply_timestamp", "bigint", (c) => c.notNull())
    .addColumn("reply", "bytea", (c) => c.notNull())
    .addColumn("amount", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("card_account_id", "bigint")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("terminal_requests_pk", ["terminal_id", "sequence"])
    .execute();
  // Offline records applied, per terminal, by the terminal's own offline counter.
  await db.schema.createTable("terminal_offline_records")
    .addColumn("terminal_id", "bigint", (c) => c.notNull())
    .addColumn("offline_sequence", "bigint", (c) => c.notNull())
    .addColumn("occurred_at", "timestamptz", (c) => c.notNull())
    .addColumn("chip", "text", (c) => c.notNull())
    .addColumn("amount", "bigint", (c) => c.notNull())
    .addColumn("card_account_id", "bigint")
    .addColumn("outcome", "text", (c) => c.notNull())
    .addColumn("balance_after", "bigint")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("terminal_offline_records_pk", ["terminal_id", "offline_sequence"])
    .execute();
  // The highest contiguous offline sequence applied; its row is the lock uploads serialize on.
  await db.schema.createTable("terminal_offline_state")
    .addColumn("terminal_id", "bigint", (c) => c.primaryKey())
    .addColumn("acked_sequence", "bigint", (c) => c.notNull().defaultTo(0))
    .execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("terminal_offline_state").execute();
  await db.schema.dropTable("terminal_offline_records").execute();
  await db.schema.dropTable("terminal_requests").execute();
}
