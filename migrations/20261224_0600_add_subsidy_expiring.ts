import { type Kysely, sql } from "kysely";

/**
 * 补助即将到期: a message kind of its own, derived from a clock rather than a committed fact —
 * the lots whose end comes within the notice period, read in (valid_until, id) order from where
 * the last round stopped (`notify_feeds.at` and `id` of the row 'lots_ending'; it starts now, so
 * lots that ended before the upgrade are not announced).
 */
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table notify_messages drop constraint notify_messages_kind_check,
    add constraint notify_messages_kind_check check (kind in ('spend', 'topup', 'refund',
      'low_balance', 'utility_low', 'security', 'summary', 'subsidy', 'subsidy_expiring'))`
    .execute(db);
  await sql`alter table notify_feeds add column at timestamptz`.execute(db);
  await sql`insert into notify_feeds (name, at) values ('lots_ending', now())`.execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await sql`delete from notify_feeds where name = 'lots_ending'`.execute(db);
  await sql`alter table notify_feeds drop column at`.execute(db);
  await sql`delete from notify_messages where kind = 'subsidy_expiring'`.execute(db);
  await sql`alter table notify_messages drop constraint notify_messages_kind_check,
    add constraint notify_messages_kind_check check (kind in ('spend', 'topup', 'refund',
      'low_balance', 'utility_low', 'security', 'summary', 'subsidy'))`.execute(db);
}
