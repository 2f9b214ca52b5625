/**
 * Staff changes of merchants with their audit record in the same transaction (updateMerchant and
 * the terminal registry take the actor themselves; createMerchant does not).
 */
import type { Db } from "../platform/database.ts";
import { writeAudit } from "../staff/mod.ts";
import { createMerchant, type Merchant } from "./service.ts";
import type { MerchantCategory } from "./tables.ts";

/** 新增商户, audited. */
export async function addMerchant(
  db: Db,
  actor: { staffId: number; ip: string | null },
  input: { code: string; name: string; category: MerchantCategory },
): Promise<Merchant> {
  return await db.transaction().execute(async (trx) => {
    const m = await createMerchant(trx, input);
    await writeAudit(trx, {
      ...actor,
      action: "merchant.created",
      targetType: "merchant",
      targetId: m.id,
      after: m,
    });
    return m;
  });
}
