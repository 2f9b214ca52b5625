import type { Db } from "../platform/database.ts";
import type { MerchantCategory, TerminalKind } from "./tables.ts";
import { createMerchant } from "./service.ts";
import { setSettlementTerms } from "./settlement_terms.ts";
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
  { code: "CANTEEN-2W", name: "二食堂风味窗口（外包）", category: "canteen" },
];

/** The demo merchant run by an outside operator, settled monthly at 5% (商户结算). */
export const DEMO_SETTLED_MERCHANT = "CANTEEN-2W";

/** Sets the demo outsourced window's settlement terms (monthly, 5%, its operator's account). */
export async function seedDemoSettlementTerms(db: Db): Promise<number> {
  const m = await db.selectFrom("merchants").select("id").where("code", "=", DEMO_SETTLED_MERCHANT)
    .executeTakeFirstOrThrow();
  await setSettlementTerms(db, { staffId: null }, {
    merchantId: m.id,
    settles: true,
    period: "monthly",
    feeRateBp: 500,
    payeeName: "昆明味道餐饮管理有限公司",
    payeeBank: "中国农业银行昆明呈贡支行",
    payeeAccount: "6228 4801 2345 6789 012",
  });
  return m.id;
}

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
