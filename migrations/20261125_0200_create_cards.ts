import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  // 一卡通账户: the cardholder's account, identified by 学号 within a school. The 身份证 number is
  // kept only as a keyed hash plus a masked form. `password_hash` is null while the default card
  // password (last 6 of the 身份证) is in effect; `default_password_check` verifies that default.
  await db.schema.createTable("card_accounts")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("school_id", "bigint", (c) => c.notNull().references("schools.id"))
    .addColumn("student_number", "text", (c) => c.notNull())
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("kind", "text", (c) => c.notNull().check(sql`kind in ('student', 'staff')`))
    .addColumn("id_number_hash", "text", (c) => c.notNull())
    .addColumn("id_number_masked", "text", (c) => c.notNull())
    .addColumn("default_password_check", "text", (c) => c.notNull())
    .addColumn("password_hash", "text")
    .addColumn(
      "status",
      "text",
      (c) =>
        c.notNull().defaultTo("normal").check(
          sql`status in ('normal', 'loss_reported', 'cancelled')`,
        ),
    )
    .addColumn("loss_reported_at", "timestamptz")
    .addColumn("payment_code_frozen", "boolean", (c) => c.notNull().defaultTo(false))
    // One login account per card account (the column) and one card account per login account
    // (the unique constraint).
    .addColumn("account_id", "bigint", (c) => c.unique().references("accounts.id"))
    .addColumn("bound_at", "timestamptz")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addUniqueConstraint("card_accounts_school_student_number", ["school_id", "student_number"])
    .execute();
  await db.schema.createIndex("card_accounts_name").on("card_accounts").column("name").execute();

  // Physical chip cards of a card account over time. A chip number is never reused; at most one
  // chip per card account is not cancelled.
  await db.schema.createTable("card_chips")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("card_account_id", "bigint", (c) => c.notNull().references("card_accounts.id"))
    .addColumn("chip_number", "text", (c) => c.notNull().unique())
    .addColumn(
      "status",
      "text",
      (c) => c.notNull().check(sql`status in ('active', 'lost', 'cancelled')`),
    )
    .addColumn("issued_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("lost_at", "timestamptz")
    .addColumn("cancelled_at", "timestamptz")
    .execute();
  await db.schema.createIndex("card_chips_card").on("card_chips").column("card_account_id")
    .execute();
  await sql`create unique index card_chips_one_current on card_chips (card_account_id)
    where status <> 'cancelled'`.execute(db);

  // The readers' blocklist as a change log. The single head row is locked by every change, so
  // versions are handed out in commit order and a reader asking "since v" never misses one.
  await db.schema.createTable("card_blocklist_head")
    .addColumn("id", "integer", (c) => c.primaryKey().check(sql`id = 1`))
    .addColumn("version", "bigint", (c) => c.notNull())
    .execute();
  await sql`insert into card_blocklist_head (id, version) values (1, 0)`.execute(db);
  await db.schema.createTable("card_blocklist_changes")
    .addColumn("version", "bigint", (c) => c.primaryKey())
    .addColumn("chip_number", "text", (c) => c.notNull())
    .addColumn("op", "text", (c) => c.notNull().check(sql`op in ('add', 'remove')`))
    .addColumn("at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  // What happened to a card account: binding, password changes, loss, reissue, imports.
  await db.schema.createTable("card_events")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("card_account_id", "bigint", (c) => c.notNull().references("card_accounts.id"))
    .addColumn("at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("kind", "text", (c) => c.notNull())
    .addColumn(
      "actor",
      "text",
      (c) => c.notNull().check(sql`actor in ('student', 'staff', 'import', 'system', 'reader')`),
    )
    .addColumn("staff_id", "bigint", (c) => c.references("staff.id"))
    .addColumn("account_id", "bigint")
    .addColumn("chip_number", "text")
    .addColumn("details", "jsonb")
    .execute();
  await db.schema.createIndex("card_events_card").on("card_events").columns([
    "card_account_id",
    "id",
  ])
    .execute();

  // A cardholder import between preview and commit. Rows are already normalised: no 身份证
  // number in clear, only its keyed hash, mask and default-password check.
  await db.schema.createTable("card_imports")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("school_id", "bigint", (c) => c.notNull().references("schools.id"))
    .addColumn("staff_id", "bigint", (c) => c.references("staff.id"))
    .addColumn("file_name", "text", (c) => c.notNull())
    .addColumn("file_hash", "text", (c) => c.notNull())
    .addColumn("rows", "jsonb", (c) => c.notNull())
    .addColumn("errors", "jsonb", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("committed_at", "timestamptz")
    .addColumn("result", "jsonb")
    .execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("card_imports").execute();
  await db.schema.dropTable("card_events").execute();
  await db.schema.dropTable("card_blocklist_changes").execute();
  await db.schema.dropTable("card_blocklist_head").execute();
  await db.schema.dropTable("card_chips").execute();
  await db.schema.dropTable("card_accounts").execute();
}
