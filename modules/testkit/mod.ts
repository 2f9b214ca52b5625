/** Test worlds shared by the money modules' tests: the app, students with bound cards, signed-in staff. */
import { Hono } from "hono";
import type { AppEnv } from "../platform/http.ts";
import type { Config } from "../platform/config.ts";
import type { Db } from "../platform/database.ts";
import { type Fetcher, TestClient } from "../platform/testing.ts";
import { signIn } from "../security/mod.ts";
import { ensureSchool, registerAccount } from "../account/mod.ts";
import { bindCardForTest, createCardAccountForTest, DEMO_SCHOOL } from "../card/mod.ts";
import { createStaff, type Role } from "../staff/mod.ts";
import { creditTopUp } from "../wallet/mod.ts";

let serial = 0;

/** A valid 18-character 身份证 number (check character computed) from a 17-digit body. */
export function idNumberFor(body17: string): string {
  const w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const sum = [...body17].reduce((s, d, i) => s + Number(d) * w[i], 0);
  return body17 + "10X98765432"[sum % 11];
}

/** Signs `client` in as the login account, as the real sign-in would (a session cookie). */
export async function signInStudent(
  deps: { db: Db; config: Config },
  client: TestClient,
  accountId: number,
): Promise<void> {
  const helper = new Hono<AppEnv>();
  helper.use("*", async (c, next) => {
    c.set("sessionId", null);
    c.set("accountId", null);
    c.set("staffSessionId", null);
    await next();
  });
  helper.post("/", async (c) => {
    await signIn(c, deps, "student", accountId);
    return c.text("ok");
  });
  const res = await helper.request("http://localhost:8000/", { method: "POST" });
  for (const line of res.headers.getSetCookie()) {
    const pair = line.split(";")[0];
    const eq = pair.indexOf("=");
    client.cookies.set(pair.slice(0, eq), pair.slice(eq + 1));
  }
}

/**
 * A login account with a bound card account (unbound with `bind: false`) holding `balance` fen,
 * signed in on a fresh client.
 */
export async function makeStudent(
  ctx: { db: Db; config: Config; app: Fetcher },
  options: { bind?: boolean; balance?: number; name?: string } = {},
): Promise<{ accountId: number; cardAccountId: number; phone: string; client: TestClient }> {
  const n = ++serial + Math.floor(Math.random() * 1000) * 100;
  const school = await ensureSchool(ctx.db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  const phone = `139${String(10_000_000 + n).slice(-8)}`;
  const accountId = await registerAccount(ctx.db, {
    phone,
    password: "Passw0rd1",
    schoolId: school.id,
  });
  const card = await createCardAccountForTest(ctx.db, ctx, {
    studentNumber: `2025${String(100_000 + n).slice(-6)}`,
    idNumber: idNumberFor(`53010220050315${String(1000 + n).slice(-3)}`),
    name: options.name ?? "测试学生",
  });
  if (options.bind !== false) await bindCardForTest(ctx.db, card.cardAccountId, accountId);
  if (options.balance) {
    await creditTopUp(ctx.db, {
      cardAccountId: card.cardAccountId,
      amount: options.balance,
      method: "test",
      reference: `test-topup:${card.cardAccountId}`,
    });
  }
  const client = new TestClient(ctx.app, ctx.config, `10.1.${n % 250}.${(n >> 8) % 250}`);
  await signInStudent(ctx, client, accountId);
  return { accountId, cardAccountId: card.cardAccountId, phone, client };
}

/** A staff member with the given roles, signed in on a fresh client. */
export async function makeStaff(
  ctx: { db: Db; config: Config; app: Fetcher },
  username: string,
  roles: Role[],
): Promise<{ id: number; client: TestClient }> {
  const id = await createStaff(ctx.db, { username, name: username, password: "Staff12345", roles });
  const client = new TestClient(ctx.app, ctx.config, `10.9.${id % 250}.1`);
  const res = await client.post("/admin/login", { username, password: "Staff12345" });
  if (res.status !== 303) throw new Error(`staff sign-in of ${username} answered ${res.status}`);
  return { id, client };
}

export { setupApp, type TestWorld } from "./world.ts";

/** The card module's world: two schools and 张三's card account; login accounts without a card. */
export { cardWorld, IDS, makeAccount } from "./card_world.ts";
/** The security suite's seeded world, crawler and page checks (modules/security/suite_*_test.ts). */
export * from "./security_suite.ts";
