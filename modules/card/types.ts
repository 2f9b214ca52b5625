/**
 * 卡类别 as data: each card account refers to one. A type carries the ceilings of its cards'
 * 付款设置, whether 补助 may be issued to them, and a price rule per merchant category (a
 * percentage and/or a fixed amount off the reader's list price; pricing.ts applies it). The
 * system administrator adds and edits types (audited); 学生, 教职工 and 临时卡 are seeded.
 */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { writeAudit } from "../staff/mod.ts";
import { CardError } from "./errors.ts";
import type { CardKind } from "./tables.ts";
import { parseKind } from "./rules.ts";

/** Merchant categories a type's price rule may name (a shower's price is its tariff). */
export const PRICED_CATEGORIES = ["canteen", "supermarket", "other"] as const;
export type PricedCategory = typeof PRICED_CATEGORIES[number];

/** A discount: `percentOff` % (0–99) of the list price, then `fenOff` fen off. */
export interface Discount {
  percentOff: number;
  fenOff: number;
}

/** A card type with its rules. */
export interface CardType {
  id: number;
  name: string;
  kind: CardKind;
  payLimit: number;
  dailyLimit: number;
  subsidies: boolean;
  prices: Partial<Record<PricedCategory, Discount>>;
}

/** What the administrator sets. */
export type CardTypeInput = Omit<CardType, "id">;

/** The most one card type's limit may be: ¥1,000,000 as every amount. */
const MAX_LIMIT = 100_000_000;

/** Every card type, by id, with its price rules. */
export async function listCardTypes(db: Db): Promise<CardType[]> {
  const types = await db.selectFrom("card_types")
    .select(["id", "name", "kind", "pay_limit", "daily_limit", "subsidies"])
    .orderBy("id").execute();
  const prices = await db.selectFrom("card_type_prices")
    .select(["card_type_id", "category", "percent_off", "fen_off"]).execute();
  return types.map((t) => ({
    id: Number(t.id),
    name: t.name,
    kind: t.kind,
    payLimit: Number(t.pay_limit),
    dailyLimit: Number(t.daily_limit),
    subsidies: t.subsidies,
    prices: Object.fromEntries(
      prices.filter((p) => Number(p.card_type_id) === Number(t.id)).map((p) => [
        p.category,
        { percentOff: p.percent_off, fenOff: Number(p.fen_off) },
      ]),
    ),
  }));
}

/** One card type, or null. */
export async function findCardType(db: Db, id: number): Promise<CardType | null> {
  return (await listCardTypes(db)).find((t) => t.id === id) ?? null;
}

/** The open (not closed) cards of a type in a school, by 学号 (补助发放 to everyone of a type). */
export async function cardsOfType(
  db: Db,
  schoolId: number,
  cardTypeId: number,
): Promise<Array<{ id: number; studentNumber: string; name: string }>> {
  const rows = await db.selectFrom("card_accounts")
    .select(["id", "student_number", "name"])
    .where("school_id", "=", schoolId).where("card_type_id", "=", cardTypeId)
    .where("status", "<>", "cancelled").orderBy("student_number").execute();
  return rows.map((r) => ({ id: r.id, studentNumber: r.student_number, name: r.name }));
}

/** The limits a card's 付款设置 may not exceed: its type's. */
export async function cardLimitCeilings(
  db: Db,
  cardAccountId: number,
): Promise<{ payLimit: number; dailyLimit: number; typeName: string } | null> {
  const row = await db.selectFrom("card_accounts as ca")
    .innerJoin("card_types as t", "t.id", "ca.card_type_id")
    .select(["t.pay_limit", "t.daily_limit", "t.name"])
    .where("ca.id", "=", cardAccountId).executeTakeFirst();
  return row
    ? { payLimit: Number(row.pay_limit), dailyLimit: Number(row.daily_limit), typeName: row.name }
    : null;
}

/**
 * SQL: the type ceilings of the card `cardAccountId` (a column of the caller's row), for the
 * wallet's debit rule (a listed hot-path door, modules/walls_sql_test.ts).
 */
export function cardTypeLimitSql(
  cardAccountId: ReturnType<typeof sql>,
  which: "pay_limit" | "daily_limit",
): ReturnType<typeof sql<number>> {
  return sql<number>`(select ct.${sql.ref(which)} from card_accounts ca
    join card_types ct on ct.id = ca.card_type_id where ca.id = ${cardAccountId})`;
}

/** What is wrong with a card type as asked, per field, in Chinese (empty when nothing). */
export function cardTypeProblems(t: CardTypeInput): Record<string, string> {
  const out: Record<string, string> = {};
  if (!/^[\p{L}\p{N}（）()·-]{1,20}$/u.test(t.name)) out.name = "名称为1-20个文字、字母或数字";
  if (!Number.isSafeInteger(t.payLimit) || t.payLimit <= 0 || t.payLimit > MAX_LIMIT) {
    out.pay_limit = "单笔限额需为大于0的金额";
  }
  if (!Number.isSafeInteger(t.dailyLimit) || t.dailyLimit <= 0 || t.dailyLimit > MAX_LIMIT) {
    out.daily_limit = "每日限额需为大于0的金额";
  }
  if (!out.pay_limit && !out.daily_limit && t.payLimit > t.dailyLimit) {
    out.pay_limit = "单笔限额不能超过每日限额";
  }
  for (const [category, d] of Object.entries(t.prices)) {
    const problem = discountProblem(d);
    if (problem) out[`${category}_discount`] = problem;
  }
  return out;
}

