import { type RawBuilder, sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { DomainError, NotFoundError } from "../platform/errors.ts";
import { writeAudit } from "../staff/mod.ts";
import type { MerchantCategory } from "./tables.ts";
import "./tables.ts";

export const CATEGORY_LABELS: Record<MerchantCategory, string> = {
  canteen: "食堂",
  supermarket: "超市",
  shower: "热水",
  other: "其他",
};

/** A merchant as other modules see it. */
export interface Merchant {
  id: number;
  code: string;
  name: string;
  category: MerchantCategory;
  active: boolean;
}

/** Creates a merchant; the code must be new. */
export async function createMerchant(
  db: Db,
  input: { code: string; name: string; category: MerchantCategory },
): Promise<Merchant> {
  const code = input.code.trim().toUpperCase();
  if (!/^[A-Z0-9][A-Z0-9_-]{1,31}$/.test(code)) {
    throw new DomainError("Bad merchant code", "商户编码需为2-32位字母、数字、_ 或 -", "code");
  }
  const name = input.name.trim();
  if (!name || name.length > 40) {
    throw new DomainError("Bad merchant name", "请输入40字以内的商户名称", "name");
  }
  if (!(input.category in CATEGORY_LABELS)) {
    throw new DomainError("Bad merchant category", "请选择商户类别", "category");
  }
  const taken = await db.selectFrom("merchants").select("id").where("code", "=", code)
    .executeTakeFirst();
  if (taken) throw new DomainError("Merchant code taken", "该商户编码已存在", "code");
  return await db.insertInto("merchants").values({ code, name, category: input.category })
    .returning(["id", "code", "name", "category", "active"]).executeTakeFirstOrThrow();
}

/** One merchant by id, or null. */
export async function getMerchant(db: Db, id: number): Promise<Merchant | null> {
  return (await db.selectFrom("merchants").select(["id", "code", "name", "category", "active"])
    .where("id", "=", id).executeTakeFirst()) ?? null;
}

/** The merchants with these ids (those that exist), by id: names and categories beside a list. */
export async function merchantsByIds(
  db: Db,
  ids: Iterable<number | null>,
): Promise<Map<number, Merchant>> {
  const wanted = [...new Set([...ids].filter((id): id is number => typeof id === "number"))];
  if (wanted.length === 0) return new Map();
  const rows = await db.selectFrom("merchants").select(["id", "code", "name", "category", "active"])
    .where("id", "in", wanted).execute();
  return new Map(rows.map((m) => [m.id, m]));
}

/**
 * SQL for one merchant as a payment sees it, at most one row (`id`, `name`, `category`,
 * `active`): for the wallet's statement that moves a reader's payment and must refuse an inactive
 * merchant in that same statement (a hot-path exception, modules/walls_sql_test.ts).
 */
export function merchantRowSql(merchantId: RawBuilder<number>): RawBuilder<
  { id: number; name: string; category: MerchantCategory; active: boolean }
> {
  return sql`(select id, name, category, active from merchants where id = ${merchantId})`;
}

/** Every merchant, by code. */
export async function listMerchants(db: Db): Promise<Merchant[]> {
  return await db.selectFrom("merchants").select(["id", "code", "name", "category", "active"])
    .orderBy("code").execute();
}

/** Changes a merchant's name, category or whether it is active; audited. */
export async function updateMerchant(
  db: Db,
  id: number,
  input: {
    name: string;
    category: MerchantCategory;
    active: boolean;
    actor?: { staffId: number | null; ip?: string | null };
  },
): Promise<Merchant> {
  const name = input.name.trim();
  if (!name || name.length > 40) {
    throw new DomainError("Bad merchant name", "请输入40字以内的商户名称", "name");
  }
  if (!(input.category in CATEGORY_LABELS)) {
    throw new DomainError("Bad merchant category", "请选择商户类别", "category");
  }
  return await db.transaction().execute(async (trx) => {
    const before = await trx.selectFrom("merchants").select(["name", "category", "active"]).where(
      "id",
      "=",
      id,
    )
      .forUpdate().executeTakeFirst();
    if (!before) throw new NotFoundError(`merchant ${id}`);
    const after = await trx.updateTable("merchants").set({
      name,
      category: input.category,
      active: input.active,
    })
      .where("id", "=", id).returning(["id", "code", "name", "category", "active"])
      .executeTakeFirstOrThrow();
    await writeAudit(trx, {
      staffId: input.actor?.staffId ?? null,
      action: "merchant.updated",
      targetType: "merchant",
      targetId: id,
      before,
      after: { name, category: input.category, active: input.active },
      ip: input.actor?.ip,
    });
    return after;
  });
}
