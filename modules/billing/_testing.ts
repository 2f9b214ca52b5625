/** Builders for billing's tests: an app on a fresh database, signed-in students with money. */
import { createApp } from "../../main.ts";
import { createTestDatabase, TestClient, testConfig } from "../platform/testing.ts";
import { loadAssets } from "../platform/assets.ts";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { ensureSchool, registerAccount } from "../account/mod.ts";
import { bindCardForTest, createCardAccountForTest, DEMO_SCHOOL } from "../card/mod.ts";
import { creditTopUp, verifyLedger } from "../wallet/mod.ts";
import { createStaff, type Role } from "../staff/mod.ts";
import { createBuilding, createRoom, type Room } from "./rooms.ts";
import type { UtilityMoney } from "./delivery.ts";
import { walletMoney } from "./wallet_link.ts";

/** A test's world: database, configuration, app, and a way to make browsers. */
export interface World {
  db: Db;
  /** The PostgreSQL URL of this test's database (null on PGlite): a second "instance" can connect. */
  url: string | null;
  config: Config;
  app: ReturnType<typeof createApp>;
  client(ip?: string): TestClient;
  close(): Promise<void>;
}

/** A fresh migrated database and the whole app on it. */
export async function makeWorld(): Promise<World> {
  await loadAssets();
  const h = await createTestDatabase();
  const config = testConfig();
  const app = createApp({ db: h.db, config, onShutdown: () => {} });
  return {
    db: h.db,
    url: h.url,
    config,
    app,
    client: (ip = "10.1.0.1") => new TestClient(app, config, ip),
    close: () => h.close(),
  };
}

/** An 18-character 身份证 number with a valid check character, distinct per `n`. */
export function idNumberFor(n: number): string {
  const birth = new Date(Date.UTC(2000, 0, 1) + (Math.floor(n / 1000) % 3650) * 86400_000);
  const ymd = birth.toISOString().slice(0, 10).replaceAll("-", "");
  const body = `530102${ymd}${String(n % 1000).padStart(3, "0")}`;
  const weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const sum = [...body].reduce((s, d, i) => s + Number(d) * weights[i], 0);
  return body + "10X98765432"[sum % 11];
}

let seq = 0;

/** A student: login account, bound card with `balance` fen, signed in on a TestClient. */
export async function makeStudent(
  w: World,
  options: { balance?: number; name?: string; bound?: boolean } = {},
): Promise<{ accountId: number; cardAccountId: number | null; phone: string; client: TestClient }> {
  const n = ++seq + Math.floor(Math.random() * 1_000_000);
  const phone = `139${String(n).padStart(8, "0")}`;
  const school = await ensureSchool(w.db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  const accountId = await registerAccount(w.db, {
    phone,
    password: "Pass12345",
    schoolId: school.id,
  });
  let cardAccountId: number | null = null;
  if (options.bound !== false) {
    const card = await createCardAccountForTest(w.db, { config: w.config }, {
      schoolId: school.id,
      studentNumber: `2025${String(n).padStart(6, "0")}`,
      idNumber: idNumberFor(n),
      name: options.name ?? "测试学生",
    });
    cardAccountId = card.cardAccountId;
    await bindCardForTest(w.db, cardAccountId, accountId);
    if (options.balance) {
      await creditTopUp(w.db, {
        cardAccountId,
        amount: options.balance,
        method: "test",
        reference: `test-topup:${cardAccountId}`,
      });
    }
  }
  const client = w.client(`10.2.${n % 250}.${(n >> 8) % 250}`);
  const res = await client.post("/login", { phone, password: "Pass12345" });
  if (res.status !== 303) {
    throw new Error(`Cannot sign in test student: ${res.status} ${await res.text()}`);
  }
  return { accountId, cardAccountId, phone, client };
}

/** A staff member with `roles`, signed in. */
export async function makeStaff(w: World, username: string, roles: Role[]): Promise<TestClient> {
  await createStaff(w.db, { username, name: username, password: "Staff12345", roles });
  const c = w.client(`10.3.0.${roles.length + username.length}`);
  const res = await c.post("/admin/login", { username, password: "Staff12345" });
  if (res.status !== 303) throw new Error(`Cannot sign in staff ${username}: ${res.status}`);
  return c;
}

/** A building "B01 1号楼" with rooms 101 and 102 (capacity 4). */
export async function makeRooms(db: Db): Promise<{ r101: Room; r102: Room }> {
  const b = await createBuilding(db, { code: "B01", name: "1号楼" });
  return {
    r101: await createRoom(db, { buildingId: b.id, number: "101", capacity: 4 }),
    r102: await createRoom(db, { buildingId: b.id, number: "102", capacity: 4 }),
  };
}

/** The real wallet, counting calls (to show that retries do not move money twice). */
export function countingMoney(): UtilityMoney & { pays: number; refunds: number } {
  const m = {
    pays: 0,
    refunds: 0,
    pay: (db: Db, input: Parameters<UtilityMoney["pay"]>[1]) => {
      m.pays++;
      return walletMoney.pay(db, input);
    },
    refund: (db: Db, input: Parameters<UtilityMoney["refund"]>[1]) => {
      m.refunds++;
      return walletMoney.refund(db, input);
    },
    isInsufficientFunds: walletMoney.isInsufficientFunds,
  };
  return m;
}

/** Throws unless the wallet's ledger verifier is happy. */
export async function assertLedgerBalanced(db: Db): Promise<void> {
  const report = await verifyLedger(db);
  if (!report.ok) throw new Error(`Ledger does not balance: ${report.problems.join("; ")}`);
}
