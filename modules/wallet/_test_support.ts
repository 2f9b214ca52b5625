/** Shared setup of the wallet's tests: an app, a merchant, students with bound cards. */
import type { Db } from "../platform/database.ts";
import type { testConfig } from "../platform/testing.ts";
import { randomDigits } from "../security/mod.ts";
import { makeAccount, setupApp, signInStudent } from "../testkit/mod.ts";
import { ensureSchool } from "../account/mod.ts";
import { createMerchant } from "../merchant/mod.ts";
import { bindCardForTest, createCardAccountForTest, DEMO_SCHOOL } from "../card/mod.ts";
import { creditTopUp } from "./payments.ts";
import { grantLots, subsidyFundingAccount } from "./lots.ts";

let grantSeq = 0;

/** A 补助 lot of `amount` on a card: where (default everywhere) and when (ms from now) it may be spent. */
export async function grantLot(
  db: Db,
  cardAccountId: number,
  amount: number,
  options: { categories?: string[]; from?: number; until?: number; batchId?: number } = {},
): Promise<string> {
  const school = await ensureSchool(db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  const reference = `test-grant-${cardAccountId}-${++grantSeq}-${randomDigits(6)}`;
  await db.transaction().execute(async (trx) => {
    await grantLots(trx, {
      purse: "subsidy",
      fundingAccountId: await subsidyFundingAccount(trx, { id: school.id, name: school.name }),
      batchId: options.batchId ?? null,
      validFrom: new Date(Date.now() + (options.from ?? -3600_000)),
      validUntil: new Date(Date.now() + (options.until ?? 30 * 86400_000)),
      categories: options.categories ?? ["canteen", "supermarket", "shower", "utilities"],
    }, [{ cardAccountId, amount, reference }]);
  });
  return reference;
}

/** Valid made-up 身份证 numbers (check characters computed). */
const IDS = [
  "53010220050315123X",
  "530102200601204526",
  "530111200511093021",
  "530102199901011237",
];
let seq = 0;

/** A card account with `balance` fen topped up through the sandbox gateway. */
export async function makeCardAccount(
  db: Db,
  deps: { config: ReturnType<typeof testConfig> },
  balance = 0,
) {
  const n = seq++;
  const school = await ensureSchool(db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  const card = await createCardAccountForTest(db, { config: deps.config }, {
    schoolId: school.id,
    studentNumber: `2024${randomDigits(8)}`,
    idNumber: IDS[n % IDS.length],
    chipNumber: `31${randomDigits(10)}`,
  });
  if (balance > 0) {
    await creditTopUp(db, {
      cardAccountId: card.cardAccountId,
      amount: balance,
      method: "sandbox",
      reference: `seed-${card.cardAccountId}`,
    });
  }
  return card.cardAccountId;
}

/** A fresh database with the app, one canteen merchant and helpers. */
export async function setup(options: { poolSize?: number } = {}) {
  const w = await setupApp({}, options);
  const { h, config, app } = w;
  const deps = { db: h.db, config, onShutdown: () => {} };
  const merchant = await createMerchant(h.db, {
    code: `CANTEEN-${seq++}`,
    name: "第一食堂",
    category: "canteen",
  });
  const shower = await createMerchant(h.db, {
    code: `SHOWER-${seq++}`,
    name: "热水服务",
    category: "shower",
  });
  return {
    h,
    db: h.db,
    config,
    deps,
    app,
    merchant,
    shower,
    card: (balance = 0) => makeCardAccount(h.db, deps, balance),
    /** A 补助 lot on a card (`grantLot`). */
    lot: (card: number, amount: number, options?: Parameters<typeof grantLot>[3]) =>
      grantLot(h.db, card, amount, options),
    /** A signed-in student whose login account is bound to a card with `balance`. */
    async student(balance = 0, ip = "10.2.0.1") {
      const cardAccountId = await makeCardAccount(h.db, deps, balance);
      const accountId = await makeAccount(h.db, await school(h.db));
      await bindCardForTest(h.db, cardAccountId, accountId);
      const client = w.client(ip);
      await signInStudent(deps, client, accountId);
      return { client, cardAccountId, accountId };
    },
  };
}

async function school(db: Db): Promise<number> {
  return (await ensureSchool(db, DEMO_SCHOOL.name, DEMO_SCHOOL.code)).id;
}

/** Whether tests run on a PostgreSQL server (concurrency tests need real connections). */
export const onPostgres = !!Deno.env.get("DATABASE_URL");
