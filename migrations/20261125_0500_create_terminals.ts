import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  // Ids travel in every frame as uint32; they start high enough to look like device numbers.
  await db.schema.createTable("terminals")
    .addColumn(
      "id",
      "bigint",
      (c) => c.primaryKey().generatedByDefaultAsIdentity({ startWith: 10001 }),
    )
    .addColumn("merchant_id", "bigint", (c) => c.notNull().references("merchants.id"))
    .addColumn(
      "kind",
      "text",
      (c) =>
        c.notNull().check(sql`kind in ('canteen_pos', 'supermarket_pos', 'qr_scanner', 'shower')`),
    )
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn(
      "status",
      "text",
      (c) => c.notNull().defaultTo("active").check(sql`status in ('active', 'disabled')`),
    )
    // The key is HMAC(APP_SECRET, "terminal-key", id, key_version); rotating bumps the version.
    .addColumn("key_version", "integer", (c) => c.notNull().defaultTo(1))
    .addColumn("last_seen_at", "timestamptz")
    .addColumn("last_address", "text")
    .addColumn("error_count", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex("terminals_merchant_idx").on("terminals").column("merchant_id")
    .execute();
  await db.schema.createTable("terminal_errors")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("terminal_id", "bigint", (c) => c.notNull().references("terminals.id"))
    .addColumn("at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("code", "text", (c) => c.notNull())
    .addColumn("detail", "text", (c) => c.notNull())
    .addColumn("address", "text")
    .execute();
  await db.schema.createIndex("terminal_errors_terminal_idx").on("terminal_errors").columns([
    "terminal_id",
    "id",
  ])
    .execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("terminal_errors").execute();
  await db.schema.dropTable("terminals").execute();
}
