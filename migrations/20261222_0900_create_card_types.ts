import { type Kysely, sql } from "kysely";

/**
 * 卡类别 and 餐次. A card type is a row: its name, whom it is for (`kind`, the holder's 身份 that
 * 毕业离校 and 补助发放 select by), the ceilings of a card's 付款设置 (a card's own limits can only
 * be lower), whether 补助 may be issued to its cards, and a price rule per merchant category
 * (`card_type_prices`: a percentage and/or a fixed amount off). Every card account refers to one
 * (existing cards: student → 学生, staff → 教职工).
 *
 * A canteen merchant's meal periods (`meal_periods`: 早餐/午餐/晚餐 as China times of day, start
 * included, end excluded) may cap what one card pays there in one period of one China day (a
 * number of payments and/or an amount) and carry a discount per card type
 * (`meal_period_prices`), which replaces the type's rule for the category in that period.
 *
 * The wallet row counts a card's payments per period of its China day (`meal_uses`: {"d": day,
 * "<period id>": [payments, fen]}), in the statement that takes the money, so concurrent payments
 * are counted as the daily limit is (the row is the lock).
 */
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createTable("card_types")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedByDefaultAsIdentity())
    .addColumn("name", "text", (c) => c.notNull().unique())
    .addColumn("kind", "text", (c) => c.notNull().check(sql`kind in ('student', 'staff')`))
    .addColumn("pay_limit", "bigint", (c) => c.notNull())
    .addColumn("daily_limit", "bigint", (c) => c.notNull())
    .addColumn("subsidies", "boolean", (c) => c.notNull())
    .addColumn("created_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addCheckConstraint(
      "card_types_limits",
      sql`pay_limit > 0 and daily_limit > 0 and pay_limit <= daily_limit`,
    )
    .execute();
  await db.insertInto("card_types").values([
    { name: "学生", kind: "student", pay_limit: 20000, daily_limit: 50000, subsidies: true },
    { name: "教职工", kind: "staff", pay_limit: 20000, daily_limit: 50000, subsidies: true },
    { name: "临时卡", kind: "student", pay_limit: 10000, daily_limit: 20000, subsidies: false },
  ]).execute();

  await sql`alter table card_accounts add column card_type_id bigint references card_types(id)`
    .execute(db);
  await sql`update card_accounts ca set card_type_id = t.id from card_types t
    where t.name = case ca.kind when 'staff' then '教职工' else '学生' end`.execute(db);
  await sql`alter table card_accounts alter column card_type_id set not null`.execute(db);
  await sql`create index card_accounts_type on card_accounts (card_type_id)`.execute(db);

  await db.schema.createTable("card_type_prices")
    .addColumn("card_type_id", "bigint", (c) => c.notNull().references("card_types.id"))
    .addColumn("category", "text", (c) => c.notNull())
    .addColumn("percent_off", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("fen_off", "bigint", (c) => c.notNull().defaultTo(0))
    .addPrimaryKeyConstraint("card_type_prices_pk", ["card_type_id", "category"])
    .addCheckConstraint(
      "card_type_prices_bounds",
      sql`percent_off between 0 and 99 and fen_off between 0 and 100000000`,
    )
    .execute();

  await db.schema.createTable("meal_periods")
    .addColumn("id", "bigint", (c) => c.primaryKey().generatedByDefaultAsIdentity())
    .addColumn("merchant_id", "bigint", (c) => c.notNull().references("merchants.id"))
    .addColumn("name", "text", (c) => c.notNull())
    .addColumn("starts", "time", (c) => c.notNull())
    .addColumn("ends", "time", (c) => c.notNull())
    .addColumn("max_count", "integer")
    .addColumn("max_amount", "bigint")
    .addColumn("updated_at", "timestamptz", (c) => c.notNull().defaultTo(sql`now()`))
    .addCheckConstraint(
      "meal_periods_bounds",
      sql`starts < ends and (max_count is null or max_count > 0)
        and (max_amount is null or max_amount > 0)`,
    )
    .addUniqueConstraint("meal_periods_name", ["merchant_id", "name"])
    .execute();
  await sql`create index meal_periods_merchant on meal_periods (merchant_id, starts)`.execute(db);

  await db.schema.createTable("meal_period_prices")
    .addColumn(
      "meal_period_id",
      "bigint",
      (c) => c.notNull().references("meal_periods.id").onDelete("cascade"),
    )
    .addColumn("card_type_id", "bigint", (c) => c.notNull().references("card_types.id"))
    .addColumn("percent_off", "integer", (c) => c.notNull().defaultTo(0))
    .addColumn("fen_off", "bigint", (c) => c.notNull().defaultTo(0))
    .addPrimaryKeyConstraint("meal_period_prices_pk", ["meal_period_id", "card_type_id"])
    .addCheckConstraint(
      "meal_period_prices_bounds",
      sql`percent_off between 0 and 99 and fen_off between 0 and 100000000`,
    )
    .execute();

  await sql`alter table ledger_accounts add column meal_uses jsonb`.execute(db);
}

// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await sql`alter table ledger_accounts drop column meal_uses`.execute(db);
  await db.schema.dropTable("meal_period_prices").execute();
  await db.schema.dropTable("meal_periods").execute();
  await db.schema.dropTable("card_type_prices").execute();
  await sql`alter table card_accounts drop column card_type_id`.execute(db);
  await db.schema.dropTable("card_types").execute();
}
