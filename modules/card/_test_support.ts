/** Shared setup of the card module's tests. */
import { createApp } from "../../main.ts";
import { loadAssets } from "../platform/assets.ts";
import { createTestDatabase, TestClient, testConfig } from "../platform/testing.ts";
import { randomToken, sha256Hex, STUDENT_SESSION } from "../security/mod.ts";
import { createStaff, type Role } from "../staff/mod.ts";
import { ensureSchool } from "../account/mod.ts";
import { createCardAccountForTest, DEMO_SCHOOL } from "./fixtures.ts";
import type { Db } from "../platform/database.ts";

/** Valid, made-up 身份证 numbers (check characters computed). */
export const IDS = {
  zhang: "53010220050315123X",
  li: "530102200601204526",
  wang: "530111200511093021",
  other: "530102199901011237",
};

/** A fresh database, config, app, the demo school, another school and one cardholder. */
export async function setup() {
  await loadAssets();
  const h = await createTestDatabase();
  const config = testConfig();
  const deps = { db: h.db, config, onShutdown: () => {} };
  const app = createApp(deps);
  const school = await ensureSchool(h.db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  const otherSchool = await ensureSchool(h.db, "昆明理工学院", "KMLG");
  const zhang = await createCardAccountForTest(h.db, deps, {
    schoolId: school.id,
    studentNumber: "2024010001",
    idNumber: IDS.zhang,
    chipNumber: "3158642907",
    name: "张三",
  });
  return {
    h,
    db: h.db,
    config,
    deps,
    app,
    school,
    otherSchool,
    zhang,
    client: (ip = "10.1.0.1") => new TestClient(app, config, ip),
  };
}

let phoneSeq = 0;

/** A login account in `schoolId` (password hash is a placeholder: tests sign in by session). */
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

/** Signs a test client in as a login account by creating its session row directly. */
export async function signInAs(db: Db, client: TestClient, accountId: number): Promise<void> {
  const token = randomToken(32);
  const now = Date.now();
  await db.insertInto("sessions").values({
    id: await sha256Hex(token),
    kind: "student",
    subject_id: accountId,
    idle_expires_at: new Date(now + STUDENT_SESSION.idleSeconds * 1000),
    absolute_expires_at: new Date(now + STUDENT_SESSION.absoluteSeconds * 1000),
    ip: null,
    user_agent: null,
  }).execute();
  client.cookies.set("yxt_sid", token);
}

/** A staff member with `roles`, signed in on a new client. */
export async function staffClient(
  env: Awaited<ReturnType<typeof setup>>,
  username: string,
  roles: Role[],
): Promise<TestClient> {
  await createStaff(env.db, { username, name: username, password: "Staff12345", roles });
  const c = env.client(`10.2.0.${(username.length * 7) % 250}`);
  const res = await c.post("/admin/login", { username, password: "Staff12345" });
  if (res.status !== 303) throw new Error(`staff sign-in failed: ${res.status}`);
  return c;
}
