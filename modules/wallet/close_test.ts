import assert from "node:assert/strict";
import { createMerchant } from "../merchant/mod.ts";
import { blocklistSince, currentBlocklistVersion, findBoundCard } from "../card/mod.ts";
import { ROLES } from "../staff/mod.ts";
import { makeStaff, makeStudent, setupApp } from "../testkit/mod.ts";
import {
  applyOfflinePayment,
  creditTopUp,
  getBalance,
  holdFunds,
  releaseHold,
  verifyLedger,
} from "./mod.ts";

type Ctx = Awaited<ReturnType<typeof setupApp>>;

async function fundedStudent(ctx: Ctx, amount: number) {
  const s = await makeStudent(ctx);
  await creditTopUp(ctx.db, {
    cardAccountId: s.cardAccountId,
    amount,
    method: "sandbox",
    reference: `seed-${s.cardAccountId}`,
  });
  const chip = `CL${String(s.cardAccountId).padStart(8, "0")}`;
  await ctx.db.insertInto("card_chips")
    .values({ card_account_id: s.cardAccountId, chip_number: chip, status: "active" }).execute();
  const { student_number } = await ctx.db.selectFrom("card_accounts").select("student_number")
    .where("id", "=", s.cardAccountId).executeTakeFirstOrThrow();
  return { ...s, chip, studentNumber: student_number };
}

async function cardRow(ctx: Ctx, id: number) {
  return await ctx.db.selectFrom("card_accounts").select(["status", "account_id"])
    .where("id", "=", id).executeTakeFirstOrThrow();
}

async function cashOuts(ctx: Ctx, cardAccountId: number) {
  return await ctx.db.selectFrom("ledger_transfers").select(["amount", "balance_after", "details"])
    .where("card_account_id", "=", cardAccountId).where("kind", "=", "cash_out").orderBy("id")
    .execute();
}

Deno.test("销户 pays the balance out in cash, cancels every chip for the readers and unbinds the login", async () => {
  const ctx = await setupApp();
  try {
    const s = await fundedStudent(ctx, 12345);
    const office = await makeStaff(ctx, "office1", [ROLES.cardOffice]);
    const card = await office.client.page(`/admin/cards/${s.cardAccountId}`);
    assert.match(card, new RegExp(`href="/admin/cards/${s.cardAccountId}/close">销户…<`));
    const page = await office.client.page(`/admin/cards/${s.cardAccountId}/close`);
    assert.match(page, /应退现金：<strong[^>]*>¥123\.45</);
    const version = await currentBlocklistVersion(ctx.db);

    // No reason: the form comes back, nothing changes.
    const bare = await office.client.post(`/admin/cards/${s.cardAccountId}/close`, { reason: " " });
    assert.equal(bare.status, 422);
    assert.match(await bare.text(), /请填写原因/);
    assert.equal((await cardRow(ctx, s.cardAccountId)).status, "normal");
    assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 12345);
    // The 学号 not typed (or someone else's): refused the same way, the reason kept.
    for (const confirm of ["", "2099999999"]) {
      const unconfirmed = await office.client.post(`/admin/cards/${s.cardAccountId}/close`, {
        reason: "毕业离校",
        confirm,
      });
      assert.equal(unconfirmed.status, 422);
      const text = await unconfirmed.text();
      assert.match(text, /请输入该卡的学号以确认/);
      assert.match(text, /value="毕业离校"/);
      assert.equal((await cardRow(ctx, s.cardAccountId)).status, "normal");
    }

    const res = await office.client.post(`/admin/cards/${s.cardAccountId}/close`, {
      reason: "毕业离校",
      confirm: s.studentNumber,
    });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get("location"), `/admin/cards/${s.cardAccountId}/close?done=1`);
    const after = await office.client.page(res.headers.get("location")!);
    assert.match(after, /办理完成/);
    assert.match(after, /现金退还记录[\s\S]*¥123\.45/);

    const row = await cardRow(ctx, s.cardAccountId);
    assert.equal(row.status, "cancelled");
    assert.equal(row.account_id, null);
    assert.equal(await findBoundCard(ctx.db, s.accountId), null);
    const chips = await ctx.db.selectFrom("card_chips").select("status")
      .where("card_account_id", "=", s.cardAccountId).execute();
    assert.deepEqual(chips.map((c) => c.status), ["cancelled"]);
    const delta = await blocklistSince(ctx.db, version, 100);
    assert.deepEqual(delta.added, [s.chip]);
    assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 0);
    const outs = await cashOuts(ctx, s.cardAccountId);
    assert.equal(outs.length, 1);
    assert.equal(outs[0].amount, 12345);
    assert.equal(outs[0].balance_after, 0);
    assert.deepEqual(outs[0].details, { staffId: office.id, reason: "毕业离校" });
    const audit = await ctx.db.selectFrom("audit_log").select("action")
      .where("target_id", "=", String(s.cardAccountId)).execute();
    assert.deepEqual(audit.map((a) => a.action).sort(), ["card.closed", "wallet.cash_out"]);

    const report = await verifyLedger(ctx.db);
    assert.equal(report.ok, true, report.problems.join("; "));
    assert.equal(report.totals.externalIn, 12345);
    assert.equal(report.totals.externalOut, 12345);

    // The student's pages no longer show the card; a second submit moves nothing.
    assert.match(await s.client.page("/wallet"), /绑定/);
    const again = await office.client.post(`/admin/cards/${s.cardAccountId}/close`, {
      reason: "毕业离校",
      confirm: s.studentNumber,
    });
    assert.equal(again.status, 422);
    assert.match(await again.text(), /没有余额可退/);
    assert.equal((await cashOuts(ctx, s.cardAccountId)).length, 1);
  } finally {
    await ctx.h.close();
  }
});

