import { type Kysely, sql } from "kysely";

// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  // 商户经营者: a staff sign-in of an outside operator, tied to the one merchant it runs. Its only
  // role is merchant_operator; it reads that merchant's statements and takings, nothing else.
  await db.schema.createTable("merchant_operators")
    .addColumn("staff_id", "bigint", (c) => c.primaryKey().references("staff.id"))
    .addColumn("merchant_id", "bigint", (c) => c.notNull().references("merchants.id"))
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .execute();
  await db.schema.createIndex("merchant_operators_merchant").on("merchant_operators")
    .column("merchant_id").execute();
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropTable("merchant_operators").execute();
}
