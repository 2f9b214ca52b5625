/** The card module's test world: the app, the demo school, another school, one cardholder. */
import type { Db } from "../platform/database.ts";
import { ensureSchool } from "../account/mod.ts";
import { createCardAccountForTest, DEMO_SCHOOL } from "../card/mod.ts";
import { setupApp } from "./world.ts";

/** Valid, made-up 身份证 numbers (check characters computed). */
export const IDS = {
  zhang: "53010220050315123X",
  li: "530102200601204526",
  wang: "530111200511093021",
  other: "530102199901011237",
};

/**
 * A fresh world (testkit's `setupApp`: `await using` closes it) with the demo school, a second
 * school and 张三's card account (学号 2024010001, chip 3158642907).
 */
export async function cardWorld() {
  const w = await setupApp();
  const deps = { db: w.db, config: w.config, onShutdown: () => {} };
  const school = await ensureSchool(w.db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  const otherSchool = await ensureSchool(w.db, "昆明理工学院", "KMLG");
  const zhang = await createCardAccountForTest(w.db, deps, {
    schoolId: school.id,
    studentNumber: "2024010001",
    idNumber: IDS.zhang,
    chipNumber: "3158642907",
    name: "张三",
  });
  return { ...w, deps, school, otherSchool, zhang };
}

let phoneSeq = 0;

/** A login account in `schoolId` (its password hash is a placeholder: tests sign in by session). */
export async function makeAccount(db: Db, schoolId: number, phone?: string): Promise<number> {
  const row = await db.insertInto("accounts").values({
    phone: phone ??
      `139${String(Date.now() % 100000).padStart(5, "0")}${
        String(phoneSeq++ % 1000).padStart(3, "0")
      }`,
    school_id: schoolId,
    password_hash: "not-a-real-hash",
  }).returning("id").executeTakeFirstOrThrow();
  return row.id;
}
