import { type Kysely, sql } from "kysely";

/**
 * What happened to a login account's security (its password changed or was reset, a WeChat bound
 * for sign-in or released), written in the transaction of the change. The notifier reads them in
 * commit-safe order by `xid` (modules/platform/feed.ts) for security notices.
 *
 * And the WeChat (服务号 openid) each account signs in with from the 服务号 menu: one per account
 * and one account per openid, made only after a password sign-in inside WeChat; the student
 * chooses whether a password change (by default yes: a stranger's WeChat bound with a stolen
 * password goes with it) or a 挂失 (by default no: a lost card is not a lost phone) ends it.
 */
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createTable("account_events")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("account_id", "bigint", (c) => c.notNull().references("accounts.id"))
    .addColumn(
      "kind",
      "text",
      (c) => c.notNull().check(sql`kind in ('password_changed', 'wechat_bound', 'wechat_unbound')`),
    )
    .addColumn("actor", "text", (c) => c.notNull().check(sql`actor in ('student', 'staff')`))
    .addColumn("details", "jsonb")
    .addColumn("at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("xid", sql`xid8`, (c) => c.notNull().defaultTo(sql`pg_current_xact_id()`))
    .execute();
  await sql`create index account_events_xid on account_events (xid, id)`.execute(db);
  await db.schema.createIndex("account_events_account").on("account_events")
    .columns(["account_id", "id"]).execute();

  await db.schema.createTable("account_wechat")
    .addColumn("account_id", "bigint", (c) => c.primaryKey().references("accounts.id"))
    .addColumn("openid", "text", (c) => c.notNull().unique())
    .addColumn("end_on_password_change", "boolean", (c) => c.notNull().defaultTo(true))
    .addColumn("end_on_loss", "boolean", (c) => c.notNull().defaultTo(false))
    .addColumn("bound_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("account_wechat").execute();
  await db.schema.dropTable("account_events").execute();
}
