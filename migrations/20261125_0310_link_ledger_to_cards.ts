import { type Kysely, sql } from "kysely";

/**
 * Card wallets, holds and payment codes belong to card accounts (created by the card module's
 * migrations, which sort before the wallet's). Transfers keep no foreign keys: see 0300.
 */
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table ledger_accounts add constraint ledger_accounts_card_fk
    foreign key (card_account_id) references card_accounts (id)`.execute(db);
  await sql`alter table ledger_holds add constraint ledger_holds_card_fk
    foreign key (card_account_id) references card_accounts (id)`.execute(db);
  await sql`alter table payment_codes add constraint payment_codes_card_fk
    foreign key (card_account_id) references card_accounts (id)`.execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table payment_codes drop constraint payment_codes_card_fk`.execute(db);
  await sql`alter table ledger_holds drop constraint ledger_holds_card_fk`.execute(db);
  await sql`alter table ledger_accounts drop constraint ledger_accounts_card_fk`.execute(db);
}
