import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { ALL_ROLES, createStaff, hasStaff } from "../staff/mod.ts";
import { seedDemoBilling } from "../billing/mod.ts";
import { seedDemoMerchants, seedDemoSettlementTerms } from "../merchant/mod.ts";
import { ensureSchool, seedDemoAccount } from "../account/mod.ts";
import { DEMO_CARDHOLDERS, DEMO_SCHOOL, seedDemoCards, seedDemoMealPeriods } from "../card/mod.ts";
import { seedDemoTakings, seedDemoWallet } from "../wallet/mod.ts";
import { seedDemoSubsidy } from "../subsidy/mod.ts";

/** The demo staff sign-in printed at start. */
export const DEMO_ADMIN = { username: "admin", password: "Admin12345" };

/**
 * Seeds demo data once, on an empty database (no staff yet). Returns whether it seeded.
 * Each module contributes through its own public seed function.
 */
export async function seedDemoData(deps: { db: Db; config: Config }): Promise<boolean> {
  const { db } = deps;
  if (await hasStaff(db)) return false;
  const admin = await createStaff(db, {
    username: DEMO_ADMIN.username,
    name: "演示管理员",
    password: DEMO_ADMIN.password,
    roles: [...ALL_ROLES],
    // A published password: the console asks for a new one at the first sign-in.
    mustChangePassword: true,
  });
  // The school 云南城市建设职业学院 and the demo student 13800000001 / Demo12345.
  await seedDemoAccount(db);
  // Cardholders 2024010001 张三 (bound to 13800000001), 2024010002 李四, 2024010003 王芳, T2019008
  // 赵老师, each with a chip; default card passwords in README (一卡通中心).
  await seedDemoCards(db, deps);
  // 第一食堂, 校园超市, 宿舍淋浴热水 and one reader of each kind (ids 10001–10004; `deno task sim keys`),
  // and 二食堂风味窗口（外包）.
  await seedDemoMerchants(db);
  // Dormitory buildings 1号楼–3号楼 (B01–B03), rooms 101–308, for 电费充值 and 冷水充值.
  await seedDemoBilling(db);
  // ¥200.00 opening balance for each demo cardholder, as a 调账 transfer in the ledger.
  await seedDemoWallet(db, DEMO_CARDHOLDERS.map((c) => c.chipNumber));
  // 二食堂风味窗口（外包）, run by an outside operator (商户结算: monthly, 5% fee), and its takings
  // of last month: ¥37.30 each from 王芳 and 赵老师, a whole period ready to settle.
  const outsourced = await seedDemoSettlementTerms(db);
  await seedDemoTakings(db, {
    merchantId: outsourced,
    chipNumbers: [DEMO_CARDHOLDERS[2].chipNumber, DEMO_CARDHOLDERS[3].chipNumber],
    amounts: [1580, 2150],
  });
  // 餐次 at the outsourced window (早餐, 午餐, 晚餐; no caps or discounts yet), after its takings.
  await seedDemoMealPeriods(db, outsourced);
  // 补助发放: the admin's batch of ¥50.00 for each demo student (食堂, 超市, to the end of next
  // month), prepared, waiting for another finance member's approval; nothing credited.
  await seedDemoSubsidy(db, {
    staffId: admin,
    schoolId: (await ensureSchool(db, DEMO_SCHOOL.name, DEMO_SCHOOL.code)).id,
    studentNumbers: DEMO_CARDHOLDERS.slice(0, 3).map((c) => c.studentNumber),
  });
  return true;
}
