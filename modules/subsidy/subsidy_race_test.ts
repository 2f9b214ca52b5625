/**
 * 补助发放 under concurrency, on PostgreSQL (DATABASE_URL): approvals of one batch submitted at
 * once by two checkers, twice each, credit every card exactly once; expiry racing payments on
 * approved lots sends back exactly what they did not spend.
 */
import assert from "node:assert/strict";
import { sql } from "kysely";
import { chinaDay } from "../platform/china_time.ts";
import { createTestDatabase, testConfig } from "../platform/testing.ts";
import { createStaff, ROLES } from "../staff/mod.ts";
import { ensureSchool } from "../account/mod.ts";
import { createCardAccountForTest, DEMO_SCHOOL } from "../card/mod.ts";
import { createMerchant } from "../merchant/mod.ts";
import { expireLots, payFromCard, verifyLedger } from "../wallet/mod.ts";
import { idNumberFor } from "../testkit/mod.ts";
import { approveBatch, createBatch } from "./mod.ts";

const onPostgres = !!Deno.env.get("DATABASE_URL");
const DAY = 86_400_000;

async function world(cards: number) {
  const h = await createTestDatabase({ poolSize: 20 });
  const config = testConfig();
  const school = await ensureSchool(h.db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  const ids: Array<{ id: number; number: string }> = [];
  for (let i = 0; i < cards; i++) {
    const number = `2026${String(100_000 + i).slice(-6)}`;
    const c = await createCardAccountForTest(h.db, { config }, {
      studentNumber: number,
      idNumber: idNumberFor(`53010220050316${String(1000 + i).slice(-3)}`),
      name: "测试学生",
    });
    ids.push({ id: c.cardAccountId, number });
  }
  const staff = [];
  for (const u of ["maker", "checker1", "checker2"]) {
    staff.push(
      await createStaff(h.db, {
        username: u,
        name: u,
        password: "Staff12345",
        roles: [ROLES.finance],
      }),
    );
  }
  const list = new TextEncoder().encode(
    `学号,金额\n${ids.map((c, i) => `${c.number},${(i % 5) + 1}`).join("\n")}\n`,
  );
  const batch = await createBatch(h.db, { staffId: staff[0], ip: null }, {
    name: "并发审核",
    purpose: "测试",
    schoolId: school.id,
    purse: "subsidy",
    source: "list",
    list,
    amount: null,
    validFrom: chinaDay(),
    validUntil: chinaDay(Date.now() + DAY),
    categories: ["canteen"],
  });
  return { h, ids, staff, batch, [Symbol.asyncDispose]: () => h.close() };
}

Deno.test({
  name: "approvals of one batch submitted at once by two checkers credit each card once",
  ignore: !onPostgres,
  async fn() {
    await using w = await world(40);
    const results = await Promise.allSettled(
      [1, 2, 1, 2, 1, 2].map((s) =>
        approveBatch(w.h.db, { staffId: w.staff[s], ip: null }, w.batch, { chunk: 3 })
      ),
    );
    for (const r of results) {
      assert.equal(r.status, "fulfilled", String((r as PromiseRejectedResult).reason));
    }
    const credited = results.reduce(
      (s, r) => s + (r.status === "fulfilled" ? r.value.credited : 0),
      0,
    );
    assert.equal(credited, 40);
    const { rows } = await sql<{ card_account_id: number; n: number; granted: number }>`
      select card_account_id, count(*)::int as n, sum(granted)::int as granted from purse_lots
      where batch_id = ${w.batch} group by card_account_id`.execute(w.h.db);
    assert.equal(rows.length, 40);
    assert.ok(rows.every((r) => r.n === 1), "a card got two lots");
    assert.equal(
      rows.reduce((s, r) => s + r.granted, 0),
      w.ids.reduce((s, _, i) => s + ((i % 5) + 1) * 100, 0),
    );
    const b = await w.h.db.selectFrom("subsidy_batches").selectAll().where("id", "=", w.batch)
      .executeTakeFirstOrThrow();
    assert.equal(b.state, "approved");
    const audits = await w.h.db.selectFrom("audit_log").select("action")
      .where("target_type", "=", "subsidy_batch").where("target_id", "=", String(w.batch))
      .execute();
    assert.equal(audits.filter((a) => a.action === "subsidy.approved").length, 1);
    assert.equal(audits.filter((a) => a.action === "subsidy.completed").length, 1);
    const r = await verifyLedger(w.h.db);
    assert.equal(r.ok, true, r.problems.join("; "));
  },
});

Deno.test({
  name:
    "the expiry worker racing canteen payments on approved lots returns exactly what was not spent",
  ignore: !onPostgres,
  async fn() {
    await using w = await world(10);
    await approveBatch(w.h.db, { staffId: w.staff[1], ip: null }, w.batch);
    const canteen = await createMerchant(w.h.db, {
      code: "CT-RACE",
      name: "食堂",
      category: "canteen",
    });
    // Payments (the lots still live for them) and rounds of the worker told the lots have ended
    // run at once: whichever takes a lot's money first has it, the other sees it gone (a payment
    // is then refused: the card has no cash).
    const end = new Date(Date.now() + 2 * DAY);
    await Promise.allSettled([
      ...w.ids.map((c, i) =>
        payFromCard(w.h.db, {
          cardAccountId: c.id,
          merchantId: canteen.id,
          amount: 50,
          reference: `race-${i}`,
        })
      ),
      expireLots(w.h.db, end),
      expireLots(w.h.db, end),
    ]);
    await expireLots(w.h.db, end);
    const { rows: [t] } = await sql<
      { issued: number; spent: number; expired: number; left: number }
    >`
      select
        (select coalesce(sum(amount), 0)::int from ledger_transfers where kind = 'subsidy') as issued,
        (select coalesce(sum(amount), 0)::int from ledger_transfers where kind = 'purchase') as spent,
        (select coalesce(sum(amount), 0)::int from ledger_transfers where kind = 'subsidy_expiry')
          as expired,
        (select coalesce(sum(remaining), 0)::int from purse_lots) as left`.execute(w.h.db);
    assert.equal(t.left, 0);
    assert.equal(t.issued, t.spent + t.expired);
    const r = await verifyLedger(w.h.db);
    assert.equal(r.ok, true, r.problems.join("; "));
  },
});
