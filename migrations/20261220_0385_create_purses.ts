import { type Kysely, sql } from "kysely";

/**
 * Purses (钱包): a card's money is its wallet row's `balance`, as before (the card's ledger
 * account, what double entry sees), split into purses. The cash purse (现金) is what the holder
 * tops up; every other purse (补助, and what the office adds later as data) holds money that came
 * in lots: one grant of one batch to one card, with the merchant categories it may be spent at,
 * and when it may be spent (valid from, until). Purse kinds are rows: their name, their spend
 * order (lots of a lower order are spent first; within a purse, the lot that expires first) and
 * where they may be spent. The cash purse is always spent last and is the only one paid out in
 * cash.
 *
 * The wallet row keeps `lots` (the money of its lots) and `lots_held` (the part of it shower holds
 * set aside), so the cash purse is `balance - lots` (free: `balance - held - (lots - lots_held)`)
 * and a payment reads the card's lots only when it has some. The CHECK keeps the cash purse from
 * paying for what the lots hold. A lot keeps `remaining` and `held`; a transfer that moves a lot's
 * money has a leg per lot (`purse_legs`, signed), so each lot's remaining is the sum of its legs and
 * the cash purse is the card's entries less its lots' legs (the verifier checks both).
 *
 * Money of a lot goes back where it came from (`funding_account_id`, the school's subsidy funding
 * account) when it expires, when finance reverses the grant, or at 销户.
 */
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createTable("purse_kinds")
    .addColumn("code", "text", (c) => c.primaryKey().check(sql`code ~ '^[a-z_]{1,32}$'`))
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("spend_order", "integer", (c) => c.notNull())
    // Merchant categories (and 'utilities') its money may be spent at; NULL: anywhere.
    .addColumn("categories", sql`text[]`)
    // False for the one cash purse; true for purses whose money comes in lots.
    .addColumn("lots", "boolean", (c) => c.notNull())
    .execute();
  await sql`create unique index purse_kinds_one_cash on purse_kinds ((true)) where not lots`
    .execute(db);
  await db.insertInto("purse_kinds").values([
    { code: "cash", name: "现金", spend_order: 1000, categories: null, lots: false },
    {
      code: "subsidy",
      name: "补助",
      spend_order: 100,
      categories: sql`'{canteen,supermarket,shower,utilities}'::text[]`,
      lots: true,
    },
  ]).execute();

  await sql`alter table ledger_accounts add column lots bigint not null default 0,
    add column lots_held bigint not null default 0,
    add constraint ledger_accounts_lots check (
      lots_held >= 0 and lots >= lots_held and held >= lots_held
      and balance - lots >= held - lots_held and (kind = 'card' or lots = 0))`.execute(db);
  await sql`alter table ledger_accounts drop constraint ledger_accounts_kind_check,
    add constraint ledger_accounts_kind_check check (kind in ('card', 'merchant', 'gateway',
      'utility', 'adjustment', 'void', 'cash', 'subsidy'))`.execute(db);
  await sql`alter table ledger_transfers drop constraint ledger_transfers_kind_check,
    add constraint ledger_transfers_kind_check check (kind in ('purchase', 'shower',
      'electricity', 'water', 'topup', 'refund', 'utility_refund', 'reversal', 'adjustment',
      'void', 'cash_out', 'topup_refund', 'topup_refund_return', 'subsidy', 'subsidy_reversal',
      'subsidy_expiry', 'subsidy_return'))`.execute(db);

  await db.schema.createTable("purse_lots")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedAlwaysAsIdentity())
    .addColumn("card_account_id", "bigint", (c) => c.notNull().references("card_accounts.id"))
    .addColumn("purse", "text", (c) => c.notNull().references("purse_kinds.code"))
    // The grant: its transfer's reference and id, and where the money returns to.
    .addColumn("reference", "text", (c) => c.notNull().unique())
    .addColumn("grant_transfer_id", "bigint", (c) => c.notNull())
    .addColumn("funding_account_id", "bigint", (c) => c.notNull())
    // The batch it came with (the subsidy module's), for its reports.
    .addColumn("batch_id", "bigint")
    .addColumn("granted", "bigint", (c) => c.notNull())
    .addColumn("remaining", "bigint", (c) => c.notNull())
    .addColumn("held", "bigint", (c) => c.notNull().defaultTo(0))
    .addColumn("valid_from", "timestamptz", (c) => c.notNull())
    .addColumn("valid_until", "timestamptz", (c) => c.notNull())
    .addColumn("categories", sql`text[]`, (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addCheckConstraint(
      "purse_lots_money",
      sql`granted > 0 and held >= 0 and remaining >= held and remaining <= granted`,
    )
    .addCheckConstraint("purse_lots_period", sql`valid_until > valid_from`)
    .execute();
  // A payment reads only the lots with money of its card.
  await sql`create index purse_lots_card on purse_lots (card_account_id, id) where remaining > 0`
    .execute(db);
  // The expiry worker's due lots.
  await sql`create index purse_lots_due on purse_lots (valid_until) where remaining > held`
    .execute(db);
  await sql`create index purse_lots_batch on purse_lots (batch_id) where batch_id is not null`
    .execute(db);

  // No foreign keys, as ledger_transfers has none (see 0300): the verifier checks them.
  await db.schema.createTable("purse_legs")
    .addColumn("transfer_id", "bigint", (c) => c.notNull())
    .addColumn("lot_id", "bigint", (c) => c.notNull())
    .addColumn("amount", "bigint", (c) => c.notNull().check(sql`amount <> 0`))
    .addPrimaryKeyConstraint("purse_legs_pkey", ["transfer_id", "lot_id"])
    .execute();
  await db.schema.createIndex("purse_legs_lot").on("purse_legs").column("lot_id").execute();

  // What a shower hold set aside of each lot (`[{"lot": id, "amount": fen}]`), NULL: cash only.
  await sql`alter table ledger_holds add column lots jsonb`.execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table ledger_holds drop column lots`.execute(db);
  await db.schema.dropTable("purse_legs").execute();
  await db.schema.dropTable("purse_lots").execute();
  await sql`alter table ledger_transfers drop constraint ledger_transfers_kind_check,
    add constraint ledger_transfers_kind_check check (kind in ('purchase', 'shower',
      'electricity', 'water', 'topup', 'refund', 'utility_refund', 'reversal', 'adjustment',
      'void', 'cash_out', 'topup_refund', 'topup_refund_return'))`.execute(db);
  await sql`alter table ledger_accounts drop constraint ledger_accounts_kind_check,
    add constraint ledger_accounts_kind_check check (kind in ('card', 'merchant', 'gateway',
      'utility', 'adjustment', 'void', 'cash'))`.execute(db);
  await sql`alter table ledger_accounts drop constraint ledger_accounts_lots,
    drop column lots_held, drop column lots`.execute(db);
  await db.schema.dropTable("purse_kinds").execute();
}
