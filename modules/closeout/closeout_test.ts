import assert from "node:assert/strict";
import type { CompiledQuery, Transaction } from "kysely";
import type { Database, Db } from "../platform/database.ts";
import { csrfFor } from "../platform/testing.ts";
import { ROLES } from "../staff/mod.ts";
import { buildGateways, runTopupTick } from "../topup/mod.ts";
import {
  applyOfflinePayment,
  getBalance,
  grantLots,
  holdFunds,
  purseLines,
  releaseHold,
  subsidyFundingAccount,
  verifyLedger,
} from "../wallet/mod.ts";
import { createMerchant } from "../merchant/mod.ts";
import { saveCardType } from "../card/mod.ts";
import { makeStaff, makeStudent, setupApp, type TestWorld } from "../testkit/mod.ts";
import { confirmBatch, createBatch, runCloseoutRound } from "./mod.ts";

const DAY = 86_400_000;
const today = () => new Date(Date.now() + 8 * 3_600_000).toISOString().slice(0, 10);

/** A student with `cash` fen topped up by the test method and `wechat` fen by a paid sandbox order. */
async function holder(w: TestWorld, money: { cash?: number; wechat?: number }) {
  const s = await makeStudent(w, { balance: money.cash });
  if (money.wechat) {
    const res = await s.client.post("/wallet/recharge", {
      amount: String(money.wechat / 100),
      method: "sandbox",
    });
    const orderNo = res.headers.get("location")!.split("/").pop()!;
    assert.equal((await s.client.post(`/pay/sandbox/${orderNo}/confirm`)).status, 303);
    await runTopupTick(w, buildGateways(w), w.app);
  }
  assert.equal(
    (await getBalance(w.db, s.cardAccountId)).balance,
    (money.cash ?? 0) + (money.wechat ?? 0),
  );
  const card = await w.db.selectFrom("card_accounts").select("student_number")
    .where("id", "=", s.cardAccountId).executeTakeFirstOrThrow();
  return { ...s, studentNumber: card.student_number };
}

async function schoolOf(w: TestWorld, cardAccountId: number): Promise<number> {
  return (await w.db.selectFrom("card_accounts").select("school_id")
    .where("id", "=", cardAccountId).executeTakeFirstOrThrow()).school_id;
}

const list = (numbers: string[]) => new TextEncoder().encode(`学号\n${numbers.join("\n")}\n`);

async function upload(
  c: Awaited<ReturnType<typeof makeStaff>>["client"],
  fields: Record<string, string>,
  text: string,
): Promise<Response> {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.set(k, v);
  form.set("_csrf", await csrfFor(c.config, c.cookies, true));
  form.set("file", new File([text], "名单.csv", { type: "text/csv" }));
  return await c.app.request("http://localhost:8000/admin/closeout/new", {
    method: "POST",
    headers: { cookie: [...c.cookies].map(([k, v]) => `${k}=${v}`).join("; ") },
    body: form,
  }, { remoteAddr: { transport: "tcp", hostname: c.ip, port: 50000 } });
}

async function runAll(w: TestWorld, now = new Date()) {
  const gateways = buildGateways(w);
  while (await runCloseoutRound(w, { gateways, now }) > 0) { /* until nothing is due */ }
}

async function assertLedger(w: TestWorld) {
  const r = await verifyLedger(w.db);
  assert.equal(r.ok, true, r.problems.join("; "));
}

