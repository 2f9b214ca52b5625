import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  // 商户结算's terms of a merchant run by an outside operator: how often it is settled, the
  // management fee the school keeps (basis points of the net: 350 = 3.50%), where it is paid.
  // A merchant without a row (or with settles = false) is the school's own and is never settled.
  await db.schema.createTable("merchant_settlement_terms")
    .addColumn("merchant_id", "bigint", (c) => c.primaryKey().references("merchants.id"))
    .addColumn("settles", "boolean", (c) => c.notNull().defaultTo(true))
    .addColumn(
      "period",
      "text",
      (c) => c.notNull().check(sql`period in ('daily', 'weekly', 'monthly')`),
    )
    .addColumn(
      "fee_rate_bp",
      "integer",
      (c) => c.notNull().defaultTo(0).check(sql`fee_rate_bp between 0 and 10000`),
    )
    .addColumn("payee_name", "text")
    .addColumn("payee_bank", "text")
    .addColumn("payee_account", "text")
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("merchant_settlement_terms").execute();
}
