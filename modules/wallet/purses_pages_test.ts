/**
 * Purses as people see them: 余额 shows the cash purse and 补助 (with when it ends), 交易记录 a mixed
 * payment once with its split, the card office's money panel both purses, and 销户 pays out cash
 * only while 补助 goes back to the school's funding account.
 */
import assert from "node:assert/strict";
import { createMerchant } from "../merchant/mod.ts";
import { ROLES } from "../staff/mod.ts";
import { makeStaff, makeStudent, setupApp } from "../testkit/mod.ts";
import { grantLot } from "./_test_support.ts";
import { creditTopUp, getBalance, payFromCard, verifyLedger } from "./mod.ts";

type Ctx = Awaited<ReturnType<typeof setupApp>>;

async function studentWith(ctx: Ctx, cash: number) {
  const s = await makeStudent(ctx);
  await creditTopUp(ctx.db, {
    cardAccountId: s.cardAccountId,
    amount: cash,
    method: "sandbox",
    reference: `seed-${s.cardAccountId}`,
  });
  const { student_number } = await ctx.db.selectFrom("card_accounts").select("student_number")
    .where("id", "=", s.cardAccountId).executeTakeFirstOrThrow();
  return { ...s, studentNumber: student_number };
}

Deno.test("余额, 交易记录 and the counter's money panel show cash and 补助, and a mixed payment once with its split", async () => {
  const ctx = await setupApp();
  try {
    const s = await studentWith(ctx, 1000);
    // Before any 补助, 余额 shows no purse lines.
    assert.doesNotMatch(await s.client.page("/wallet"), /id="purses"/);
    const canteen = await createMerchant(ctx.db, {
      code: "PURSE-CANTEEN",
      name: "第二食堂",
      category: "canteen",
    });
    await grantLot(ctx.db, s.cardAccountId, 500, {
      categories: ["canteen"],
      until: 5 * 86400_000,
    });
    await grantLot(ctx.db, s.cardAccountId, 300, {
      categories: ["shower"],
      until: 20 * 86400_000,
    });
    const paid = await payFromCard(ctx.db, {
      cardAccountId: s.cardAccountId,
      merchantId: canteen.id,
      amount: 800,
      reference: "purse-page-meal",
    });

    const wallet = await s.client.page("/wallet");
    assert.match(
      wallet,
      /data-purse="cash"><span class="cell__label">现金<\/span><span class="cell__ft">¥7\.00/,
    );
    assert.match(
      wallet,
      /data-purse="subsidy"><span class="cell__label">补助<\/span><span class="cell__ft">¥3\.00/,
    );
    // The canteen lot is spent; what is left is shower-only and ends in 20 days.
    assert.match(wallet, /补助将于[^<]*到期（¥3\.00）[^<]*可用于淋浴，消费时先扣补助/);
    assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 1000);

    const list = await s.client.page("/wallet/transactions");
    assert.equal(list.match(/-8\.00/g)?.length, 1, "the mixed payment is one line");
    assert.match(list, /补助 ¥5\.00 \+ 现金 ¥3\.00/);
    const detail = await s.client.page(`/wallet/transactions/${paid.transferId}`);
    assert.match(
      detail,
      /支付方式<\/span><span class="cell__ft" id="tx-split">补助 ¥5\.00，现金 ¥3\.00/,
    );

    const office = await makeStaff(ctx, "purse-office", [ROLES.cardOffice]);
    const panel = await office.client.page(`/admin/cards/${s.cardAccountId}/money`);
    assert.match(panel, /id="card-balance">¥10\.00/);
    assert.match(panel, /data-purse="cash"><dt>现金<\/dt><dd>¥7\.00/);
    assert.match(panel, /data-purse="subsidy"><dt>补助<\/dt><dd>¥3\.00/);
    assert.match(panel, /class="tx-split">补助 ¥5\.00 \+ 现金 ¥3\.00/);
  } finally {
    await ctx.h.close();
  }
});

Deno.test("销户 pays out the cash purse only and sends 补助 back to the school's funding account", async () => {
  const ctx = await setupApp();
  try {
    const s = await studentWith(ctx, 1234);
    await grantLot(ctx.db, s.cardAccountId, 500);
    const office = await makeStaff(ctx, "purse-close", [ROLES.cardOffice]);
    const page = await office.client.page(`/admin/cards/${s.cardAccountId}/close`);
    assert.match(page, /id="close-balance">¥17\.34/);
    assert.match(page, /id="close-lots">¥5\.00（退回学校补助资金，不退现金）/);
    assert.match(page, /应退现金：<strong[^>]*>¥12\.34</);

    const res = await office.client.post(`/admin/cards/${s.cardAccountId}/close`, {
      reason: "毕业离校",
      confirm: s.studentNumber,
    });
    assert.equal(res.status, 303);
    const moves = await ctx.db.selectFrom("ledger_transfers")
      .select(["kind", "amount", "credit_account_id"])
      .where("card_account_id", "=", s.cardAccountId)
      .where("kind", "in", ["cash_out", "subsidy_return"]).orderBy("id").execute();
    assert.deepEqual(moves.map((m) => [m.kind, m.amount]).sort(), [
      ["cash_out", 1234],
      ["subsidy_return", 500],
    ]);
    const funding = await ctx.db.selectFrom("ledger_accounts").select(["id", "kind"])
      .where("id", "=", moves.find((m) => m.kind === "subsidy_return")!.credit_account_id)
      .executeTakeFirstOrThrow();
    assert.equal(funding.kind, "subsidy");
    const lot = await ctx.db.selectFrom("purse_lots").select("remaining")
      .where("card_account_id", "=", s.cardAccountId).executeTakeFirstOrThrow();
    assert.equal(lot.remaining, 0);
    assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 0);
    const report = await verifyLedger(ctx.db);
    assert.equal(report.ok, true, report.problems.join("; "));
    // Only the cash came in from outside and went out as cash.
    assert.equal(report.totals.externalIn, 1234);
    assert.equal(report.totals.externalOut, 1234);

    // Nothing left: a second submit moves nothing.
    const again = await office.client.post(`/admin/cards/${s.cardAccountId}/close`, {
      reason: "毕业离校",
      confirm: s.studentNumber,
    });
    assert.equal(again.status, 422);
  } finally {
    await ctx.h.close();
  }
});