Deno.test("a 学号 list with a line that is not a 学号 comes back with that line, and no batch is made", async () => {
  await using w = await setupApp();
  const s = await holder(w, { cash: 10_00 });
  const clerk = await makeStaff(w, "co1", [ROLES.cardOffice]);
  const fields = {
    name: "2025届",
    school_id: String(await schoolOf(w, s.cardAccountId)),
    kind: "",
    close_on: today(),
    refund_rule: "origin_first",
    payout_method: "bank",
    threshold: "0",
  };
  const bad = await upload(clerk.client, fields, `学号\n${s.studentNumber}\n=cmd|calc\n`);
  assert.equal(bad.status, 422);
  assert.match(await bad.text(), /名单第 3 行的学号“=cmd\|calc”格式不正确/);
  const past = await upload(clerk.client, { ...fields, close_on: "2020-01-01" }, s.studentNumber);
  assert.equal(past.status, 422);
  assert.match(await past.text(), /离校日期不能早于今天/);
  assert.equal((await w.db.selectFrom("closeout_batches").selectAll().execute()).length, 0);

  const ok = await upload(clerk.client, fields, `学号\n${s.studentNumber}\n9999999999\n`);
  assert.equal(ok.status, 303);
  const page = await clerk.client.page(ok.headers.get("location")!);
  assert.match(page, /卡数<\/dt><dd>1<\/dd>[\s\S]*余额合计<\/dt><dd>¥10\.00/);
  assert.match(page, /名单中有 1 个学号没有找到未注销的一卡通账户：9999999999/);
  // Nothing about the card changed.
  assert.equal((await getBalance(w.db, s.cardAccountId)).balance, 10_00);
});

Deno.test("a batch by 卡类别 takes the open cards of that type only; an unknown type or no narrowing at all comes back with its message", async () => {
  await using w = await setupApp();
  const clerk = await makeStaff(w, "co1", [ROLES.cardOffice]);
  const [a, b, c] = [await holder(w, {}), await holder(w, {}), await holder(w, {})];
  const school = await schoolOf(w, a.cardAccountId);
  assert.equal(await schoolOf(w, c.cardAccountId), school);
  const graduate = await saveCardType(w.db, { staffId: clerk.id }, null, {
    name: "研究生",
    kind: "student",
    payLimit: 500_00,
    dailyLimit: 1000_00,
    subsidies: true,
    prices: {},
  });
  await w.db.updateTable("card_accounts").set({ card_type_id: graduate })
    .where("id", "in", [a.cardAccountId, c.cardAccountId]).execute();
  const fields = {
    name: "2026届研究生",
    school_id: String(school),
    kind: "student",
    close_on: today(),
    refund_rule: "origin_first",
    payout_method: "bank",
    threshold: "0",
  };
  const nothing = await upload(clerk.client, fields, "");
  assert.equal(nothing.status, 422);
  assert.match(await nothing.text(), /请填写学号前缀、选择卡类别或上传学号名单/);
  const unknown = await upload(clerk.client, { ...fields, card_type: "999999" }, "");
  assert.equal(unknown.status, 422);
  assert.match(await unknown.text(), /请选择有效的卡类别/);
  // Type 0 is not "no type" (which would take every open card of the school).
  const zero = await upload(clerk.client, { ...fields, card_type: "0" }, "");
  assert.equal(zero.status, 422);
  assert.match(await zero.text(), /请选择卡类别/);
  assert.equal((await w.db.selectFrom("closeout_batches").selectAll().execute()).length, 0);

  const ok = await upload(clerk.client, { ...fields, card_type: String(graduate) }, "");
  assert.equal(ok.status, 303);
  const page = await clerk.client.page(ok.headers.get("location")!);
  assert.match(page, /学生，卡类别 研究生/);
  assert.match(page, /卡数<\/dt><dd>2<\/dd>/);
  const taken = await w.db.selectFrom("closeout_cards").select("card_account_id")
    .orderBy("card_account_id").execute();
  assert.deepEqual(
    taken.map((r) => r.card_account_id),
    [a.cardAccountId, c.cardAccountId].sort((x, y) => x - y),
  );
  assert.notEqual(b.cardAccountId, a.cardAccountId);
});

