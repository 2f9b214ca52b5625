import { type Kysely, sql } from "kysely";

/**
 * Where a secret's owner has proven themselves lately (a right sign-in password from an address,
 * an email code): such a source is not slowed by the throttles strangers trip. Frozen.
 */
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createTable("proven_sources")
    .addColumn("key", "text", (c) => c.primaryKey())
    .addColumn("proven_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("proven_sources").execute();
}
