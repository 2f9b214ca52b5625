import type { Db } from "../platform/database.ts";
import type { MerchantCategory, TerminalKind } from "./tables.ts";
import { createMerchant } from "./service.ts";
import "./tables.ts";

/** The demo readers, one of each kind; on a fresh database they get ids 10001–10004 in this order. */
export const DEMO_TERMINALS: ReadonlyArray<
  { merchantCode: string; kind: TerminalKind; name: string }
> = [
  { merchantCode: "CANTEEN-1", kind: "canteen_pos", name: "一食堂1号窗口POS" },
  { merchantCode: "MARKET-1", kind: "supermarket_pos", name: "校园超市收银台1" },
  { merchantCode: "CANTEEN-1", kind: "qr_scanner", name: "一食堂扫码器" },
  { merchantCode: "SHOWER-1", kind: "shower", name: "1号楼淋浴水控101" },
];

const DEMO_MERCHANTS: ReadonlyArray<{ code: string; name: string; category: MerchantCategory }> = [
  { code: "CANTEEN-1", name: "第一食堂", category: "canteen" },
  { code: "MARKET-1", name: "校园超市", category: "supermarket" },
  { code: "SHOWER-1", name: "宿舍淋浴热水", category: "shower" },
];

/** Creates the demo merchants and readers that are missing; returns the readers' ids. */
export async function seedDemoMerchants(db: Db): Promise<number[]> {
  const ids: number[] = [];
  for (const m of DEMO_MERCHANTS) {
    const exists = await db.selectFrom("merchants").select("id").where("code", "=", m.code)
      .executeTakeFirst();
    if (!exists) await createMerchant(db, m);
  }
  for (const t of DEMO_TERMINALS) {
    const merchant = await db.selectFrom("merchants").select("id").where(
      "code",
      "=",
      t.merchantCode,
    )
      .executeTakeFirstOrThrow();
    const existing = await db.selectFrom("terminals").select("id").where(
      "merchant_id",
      "=",
      merchant.id,
    )
      .where("name", "=", t.name).executeTakeFirst();
    const row = existing ??
      await db.insertInto("terminals").values({
        merchant_id: merchant.id,
        kind: t.kind,
        name: t.name,
      })
        .returning("id").executeTakeFirstOrThrow();
    ids.push(row.id);
  }
  return ids;
}
