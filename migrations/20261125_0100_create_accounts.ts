import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createTable("schools")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("name", "text", (c) => c.notNull().unique())
    .addColumn("code", "text", (c) => c.notNull().unique())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema.createTable("accounts")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("phone", "text", (c) => c.notNull().unique())
    .addColumn("school_id", "bigint", (c) => c.notNull().references("schools.id"))
    .addColumn("password_hash", "text", (c) => c.notNull())
    .addColumn("email", "text")
    .addColumn("email_verified_at", "timestamptz")
    .addColumn("must_change_password", "boolean", (c) => c.notNull().defaultTo(false))
    .addColumn("password_changed_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex("accounts_school").on("accounts").column("school_id").execute();

  // One-time email codes (bind an email, reset the login password). Only a keyed hash of the
  // code is kept; a code dies when used, replaced, expired or after too many wrong tries.
  await db.schema.createTable("email_codes")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn(
      "account_id",
      "bigint",
      (c) => c.notNull().references("accounts.id").onDelete("cascade"),
    )
    .addColumn(
      "purpose",
      "text",
      (c) => c.notNull().check(sql`purpose in ('bind_email', 'reset_password')`),
    )
    .addColumn("email", "text", (c) => c.notNull())
    .addColumn("code_hash", "text", (c) => c.notNull())
    .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("expires_at", "timestamptz", (c) => c.notNull())
    .addColumn("used_at", "timestamptz")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex("email_codes_account").on("email_codes").columns([
    "account_id",
    "purpose",
  ])
    .execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("email_codes").execute();
  await db.schema.dropTable("accounts").execute();
  await db.schema.dropTable("schools").execute();
}