Deno.test("closing a batch refunds WeChat top-ups first, pays the rest out, keeps a small balance, and moves money once", async () => {
  await using w = await setupApp();
  const clerk = await makeStaff(w, "co2", [ROLES.cardOffice]);
  const a = await holder(w, { cash: 100_00, wechat: 50_00 });
  const b = await holder(w, { cash: 50 });
  const c = await holder(w, {});
  const actor = { staffId: clerk.id, ip: null };
  const id = await createBatch(w.db, actor, {
    name: "2025届",
    schoolId: await schoolOf(w, a.cardAccountId),
    list: list([a.studentNumber, b.studentNumber, c.studentNumber]),
    closeOn: today(),
    refundRule: "origin_first",
    payoutMethod: "bank",
    threshold: 1_00,
  });
  // The preview: A's ¥50.00 can go back through its WeChat order, ¥100.00 to the payout list;
  // B's ¥0.50 is under the threshold.
  const preview = await clerk.client.page(`/admin/closeout/${id}`);
  assert.match(
    preview,
    /余额合计<\/dt><dd>¥150\.50<\/dd>[\s\S]*预计原路退回微信<\/dt><dd>¥50\.00<\/dd>[\s\S]*预计列入退款名单<\/dt><dd>¥100\.00<\/dd>[\s\S]*小额留存<\/dt><dd>¥0\.50/,
  );
  // Not confirmed: the worker leaves it alone.
  await runAll(w);
  assert.equal((await getBalance(w.db, a.cardAccountId)).balance, 150_00);

  await confirmBatch(w.db, actor, id);
  await runAll(w);
  const rows = await w.db.selectFrom("closeout_cards").selectAll().where("batch_id", "=", id)
    .execute();
  const byCard = new Map(rows.map((r) => [r.card_account_id, r]));
  const ra = byCard.get(a.cardAccountId)!;
  assert.deepEqual(
    [ra.state, ra.outcome, ra.balance, ra.refunded, ra.disposition, ra.left_on_card],
    ["done", "closed", 150_00, 50_00, "payout", 100_00],
  );
  assert.equal(ra.refund_nos!.length, 1);
  const rb = byCard.get(b.cardAccountId)!;
  assert.deepEqual([rb.disposition, rb.left_on_card, rb.refunded], ["kept", 50, 0]);
  assert.equal(byCard.get(c.cardAccountId)!.disposition, "none");

  const cards = await w.db.selectFrom("card_accounts").select(["id", "status", "account_id"])
    .where("id", "in", [a.cardAccountId, b.cardAccountId, c.cardAccountId]).execute();
  assert.ok(cards.every((x) => x.status === "cancelled" && x.account_id === null));
  // A's money: ¥50.00 back through its WeChat order, ¥100.00 paid out; B's ¥0.50 stays.
  assert.equal((await getBalance(w.db, a.cardAccountId)).balance, 0);
  assert.equal((await getBalance(w.db, b.cardAccountId)).balance, 50);
  const refunds = await w.db.selectFrom("topup_refunds").select(["amount", "state"]).execute();
  assert.deepEqual(refunds.map((r) => [r.amount, r.state]), [[50_00, "succeeded"]]);
  const payouts = await w.db.selectFrom("ledger_transfers").select(["card_account_id", "amount"])
    .where("kind", "=", "cash_out").execute();
  assert.deepEqual(payouts.map((p) => [p.card_account_id, p.amount]), [[a.cardAccountId, 100_00]]);

  // The worker crashed after closing A but before writing so: the next one records it, moving
  // nothing again.
  await w.db.updateTable("closeout_cards").set({
    state: "queued",
    outcome: null,
    disposition: null,
    left_on_card: null,
    next_attempt_at: new Date(),
  }).where("id", "=", ra.id).execute();
  await runAll(w);
  const again = await w.db.selectFrom("closeout_cards").selectAll().where("id", "=", ra.id)
    .executeTakeFirstOrThrow();
  assert.deepEqual([again.state, again.outcome, again.disposition, again.left_on_card], [
    "done",
    "closed",
    "payout",
    100_00,
  ]);
  assert.equal((await w.db.selectFrom("topup_refunds").selectAll().execute()).length, 1);
  assert.equal(
    (await w.db.selectFrom("ledger_transfers").selectAll().where("kind", "=", "cash_out")
      .execute()).length,
    1,
  );
  const closed = await w.db.selectFrom("card_events").select("card_account_id")
    .where("kind", "=", "closed").execute();
  assert.equal(closed.length, 3);
  await assertLedger(w);

  // The result file names each card and what was done.
  const csv = await (await clerk.client.get(`/admin/closeout/${id}?export=csv`)).text();
  assert.match(csv, new RegExp(`${a.studentNumber},[^\\n]*已办理,已销户,150\\.00,50\\.00`));
  assert.match(csv, new RegExp(`${b.studentNumber},[^\\n]*小额留存,0\\.50`));
});