Deno.test("销户 is refused while money is on hold or owed, and nothing changes", async () => {
  const ctx = await setupApp();
  try {
    const s = await fundedStudent(ctx, 5000);
    const office = await makeStaff(ctx, "office2", [ROLES.cardOffice]);
    const merchant = await createMerchant(ctx.db, {
      code: "SHOWER1",
      name: "浴室",
      category: "shower",
    });
    const hold = await holdFunds(ctx.db, {
      cardAccountId: s.cardAccountId,
      amount: 1000,
      merchantId: merchant.id,
      reference: `hold-${s.cardAccountId}`,
      expiresAt: new Date(Date.now() + 600_000),
    });
    const held = await office.client.post(`/admin/cards/${s.cardAccountId}/close`, {
      reason: "毕业离校",
      confirm: s.studentNumber,
    });
    assert.equal(held.status, 422);
    assert.match(await held.text(), /有进行中的热水预授权（¥10\.00）/);
    assert.equal((await cardRow(ctx, s.cardAccountId)).status, "normal");
    assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 5000);
    await releaseHold(ctx.db, { holdId: hold.holdId, reason: "test" });

    await applyOfflinePayment(ctx.db, {
      cardAccountId: s.cardAccountId,
      merchantId: merchant.id,
      terminalId: 1,
      amount: 6000,
      reference: `offline-${s.cardAccountId}`,
      occurredAt: new Date(),
    });
    const owed = await office.client.post(`/admin/cards/${s.cardAccountId}/close`, {
      reason: "毕业离校",
      confirm: s.studentNumber,
    });
    assert.equal(owed.status, 422);
    assert.match(await owed.text(), /欠款 ¥10\.00/);
    const row = await cardRow(ctx, s.cardAccountId);
    assert.equal(row.status, "normal");
    assert.notEqual(row.account_id, null);
    assert.equal((await cashOuts(ctx, s.cardAccountId)).length, 0);
    assert.equal((await verifyLedger(ctx.db)).ok, true);
  } finally {
    await ctx.h.close();
  }
});

Deno.test("money that reaches a closed card later is paid out with 退还余额; other roles cannot", async () => {
  const ctx = await setupApp();
  try {
    const s = await fundedStudent(ctx, 100);
    const office = await makeStaff(ctx, "office3", [ROLES.cardOffice]);
    const finance = await makeStaff(ctx, "finance3", [ROLES.finance]);
    const denied = await finance.client.post(`/admin/cards/${s.cardAccountId}/close`, {
      reason: "毕业离校",
    });
    assert.equal(denied.status, 403);
    assert.equal((await cardRow(ctx, s.cardAccountId)).status, "normal");

    assert.equal(
      (await office.client.post(`/admin/cards/${s.cardAccountId}/close`, {
        reason: "退学",
        confirm: s.studentNumber,
      }))
        .status,
      303,
    );
    // A late credit (say, a failed meter delivery refunded) lands on the closed account.
    await creditTopUp(ctx.db, {
      cardAccountId: s.cardAccountId,
      amount: 250,
      method: "sandbox",
      reference: `late-${s.cardAccountId}`,
    });
    const page = await office.client.page(`/admin/cards/${s.cardAccountId}/close`);
    assert.match(page, /退还余额/);
    assert.match(page, /应退现金：<strong[^>]*>¥2\.50</);
    const res = await office.client.post(`/admin/cards/${s.cardAccountId}/close`, {
      reason: "退还迟到退款",
      confirm: s.studentNumber,
    });
    assert.equal(res.status, 303);
    assert.deepEqual((await cashOuts(ctx, s.cardAccountId)).map((o) => o.amount), [100, 250]);
    const report = await verifyLedger(ctx.db);
    assert.equal(report.ok, true, report.problems.join("; "));
    assert.equal(report.totals.externalOut, 350);
  } finally {
    await ctx.h.close();
  }
});
