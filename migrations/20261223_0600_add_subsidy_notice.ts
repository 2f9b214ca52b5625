import { type Kysely, sql } from "kysely";

/** 补助到账: a message kind of its own (a grant of 补助发放 reaching the card). */
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table notify_messages drop constraint notify_messages_kind_check,
    add constraint notify_messages_kind_check check (kind in ('spend', 'topup', 'refund',
      'low_balance', 'utility_low', 'security', 'summary', 'subsidy'))`.execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await sql`delete from notify_messages where kind = 'subsidy'`.execute(db);
  await sql`alter table notify_messages drop constraint notify_messages_kind_check,
    add constraint notify_messages_kind_check check (kind in ('spend', 'topup', 'refund',
      'low_balance', 'utility_low', 'security', 'summary'))`.execute(db);
}