Deno.test("a batch due on a later day waits for it; a shower hold keeps its card waiting", async () => {
  await using w = await setupApp();
  const clerk = await makeStaff(w, "co3", [ROLES.cardOffice]);
  const a = await holder(w, { cash: 20_00 });
  const actor = { staffId: clerk.id, ip: null };
  const tomorrow = new Date(Date.now() + 8 * 3_600_000 + DAY).toISOString().slice(0, 10);
  const id = await createBatch(w.db, actor, {
    name: "明天",
    schoolId: await schoolOf(w, a.cardAccountId),
    list: list([a.studentNumber]),
    closeOn: tomorrow,
    refundRule: "payout_only",
    payoutMethod: "cash",
    threshold: 0,
  });
  await confirmBatch(w.db, actor, id);
  await runAll(w);
  let row = await w.db.selectFrom("closeout_cards").selectAll().where("batch_id", "=", id)
    .executeTakeFirstOrThrow();
  assert.equal(row.state, "queued");
  assert.match(
    await clerk.client.page(`/admin/closeout/${id}`),
    new RegExp(`已安排（${tomorrow} 起办理）`),
  );
  // A shower running on the day: the card waits, its money untouched.
  const shower = await createMerchant(w.db, { code: "SH-CO", name: "淋浴", category: "shower" });
  const hold = await holdFunds(w.db, {
    cardAccountId: a.cardAccountId,
    amount: 5_00,
    merchantId: shower.id,
    reference: "shower-co-1",
    expiresAt: new Date(Date.now() + 3 * DAY),
  });
  const due = new Date(Date.now() + 2 * DAY);
  await runCloseoutRound(w, { now: due });
  row = await w.db.selectFrom("closeout_cards").selectAll().where("batch_id", "=", id)
    .executeTakeFirstOrThrow();
  assert.deepEqual([row.state, row.last_error], ["queued", "有进行中的热水预授权，结束后自动办理"]);
  assert.equal((await getBalance(w.db, a.cardAccountId)).balance, 20_00);
  await releaseHold(w.db, { holdId: hold.holdId, reason: "test" });
  await runAll(w, new Date(Date.now() + 3 * DAY));
  row = await w.db.selectFrom("closeout_cards").selectAll().where("batch_id", "=", id)
    .executeTakeFirstOrThrow();
  assert.deepEqual([row.state, row.disposition, row.left_on_card], ["done", "payout", 20_00]);
});

