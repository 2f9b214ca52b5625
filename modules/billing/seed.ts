import type { Db } from "../platform/database.ts";
import { importRoomsCsv } from "./rooms.ts";
import { setThreshold } from "./readings.ts";

/**
 * Three dormitory buildings with a floor of rooms each and 低余量提醒 for their rooms, once (skipped
 * when any building exists).
 */
export async function seedDemoBilling(db: Db): Promise<boolean> {
  const any = await db.selectFrom("billing_buildings").select("id").limit(1).executeTakeFirst();
  if (any) return false;
  const lines = ["楼栋编码,楼栋名称,房间号,床位数"];
  for (const [code, name] of [["B01", "1号楼"], ["B02", "2号楼"], ["B03", "3号楼"]]) {
    for (let floor = 1; floor <= 3; floor++) {
      for (let n = 1; n <= 8; n++) {
        lines.push(`${code},${name},${floor}${String(n).padStart(2, "0")},4`);
      }
    }
  }
  await db.transaction().execute(async (trx) => {
    await importRoomsCsv(trx, lines.join("\n"));
    // 低余量提醒 as a school might set them for its 4-person rooms: 20 度, 2 吨.
    await setThreshold(trx, {
      utility: "electricity",
      capacity: 4,
      milliUnits: 20_000,
      staffId: null,
    });
    await setThreshold(trx, { utility: "water", capacity: 4, milliUnits: 2_000, staffId: null });
  });
  return true;
}
