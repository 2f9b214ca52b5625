import type { Db } from "../platform/database.ts";
import { importRoomsCsv } from "./rooms.ts";

/** Three dormitory buildings with a floor of rooms each, once (skipped when any building exists). */
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
  await db.transaction().execute((trx) => importRoomsCsv(trx, lines.join("\n")));
  return true;
}