Deno.test("workers racing for the same cards, one taking over the other's leases, close each card once and refund each top-up once", async () => {
  await using w = await setupApp();
  const clerk = await makeStaff(w, "co4", [ROLES.cardOffice]);
  const holders = [];
  for (let i = 0; i < 6; i++) holders.push(await holder(w, { cash: 10_00, wechat: 20_00 }));
  const actor = { staffId: clerk.id, ip: null };
  const id = await createBatch(w.db, actor, {
    name: "并发",
    schoolId: await schoolOf(w, holders[0].cardAccountId),
    list: list(holders.map((h) => h.studentNumber)),
    closeOn: today(),
    refundRule: "origin_first",
    payoutMethod: "bank",
    threshold: 0,
  });
  await confirmBatch(w.db, actor, id);
  const gateways = buildGateways(w);
  const later = new Date(Date.now() + 10 * 60_000);
  for (let round = 0; round < 6; round++) {
    // The second set of workers sees every lease of the first as expired and takes it over.
    await Promise.all([
      runCloseoutRound(w, { gateways, limit: 3 }),
      runCloseoutRound(w, { gateways, limit: 3 }),
      runCloseoutRound(w, { gateways, limit: 6, now: later }),
    ]);
  }
  await runAll(w, new Date(Date.now() + DAY));
  const rows = await w.db.selectFrom("closeout_cards").selectAll().where("batch_id", "=", id)
    .execute();
  assert.deepEqual(rows.map((r) => r.state), Array(6).fill("done"));
  const ids = holders.map((h) => h.cardAccountId);
  const closed = await w.db.selectFrom("card_events").select("card_account_id")
    .where("kind", "=", "closed").where("card_account_id", "in", ids).execute();
  assert.equal(closed.length, 6, "each card closed once");
  const refunds = await w.db.selectFrom("topup_refunds").select(["amount", "state"]).execute();
  assert.deepEqual(refunds.map((r) => [r.amount, r.state]), Array(6).fill([20_00, "succeeded"]));
  const payouts = await w.db.selectFrom("ledger_transfers").select("amount")
    .where("kind", "=", "cash_out").where("card_account_id", "in", ids).execute();
  assert.deepEqual(payouts.map((p) => p.amount), Array(6).fill(10_00));
  for (const h of holders) assert.equal((await getBalance(w.db, h.cardAccountId)).balance, 0);
  await assertLedger(w);
});

Deno.test("the batches list pages past its first screen and says how many there are", async () => {
  await using w = await setupApp();
  const s = await holder(w, {});
  const clerk = await makeStaff(w, "co1", [ROLES.cardOffice]);
  const school = await schoolOf(w, s.cardAccountId);
  await w.db.insertInto("closeout_batches").values(
    Array.from({ length: 57 }, (_, i) => ({
      name: `第${i + 1}批`,
      school_id: school,
      criteria: JSON.stringify({ prefix: "2022" }),
      close_on: today(),
      refund_rule: "payout_only" as const,
      threshold: 0,
      payout_method: "bank" as const,
      card_count: 0,
      created_by: clerk.id,
    })),
  ).execute();
  const first = await clerk.client.page("/admin/closeout");
  assert.match(first, /共 <strong>57<\/strong> 条，第 1–50 条/);
  assert.match(first, />第57批</);
  assert.doesNotMatch(first, />第7批</);
  const second = await clerk.client.page("/admin/closeout?page=2");
  assert.match(second, /第 51–57 条/);
  assert.match(second, />第1批</);
});

/**
 * The worker's database with the test's moves put where a round leaves room for them:
 * `beforeClose` once, as the worker opens its first transaction after reading a card's money (the
 * card is still active between the read and the close); `afterSql` after each raw statement whose
 * text matches (to pay a top-up once the round has asked, or to fail the statement).
 */
