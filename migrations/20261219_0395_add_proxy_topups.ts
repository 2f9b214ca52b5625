import { type Kysely, sql } from "kysely";

/**
 * 代充: a top-up paid by someone else (a parent) for a card account. Such an order has no login
 * account; it knows its payer only as a key (the WeChat openid of a JSAPI payer, or the hash of a
 * browser token) for the per-payer limits and the payer's own result page. Students share a link
 * (a random token per card account, replaced when they make a new one) that opens 代充 for them.
 */
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table topup_orders alter column account_id drop not null`.execute(db);
  await db.schema.alterTable("topup_orders")
    .addColumn("proxy", "boolean", (c) => c.notNull().defaultTo(false))
    .addColumn("payer_key", "text")
    .execute();
  await sql`alter table topup_orders add constraint topup_orders_payer
    check ((proxy and payer_key is not null and account_id is null)
      or (not proxy and payer_key is null and account_id is not null))`.execute(db);
  await sql`create index topup_orders_payer_day on topup_orders (payer_key, created_at)
    where proxy`.execute(db);
  await db.schema.createTable("topup_proxy_links")
    .addColumn("card_account_id", "bigint", (c) => c.primaryKey())
    .addColumn("token", "text", (c) => c.notNull().unique())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("topup_proxy_links").execute();
  await sql`alter table topup_orders drop constraint topup_orders_payer`.execute(db);
  await db.schema.alterTable("topup_orders").dropColumn("payer_key").dropColumn("proxy").execute();
  await sql`delete from topup_orders where account_id is null`.execute(db);
  await sql`alter table topup_orders alter column account_id set not null`.execute(db);
}