/** Why a discount is not acceptable, or null. */
export function discountProblem(d: Discount | undefined): string | null {
  if (!d) return null;
  if (!Number.isInteger(d.percentOff) || d.percentOff < 0 || d.percentOff > 99) {
    return "折扣比例为0-99之间的整数（%）";
  }
  if (!Number.isSafeInteger(d.fenOff) || d.fenOff < 0 || d.fenOff > MAX_LIMIT) {
    return "立减金额需为不小于0的金额（元）";
  }
  return null;
}

/** Adds (`id` null) or changes a card type and its price rules, audited. Returns its id. */
export async function saveCardType(
  db: Db,
  actor: { staffId: number; ip?: string | null },
  id: number | null,
  input: CardTypeInput,
): Promise<number> {
  const problems = cardTypeProblems(input);
  const [field] = Object.keys(problems);
  if (field) throw new CardError(`Bad card type: ${field}`, problems[field], field);
  return await db.transaction().execute(async (trx) => {
    const before = id === null ? null : await findCardType(trx, id);
    if (id !== null && !before) throw new CardError("No such card type", "卡类别不存在", "_form");
    const clash = await trx.selectFrom("card_types").select("id")
      .where("name", "=", input.name).where("id", "<>", id ?? 0).executeTakeFirst();
    if (clash) throw new CardError("Card type name taken", "已有同名的卡类别", "name");
    const values = {
      name: input.name,
      kind: input.kind,
      pay_limit: input.payLimit,
      daily_limit: input.dailyLimit,
      subsidies: input.subsidies,
    };
    const saved = id === null
      ? (await trx.insertInto("card_types").values(values).returning("id")
        .executeTakeFirstOrThrow()).id
      : (await trx.updateTable("card_types").set({ ...values, updated_at: new Date() })
        .where("id", "=", id).returning("id").executeTakeFirstOrThrow()).id;
    const typeId = Number(saved);
    await trx.deleteFrom("card_type_prices").where("card_type_id", "=", typeId).execute();
    const rules = Object.entries(input.prices).filter(([, d]) => d && (d.percentOff || d.fenOff));
    if (rules.length) {
      await trx.insertInto("card_type_prices").values(rules.map(([category, d]) => ({
        card_type_id: typeId,
        category,
        percent_off: d!.percentOff,
        fen_off: d!.fenOff,
      }))).execute();
    }
    // Cards of the type keep their holder's 身份 (毕业离校 and 补助发放 select by it).
    await trx.updateTable("card_accounts").set({ kind: input.kind })
      .where("card_type_id", "=", typeId).where("kind", "<>", input.kind).execute();
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: id === null ? "card.type_create" : "card.type_update",
      targetType: "card_type",
      targetId: typeId,
      before,
      after: { id: typeId, ...input },
      ip: actor.ip ?? null,
    });
    return typeId;
  });
}

/** How many card accounts (closed ones too) refer to each type, by type id. */
export async function cardCountsByType(db: Db): Promise<Map<number, number>> {
  const rows = await db.selectFrom("card_accounts")
    .select(["card_type_id", sql<string>`count(*)`.as("n")]).groupBy("card_type_id").execute();
  return new Map(rows.map((r) => [Number(r.card_type_id), Number(r.n)]));
}

/**
 * Removes a card type no card account refers to (closed ones keep theirs, for their history),
 * with its price rules and its meal-period discounts; audited.
 */
export async function deleteCardType(
  db: Db,
  actor: { staffId: number; ip?: string | null },
  id: number,
): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const before = await findCardType(trx, id);
    if (!before) throw new CardError("No such card type", "卡类别不存在", "_form");
    // The lock on the type's row keeps a card from being moved to it while it goes.
    await trx.selectFrom("card_types").select("id").where("id", "=", id).forUpdate().execute();
    const used = await trx.selectFrom("card_accounts").select("id")
      .where("card_type_id", "=", id).limit(1).executeTakeFirst();
    if (used) {
      throw new CardError(
        "Card type in use",
        `仍有一卡通账户属于“${before.name}”，不能删除；可先将这些卡改为其他卡类别`,
        "_form",
      );
    }
    await trx.deleteFrom("meal_period_prices").where("card_type_id", "=", id).execute();
    await trx.deleteFrom("card_type_prices").where("card_type_id", "=", id).execute();
    await trx.deleteFrom("card_types").where("id", "=", id).execute();
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "card.type_delete",
      targetType: "card_type",
      targetId: id,
      before,
      after: null,
      ip: actor.ip ?? null,
    });
  });
}

/** The card types by name, for `readImportFile`. */
export async function cardTypesByName(
  db: Db,
): Promise<Map<string, { id: number; kind: CardKind }>> {
  return new Map((await listCardTypes(db)).map((t) => [t.name, { id: t.id, kind: t.kind }]));
}

/** The type a 类型 cell names: a type's own name, or a usual word for 学生 or 教职工. */
export function typeNamed(
  types: Map<string, { id: number; kind: CardKind }>,
  raw: string,
): { id: number; kind: CardKind } | null {
  const named = types.get(raw.normalize("NFKC").trim());
  if (named) return named;
  const kind = parseKind(raw);
  return kind ? types.get(kind === "staff" ? "教职工" : "学生") ?? null : null;
}