function interposed(db: Db, hooks: {
  beforeClose?: () => Promise<void>;
  afterSql?: { match: RegExp; run: () => Promise<void> };
}): Db {
  let read = false;
  let beforeClose = hooks.beforeClose;
  const pass = <T extends object>(target: T, p: string | symbol) => {
    const v = Reflect.get(target, p, target);
    return typeof v === "function" ? v.bind(target) : v;
  };
  const executor = () =>
    new Proxy(db.getExecutor(), {
      get(t, p) {
        if (p !== "executeQuery" || !hooks.afterSql) return pass(t, p);
        const after = hooks.afterSql;
        return async (query: CompiledQuery, ...rest: unknown[]) => {
          // deno-lint-ignore no-explicit-any
          const result = await (t.executeQuery as any)(query, ...rest);
          if (after.match.test(query.sql)) await after.run();
          return result;
        };
      },
    });
  return new Proxy(db, {
    get(t, p) {
      if (p === "getExecutor") return executor;
      if (p === "selectFrom") {
        return (table: Parameters<Db["selectFrom"]>[0]) => {
          if (table === "ledger_accounts") read = true;
          return t.selectFrom(table);
        };
      }
      if (p === "transaction" && read && beforeClose) {
        const run = beforeClose;
        beforeClose = undefined;
        return () => ({
          execute: async <T>(fn: (trx: Transaction<Database>) => Promise<T>) => {
            await run();
            return await t.transaction().execute(fn);
          },
        });
      }
      return pass(t, p);
    },
  });
}

async function closeoutOf(w: TestWorld, holders: Array<{ studentNumber: string }>, terms: {
  refundRule: "origin_first" | "payout_only";
  threshold: number;
}) {
  const clerk = await makeStaff(w, "co9", [ROLES.cardOffice]);
  const actor = { staffId: clerk.id, ip: null };
  const first = await w.db.selectFrom("card_accounts").select("school_id")
    .where("student_number", "=", holders[0].studentNumber).executeTakeFirstOrThrow();
  const id = await createBatch(w.db, actor, {
    name: "竞态",
    schoolId: first.school_id,
    list: list(holders.map((h) => h.studentNumber)),
    closeOn: today(),
    refundRule: terms.refundRule,
    payoutMethod: "bank",
    threshold: terms.threshold,
  });
  await confirmBatch(w.db, actor, id);
  return id;
}

async function cardOf(w: TestWorld, batchId: number) {
  return await w.db.selectFrom("closeout_cards").selectAll().where("batch_id", "=", batchId)
    .executeTakeFirstOrThrow();
}

Deno.test("an offline overdraft uploaded after the worker read a card under the threshold makes it owed, not kept", async () => {
  await using w = await setupApp();
  const a = await holder(w, { cash: 50 });
  const id = await closeoutOf(w, [a], { refundRule: "origin_first", threshold: 1_00 });
  const canteen = await createMerchant(w.db, { code: "CT-CO", name: "食堂", category: "canteen" });
  const db = interposed(w.db, {
    beforeClose: async () => {
      await applyOfflinePayment(w.db, {
        cardAccountId: a.cardAccountId,
        merchantId: canteen.id,
        terminalId: 1,
        amount: 2_00,
        reference: `offline-co-${a.cardAccountId}`,
        occurredAt: new Date(),
      });
    },
  });
  assert.equal(await runCloseoutRound({ db, config: w.config }, { gateways: buildGateways(w) }), 1);
  const row = await cardOf(w, id);
  assert.deepEqual(
    [row.state, row.outcome, row.disposition, row.debt, row.left_on_card],
    ["done", "closed", "debt", 1_50, null],
  );
  const card = await w.db.selectFrom("card_accounts").select("status")
    .where("id", "=", a.cardAccountId).executeTakeFirstOrThrow();
  assert.equal(card.status, "cancelled");
  await assertLedger(w);
});

