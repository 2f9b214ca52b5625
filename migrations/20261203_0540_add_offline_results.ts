import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  // Each acknowledged offline record keeps the result the reader was told (a status code) and
  // what it charged: a record the server refused is acknowledged, charged 0 and sent to finance.
  await db.schema.alterTable("terminal_offline_records")
    .addColumn("result", "integer", (c) => c.notNull().defaultTo(0))
    .execute();
  await db.schema.alterTable("terminal_offline_records")
    .addColumn("charged", "bigint", (c) => c.notNull().defaultTo(0))
    .execute();
  await sql`update terminal_offline_records set
      charged = case when outcome = 'applied' then amount else 0 end,
      result = case outcome when 'applied' then 0 when 'unknown_chip' then 513 else 523 end`
    .execute(db);
  // The blocklist versions a reader said it holds (Heartbeat, BlocklistSync) and when it first
  // said so: an offline payment for a chip listed in a version the reader held is refused.
  await db.schema.createTable("terminal_blocklist_acks")
    .addColumn("terminal_id", "bigint", (c) => c.notNull())
    .addColumn("version", "bigint", (c) => c.notNull())
    .addColumn("acknowledged_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint("terminal_blocklist_acks_pk", ["terminal_id", "version"])
    .execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("terminal_blocklist_acks").execute();
  await db.schema.alterTable("terminal_offline_records").dropColumn("charged").execute();
  await db.schema.alterTable("terminal_offline_records").dropColumn("result").execute();
}
