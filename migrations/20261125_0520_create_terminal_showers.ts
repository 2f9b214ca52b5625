import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  // A shower started at a controller: the hold it opened and the tariff in force at the swipe,
  // which the end is charged at. Only the controller that started it may end it.
  await db.schema.createTable("terminal_showers")
    .addColumn("hold_id", "bigint", (c) => c.primaryKey())
    .addColumn("terminal_id", "bigint", (c) => c.notNull())
    .addColumn("start_sequence", "bigint", (c) => c.notNull())
    .addColumn("card_account_id", "bigint", (c) => c.notNull())
    .addColumn("tariff_id", "bigint", (c) => c.notNull())
    .addColumn("fen_per_unit", "integer", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("terminal_showers").execute();
}
