import { type Kysely, sql } from "kysely";

/**
 * A top-up paid back to where it came from (退回微信): `topup_refund` moves money from the card to
 * the gateway's clearing account (money out, as the top-up was money in); `topup_refund_return`
 * puts it back on the card when the gateway closes the refund without paying it.
 */
const BEFORE = `'purchase', 'shower', 'electricity', 'water', 'topup', 'refund', 'utility_refund',
  'reversal', 'adjustment', 'void', 'cash_out'`;

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table ledger_transfers drop constraint ledger_transfers_kind_check,
    add constraint ledger_transfers_kind_check
      check (kind in (${sql.raw(BEFORE)}, 'topup_refund', 'topup_refund_return'))`.execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table ledger_transfers drop constraint ledger_transfers_kind_check,
    add constraint ledger_transfers_kind_check check (kind in (${sql.raw(BEFORE)}))`.execute(db);
}
