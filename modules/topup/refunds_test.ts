import assert from "node:assert/strict";
import { sql } from "kysely";
import { createMerchant } from "../merchant/mod.ts";
import { getBalance, payFromCard, verifyLedger } from "../wallet/mod.ts";
import { ROLES } from "../staff/mod.ts";
import { buildGateways, runTopupTick } from "./mod.ts";
import { makeStaff, makeStudent, setupApp } from "../testkit/mod.ts";

type Ctx = Awaited<ReturnType<typeof setupApp>>;

/** A student with a ¥50.00 sandbox top-up, paid and credited. */
async function toppedUp(ctx: Ctx) {
  const s = await makeStudent(ctx);
  const res = await s.client.post("/wallet/recharge", { amount: "50", method: "sandbox" });
  assert.equal(res.status, 303);
  const orderNo = res.headers.get("location")!.split("/").pop()!;
  assert.equal((await s.client.post(`/pay/sandbox/${orderNo}/confirm`)).status, 303);
  await runTopupTick(ctx, buildGateways(ctx), ctx.app);
  assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 5000);
  return { ...s, orderNo };
}

const tokenOf = (html: string) => /name="token" value="([^"]+)"/.exec(html)![1];

async function refundRows(ctx: Ctx) {
  return (await sql<{ state: string; amount: number }>`
    select state, amount from topup_refunds order by id`.execute(ctx.db)).rows;
}

Deno.test("finance pays a top-up back through the sandbox, once per form, never more than was paid", async () => {
  await using ctx = await setupApp();
  const s = await toppedUp(ctx);
  const fin = await makeStaff(ctx, "fin-r1", [ROLES.finance]);
  const orders = await fin.client.page(`/admin/finance/orders?q=${s.orderNo}`);
  assert.match(
    orders,
    new RegExp(`href="/admin/finance/topup-refunds\\?order=${s.orderNo}">退回<`),
  );
  const page = await fin.client.page(`/admin/finance/topup-refunds?order=${s.orderNo}`);
  assert.match(page, /可退<\/dt><dd id="topup-refundable"><strong>¥50\.00/);
  const token = tokenOf(page);

  const form = { order_no: s.orderNo, amount: "20", reason: "学生申请退回", token };
  const res = await fin.client.post("/admin/finance/topup-refunds", form);
  assert.equal(res.status, 303);
  const after = await fin.client.page(res.headers.get("location")!);
  assert.match(after, /已退回/);
  assert.match(after, /¥30\.00/);
  assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 3000);
  // The same form again: nothing more moves, at the gateway or on the card.
  assert.equal((await fin.client.post("/admin/finance/topup-refunds", form)).status, 303);
  assert.deepEqual(await refundRows(ctx), [{ state: "succeeded", amount: 2000 }]);
  const atGateway = await sql<{ n: number }>`select count(*)::int as n from sandbox_refunds`
    .execute(ctx.db);
  assert.equal(atGateway.rows[0].n, 1);

  // More than is left: refused with the figure, nothing changes.
  const over = await fin.client.post("/admin/finance/topup-refunds", {
    ...form,
    amount: "30.01",
    token: tokenOf(after),
  });
  assert.equal(over.status, 422);
  assert.match(await over.text(), /退回金额超过可退金额 ¥30\.00/);
  assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 3000);

  // The student's 交易记录 shows it under 充值.
  const history = await s.client.page("/wallet/transactions?type=topup");
  assert.match(history, /充值退回/);

  const report = await verifyLedger(ctx.db);
  assert.equal(report.ok, true, report.problems.join("; "));
  assert.equal(report.totals.externalIn, 3000);
});

Deno.test("a top-up already spent cannot be paid back; bad forms change nothing; only finance may", async () => {
  await using ctx = await setupApp();
  const s = await toppedUp(ctx);
  const merchant = await createMerchant(ctx.db, {
    code: "CANTEEN9",
    name: "食堂",
    category: "canteen",
  });
  await payFromCard(ctx.db, {
    cardAccountId: s.cardAccountId,
    merchantId: merchant.id,
    amount: 4500,
    reference: `spend-${s.cardAccountId}`,
  });
  const fin = await makeStaff(ctx, "fin-r2", [ROLES.finance]);
  const page = await fin.client.page(`/admin/finance/topup-refunds?order=${s.orderNo}`);
  const base = { order_no: s.orderNo, reason: "学生申请退回", token: tokenOf(page) };

  const spent = await fin.client.post("/admin/finance/topup-refunds", { ...base, amount: "10" });
  assert.equal(spent.status, 422);
  assert.match(await spent.text(), /余额不足（可用余额 ¥5\.00）/);
  for (
    const bad of [
      { ...base, amount: "-1" },
      { ...base, amount: "1.234" },
      { ...base, amount: "1", reason: "x" },
      { ...base, amount: "1", token: "short" },
      { ...base, amount: "1", order_no: "YXT<script>" },
    ]
  ) {
    const res = await fin.client.post("/admin/finance/topup-refunds", bad);
    assert.equal(res.status, 422, JSON.stringify(bad));
    assert.doesNotMatch(await res.text(), /<script>/);
  }
  const sysadmin = await makeStaff(ctx, "sys-r2", [ROLES.sysadmin]);
  const denied = await sysadmin.client.post("/admin/finance/topup-refunds", {
    ...base,
    amount: "1",
  });
  assert.equal(denied.status, 403);
  assert.deepEqual(await refundRows(ctx), []);
  assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 500);
  assert.equal((await verifyLedger(ctx.db)).ok, true);
});