Deno.test("a card that keeps a small balance or owes still gives its 补助 back to the school", async () => {
  await using w = await setupApp();
  const kept = await holder(w, { cash: 50 });
  const owes = await holder(w, {});
  const school = await w.db.selectFrom("schools").select(["id", "name"])
    .where("id", "=", await schoolOf(w, kept.cardAccountId)).executeTakeFirstOrThrow();
  await w.db.transaction().execute(async (trx) => {
    await grantLots(trx, {
      purse: "subsidy",
      fundingAccountId: await subsidyFundingAccount(trx, school),
      batchId: null,
      validFrom: new Date(Date.now() - 60_000),
      validUntil: new Date(Date.now() + 90 * DAY),
      categories: ["canteen"],
    }, [
      { cardAccountId: kept.cardAccountId, amount: 3_00, reference: `co-lot-kept` },
      { cardAccountId: owes.cardAccountId, amount: 5_00, reference: `co-lot-owes` },
    ]);
  });
  // An offline payment at the supermarket, where the canteen 补助 cannot pay: ¥2.00 owed.
  const shop = await createMerchant(w.db, { code: "SM-CO", name: "超市", category: "supermarket" });
  await applyOfflinePayment(w.db, {
    cardAccountId: owes.cardAccountId,
    merchantId: shop.id,
    terminalId: 1,
    amount: 2_00,
    reference: `offline-co-lots-${owes.cardAccountId}`,
    occurredAt: new Date(),
  });
  const id = await closeoutOf(w, [kept, owes], { refundRule: "origin_first", threshold: 1_00 });
  await runAll(w);
  const rows = await w.db.selectFrom("closeout_cards").selectAll().where("batch_id", "=", id)
    .execute();
  const byCard = new Map(rows.map((r) => [r.card_account_id, r]));
  const rk = byCard.get(kept.cardAccountId)!;
  const ro = byCard.get(owes.cardAccountId)!;
  assert.deepEqual([rk.state, rk.disposition, rk.left_on_card], ["done", "kept", 50]);
  assert.deepEqual([ro.state, ro.disposition, ro.debt], ["done", "debt", 2_00]);
  // The cash stays (¥0.50 kept, ¥2.00 owed); the 补助 went back.
  const purses = async (card: number) =>
    (await purseLines(w.db, card)).map((l) => [l.code, l.amount]);
  assert.deepEqual(await purses(kept.cardAccountId), [["cash", 50]]);
  assert.deepEqual(await purses(owes.cardAccountId), [["cash", -2_00]]);
  const returned = await w.db.selectFrom("ledger_transfers").select(["card_account_id", "amount"])
    .where("kind", "=", "subsidy_return").orderBy("card_account_id").execute();
  assert.deepEqual(returned.map((r) => [r.card_account_id, r.amount]), [
    [kept.cardAccountId, 3_00],
    [owes.cardAccountId, 5_00],
  ]);
  const audit = await w.db.selectFrom("audit_log").select(["target_id", "after"])
    .where("action", "=", "wallet.close_lots_returned").orderBy("target_id").execute();
  assert.deepEqual(audit.map((a) => String(a.target_id)), [
    String(kept.cardAccountId),
    String(owes.cardAccountId),
  ]);
  // Run again: nothing moves twice.
  await runAll(w);
  assert.equal(
    (await w.db.selectFrom("ledger_transfers").select("id").where("kind", "=", "subsidy_return")
      .execute()).length,
    2,
  );
  await assertLedger(w);
});

Deno.test("a shower hold started after the worker read a card under the threshold keeps the card waiting, not closed under the hold", async () => {
  await using w = await setupApp();
  const a = await holder(w, { cash: 5_00 });
  const id = await closeoutOf(w, [a], { refundRule: "origin_first", threshold: 10_00 });
  const shower = await createMerchant(w.db, { code: "SH-CO2", name: "淋浴", category: "shower" });
  let holdId = 0;
  const db = interposed(w.db, {
    beforeClose: async () => {
      holdId = (await holdFunds(w.db, {
        cardAccountId: a.cardAccountId,
        amount: 2_00,
        merchantId: shower.id,
        reference: `shower-co-${a.cardAccountId}`,
        expiresAt: new Date(Date.now() + DAY),
      })).holdId;
    },
  });
  assert.equal(await runCloseoutRound({ db, config: w.config }, { gateways: buildGateways(w) }), 1);
  let row = await cardOf(w, id);
  assert.deepEqual([row.state, row.last_error], ["queued", "有进行中的热水预授权，结束后自动办理"]);
  const card = await w.db.selectFrom("card_accounts").select("status")
    .where("id", "=", a.cardAccountId).executeTakeFirstOrThrow();
  assert.equal(card.status, "normal");
  assert.equal((await getBalance(w.db, a.cardAccountId)).held, 2_00);
  // The shower ends: the card is closed with what is left, kept under the threshold.
  await releaseHold(w.db, { holdId, reason: "test" });
  await runAll(w, new Date(Date.now() + DAY));
  row = await cardOf(w, id);
  assert.deepEqual([row.state, row.disposition, row.left_on_card], ["done", "kept", 5_00]);
  await assertLedger(w);
});

