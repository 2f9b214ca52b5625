/**
 * 商户经营者: the sign-ins of the outside operators who run a merchant. A system administrator
 * opens one on the merchant's page (a staff account with the merchant_operator role alone, tied
 * to that merchant); its member reads that merchant's statements and takings, nothing else.
 */
import type { Db } from "../platform/database.ts";
import { NotFoundError } from "../platform/errors.ts";
import { createStaff, ROLES, staffByIds, writeAudit } from "../staff/mod.ts";
import { getMerchant, type Merchant } from "./service.ts";
import type { Actor } from "./terminals.ts";
import "./tables.ts";

/** A merchant operator's sign-in as its merchant's page lists it. */
export interface MerchantOperator {
  staffId: number;
  username: string;
  name: string;
  createdAt: Date;
}

/**
 * Opens a sign-in for the operator of a merchant: a staff account with the merchant_operator role
 * only, who must change the initial password at the first sign-in; audited with the actor.
 */
export async function addMerchantOperator(
  db: Db,
  actor: Actor,
  input: { merchantId: number; username: string; name: string; password: string },
): Promise<number> {
  return await db.transaction().execute(async (trx) => {
    const merchant = await getMerchant(trx, input.merchantId);
    if (!merchant) throw new NotFoundError(`merchant ${input.merchantId}`);
    const staffId = await createStaff(trx, {
      username: input.username,
      name: input.name,
      password: input.password,
      roles: [ROLES.merchantOperator],
      mustChangePassword: true,
    });
    await trx.insertInto("merchant_operators")
      .values({ staff_id: staffId, merchant_id: merchant.id }).execute();
    await writeAudit(trx, {
      staffId: actor.staffId,
      ip: actor.ip ?? null,
      action: "merchant.operator_added",
      targetType: "merchant",
      targetId: merchant.id,
      after: { username: input.username, name: input.name, staffId },
    });
    return staffId;
  });
}

/** The operators' sign-ins of a merchant, oldest first. */
export async function merchantOperators(db: Db, merchantId: number): Promise<MerchantOperator[]> {
  const rows = await db.selectFrom("merchant_operators").select(["staff_id", "created_at"])
    .where("merchant_id", "=", merchantId).orderBy("created_at").orderBy("staff_id").execute();
  const staff = await staffByIds(db, rows.map((r) => r.staff_id));
  return rows.map((r) => ({
    staffId: r.staff_id,
    username: staff.get(r.staff_id)?.username ?? "",
    name: staff.get(r.staff_id)?.name ?? "",
    createdAt: r.created_at,
  }));
}

/** The merchant a staff member runs as its operator, or null (not an operator). */
export async function merchantOfOperator(db: Db, staffId: number): Promise<Merchant | null> {
  const row = await db.selectFrom("merchant_operators").select("merchant_id")
    .where("staff_id", "=", staffId).executeTakeFirst();
  return row ? await getMerchant(db, row.merchant_id) : null;
}
