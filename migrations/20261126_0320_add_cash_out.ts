import { type Kysely, sql } from "kysely";

/**
 * 销户 (closing a card account at the counter) pays the balance out in cash: a `cash_out` transfer
 * from the card to the `cash` account "柜台现金" — money leaving the system, as top-ups through
 * a gateway account are money entering it.
 */
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table ledger_accounts drop constraint ledger_accounts_kind_check,
    add constraint ledger_accounts_kind_check
      check (kind in ('card', 'merchant', 'gateway', 'utility', 'adjustment', 'void', 'cash'))`
    .execute(db);
  await sql`alter table ledger_transfers drop constraint ledger_transfers_kind_check,
    add constraint ledger_transfers_kind_check
      check (kind in ('purchase', 'shower', 'electricity', 'water', 'topup', 'refund',
        'utility_refund', 'reversal', 'adjustment', 'void', 'cash_out'))`.execute(db);
  await db.insertInto("ledger_accounts")
    .values({ kind: "cash", code: "cash:counter", name: "柜台现金（销户退款）" }).execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.deleteFrom("ledger_accounts").where("code", "=", "cash:counter").execute();
  await sql`alter table ledger_transfers drop constraint ledger_transfers_kind_check,
    add constraint ledger_transfers_kind_check
      check (kind in ('purchase', 'shower', 'electricity', 'water', 'topup', 'refund',
        'utility_refund', 'reversal', 'adjustment', 'void'))`.execute(db);
  await sql`alter table ledger_accounts drop constraint ledger_accounts_kind_check,
    add constraint ledger_accounts_kind_check
      check (kind in ('card', 'merchant', 'gateway', 'utility', 'adjustment', 'void'))`
    .execute(db);
}