Deno.test("a WeChat top-up paid after the round asked what is refundable is still refunded to origin", async () => {
  await using w = await setupApp();
  const a = await holder(w, { cash: 10_00 });
  const id = await closeoutOf(w, [a], { refundRule: "origin_first", threshold: 0 });
  let paid = 0;
  const db = interposed(w.db, {
    afterSql: {
      match: /from topup_orders o/,
      run: async () => {
        if (paid++ > 0) return;
        const res = await a.client.post("/wallet/recharge", { amount: "20", method: "sandbox" });
        const orderNo = res.headers.get("location")!.split("/").pop()!;
        assert.equal((await a.client.post(`/pay/sandbox/${orderNo}/confirm`)).status, 303);
        await runTopupTick(w, buildGateways(w), w.app);
      },
    },
  });
  // Asked once for the round (the top-up is paid just after), once more for the card.
  assert.equal(await runCloseoutRound({ db, config: w.config }, { gateways: buildGateways(w) }), 1);
  assert.equal(paid, 2);
  const row = await cardOf(w, id);
  assert.deepEqual(
    [row.state, row.balance, row.refunded, row.disposition, row.left_on_card],
    ["done", 30_00, 20_00, "payout", 10_00],
  );
  const refunds = await w.db.selectFrom("topup_refunds").select(["amount", "state"]).execute();
  assert.deepEqual(refunds.map((r) => [r.amount, r.state]), [[20_00, "succeeded"]]);
  assert.equal((await getBalance(w.db, a.cardAccountId)).balance, 0);
  await assertLedger(w);
});

Deno.test("when the round's question of what is refundable fails, each card asks in its own step and is refunded to origin", async () => {
  await using w = await setupApp();
  const a = await holder(w, { cash: 10_00, wechat: 20_00 });
  const b = await holder(w, { cash: 5_00 });
  const id = await closeoutOf(w, [a, b], { refundRule: "origin_first", threshold: 0 });
  let failed = 0;
  const db = interposed(w.db, {
    afterSql: {
      match: /from topup_orders o/,
      run: () => {
        failed++;
        return Promise.reject(new Error("connection reset"));
      },
    },
  });
  assert.equal(await runCloseoutRound({ db, config: w.config }, { gateways: buildGateways(w) }), 2);
  assert.equal(failed, 1);
  const rows = new Map(
    (await w.db.selectFrom("closeout_cards").selectAll().where("batch_id", "=", id).execute())
      .map((r) => [r.card_account_id, r]),
  );
  const ra = rows.get(a.cardAccountId)!;
  assert.deepEqual(
    [ra.state, ra.refunded, ra.disposition, ra.left_on_card],
    ["done", 20_00, "payout", 10_00],
  );
  const rb = rows.get(b.cardAccountId)!;
  assert.deepEqual([rb.state, rb.refunded, rb.disposition, rb.left_on_card], [
    "done",
    0,
    "payout",
    5_00,
  ]);
  const refunds = await w.db.selectFrom("topup_refunds").select(["amount", "state"]).execute();
  assert.deepEqual(refunds.map((r) => [r.amount, r.state]), [[20_00, "succeeded"]]);
  await assertLedger(w);
});
