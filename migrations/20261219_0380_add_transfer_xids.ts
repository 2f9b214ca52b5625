import { type Kysely, sql } from "kysely";

/**
 * Each transfer keeps the transaction that wrote it, so a reader outside the wallet (the
 * notifier) can take committed transfers exactly once in commit-safe order (modules/platform/
 * feed.ts). Filled by the default in the statement that moves the money; older transfers keep
 * null (they are history, never announced), so adding the column rewrites nothing.
 */
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table ledger_transfers add column xid xid8`.execute(db);
  await sql`alter table ledger_transfers alter column xid set default pg_current_xact_id()`
    .execute(db);
  await sql`create index ledger_transfers_xid on ledger_transfers (xid, id) where xid is not null`
    .execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table ledger_transfers drop column xid`.execute(db);
}
