import { type Kysely, sql } from "kysely";

/**
 * Each card event keeps the transaction that wrote it, so the notifier takes committed 挂失,
 * 解挂, 补卡, 绑定 and card-password events exactly once (modules/platform/feed.ts). Older events
 * keep null: history, never announced.
 */
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table card_events add column xid xid8`.execute(db);
  await sql`alter table card_events alter column xid set default pg_current_xact_id()`.execute(db);
  await sql`create index card_events_xid on card_events (xid, id) where xid is not null`
    .execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table card_events drop column xid`.execute(db);
}
