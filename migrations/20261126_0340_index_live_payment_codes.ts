import { type Kysely, sql } from "kysely";

/**
 * Issuing a payment code retires the card's live ones (every 30 seconds while 付款码 is open):
 * an index of the live codes alone, so that update does not walk every code the card ever had.
 */
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index payment_codes_live on payment_codes (card_account_id)
    where superseded_at is null and used_at is null`.execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await sql`drop index payment_codes_live`.execute(db);
}
