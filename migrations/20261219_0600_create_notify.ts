import { type Kysely, sql } from "kysely";

/**
 * The notifier (modules/notify, migrations 0600–0699): students' settings (消息通知), where each
 * committed feed was read up to, the messages (an outbox: derived from a committed fact in the
 * transaction that moves the feed's position, then delivered by the job queue of platform/jobs.ts
 * through WeChat or email), and the 服务号 access token every instance shares.
 */
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createTable("notify_settings")
    .addColumn("account_id", "bigint", (c) => c.primaryKey().references("accounts.id"))
    .addColumn("muted", sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'`))
    .addColumn(
      "low_balance",
      "bigint",
      (c) => c.notNull().defaultTo(1000).check(sql`low_balance >= 0`),
    )
    .addColumn("quiet", "boolean", (c) => c.notNull().defaultTo(true))
    // Minutes into the China day: 23:00 and 07:00 by default.
    .addColumn(
      "quiet_start",
      "integer",
      (c) => c.notNull().defaultTo(1380).check(sql`quiet_start between 0 and 1439`),
    )
    .addColumn(
      "quiet_end",
      "integer",
      (c) => c.notNull().defaultTo(420).check(sql`quiet_end between 0 and 1439`),
    )
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();

  await db.schema.createTable("notify_feeds")
    .addColumn("name", "text", (c) => c.primaryKey())
    .addColumn("xid", sql`xid8`, (c) => c.notNull().defaultTo(sql`'0'::xid8`))
    .addColumn("id", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.insertInto("notify_feeds").values([
    { name: "ledger" },
    { name: "card" },
    { name: "account" },
    { name: "billing" },
  ]).execute();

  await db.schema.createTable("notify_messages")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("account_id", "bigint", (c) => c.notNull())
    .addColumn("kind", "text", (c) =>
      c.notNull().check(
        sql`kind in ('spend', 'topup', 'refund', 'low_balance', 'utility_low', 'security', 'summary')`,
      ))
    // What it announces, once: "ledger:<transfer id>", "ledger:<id>:low", "card:<event id>", …
    .addColumn("source", "text", (c) => c.notNull().unique())
    .addColumn("data", "jsonb", (c) => c.notNull())
    .addColumn("event_at", "timestamptz", (c) => c.notNull())
    .addColumn("state", "text", (c) =>
      c.notNull().check(
        sql`state in ('queued', 'held', 'sent', 'failed', 'no_channel', 'summarized')`,
      ))
    .addColumn("channel", "text", (c) => c.check(sql`channel in ('wechat', 'email')`))
    .addColumn("attempts", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("next_attempt_at", "timestamptz", (c) => c.notNull())
    .addColumn("lease_token", "text")
    .addColumn("lease_expires_at", "timestamptz")
    .addColumn("last_error", "text")
    .addColumn("error_code", "text")
    .addColumn("summary_id", "bigint")
    .addColumn("sent_at", "timestamptz")
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await sql`create index notify_messages_due on notify_messages (next_attempt_at)
    where state = 'queued'`.execute(db);
  await sql`create index notify_messages_held on notify_messages (next_attempt_at, account_id)
    where state = 'held'`.execute(db);
  await sql`create index notify_messages_failed on notify_messages (updated_at)
    where state = 'failed'`.execute(db);
  await db.schema.createIndex("notify_messages_account").on("notify_messages")
    .columns(["account_id", "id desc"]).execute();

  await db.schema.createTable("notify_wechat_tokens")
    .addColumn("app_id", "text", (c) => c.primaryKey())
    .addColumn("token", "text", (c) => c.notNull())
    .addColumn("expires_at", "timestamptz", (c) => c.notNull())
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("notify_wechat_tokens").execute();
  await db.schema.dropTable("notify_messages").execute();
  await db.schema.dropTable("notify_feeds").execute();
  await db.schema.dropTable("notify_settings").execute();
}
