import assert from "node:assert/strict";
import { createMerchant, registerTerminal } from "../merchant/mod.ts";
import { closeCardWithPayout, creditTopUp, getBalance, verifyLedger } from "../wallet/mod.ts";
import { ROLES } from "../staff/mod.ts";
import { makeStaff, makeStudent, setupApp } from "../testkit/mod.ts";
import { fileOfflineReview } from "./mod.ts";

type Ctx = Awaited<ReturnType<typeof setupApp>>;

/** A card with ¥10.00 and one refused offline record of ¥15.00 for it, filed for review. */
async function refusedRecord(ctx: Ctx, input: { amount?: number; known?: boolean } = {}) {
  const s = await makeStudent(ctx);
  await creditTopUp(ctx.db, {
    cardAccountId: s.cardAccountId,
    amount: 1000,
    method: "sandbox",
    reference: `seed-${s.cardAccountId}`,
  });
  const merchant = await createMerchant(ctx.db, {
    code: `M${crypto.randomUUID().slice(0, 6)}`,
    name: "学生超市",
    category: "supermarket",
  });
  const { terminal } = await registerTerminal(ctx.db, ctx.config.appSecret, {
    merchantId: merchant.id,
    kind: "supermarket_pos",
    name: "超市2号收银",
  });
  await fileOfflineReview(ctx.db, {
    reference: `T${terminal.id}:O7`,
    terminalId: terminal.id,
    terminalName: terminal.name,
    merchantId: merchant.id,
    merchantName: merchant.name,
    offlineSequence: 7,
    chip: "A1B2C3D4",
    cardAccountId: input.known === false ? null : s.cardAccountId,
    amount: input.amount ?? 1500,
    occurredAt: new Date(Date.now() - 3_600_000),
    reason: "over_payment_limit",
  });
  const row = await ctx.db.selectFrom("finance_offline_reviews").select("id")
    .orderBy("id", "desc").executeTakeFirstOrThrow();
  return { student: s, merchant, terminal, id: row.id };
}

async function withApp(fn: (ctx: Ctx) => Promise<void>): Promise<void> {
  await using ctx = await setupApp();
  await fn(ctx);
  const books = await verifyLedger(ctx.db);
  assert.equal(books.ok, true, books.problems.join("; "));
}

async function audits(ctx: Ctx, action: string): Promise<number> {
  const rows = await ctx.db.selectFrom("audit_log").select("id").where("action", "=", action)
    .execute();
  return rows.length;
}

const balanceOf = async (ctx: Ctx, id: number) => (await getBalance(ctx.db, id)).balance;

Deno.test("脱机复核 lists a refused record; accepting it charges the card once, below zero if need be, audited", () =>
  withApp(async (ctx) => {
    const { student, terminal, id } = await refusedRecord(ctx);
    const fin = await makeStaff(ctx, "fin1", [ROLES.finance]);
    const page = await fin.client.page("/admin/finance/offline");
    for (
      const text of [
        String(terminal.id),
        "超市2号收银",
        "学生超市",
        "A1B2C3D4",
        "¥15.00",
        "超过单笔脱机限额",
      ]
    ) {
      assert.ok(page.includes(text), `the page shows ${text}`);
    }
    assert.match(page, /<button[^>]*>确认扣款</);
    assert.match(page, /action="\/admin\/finance\/offline\/\d+\/reject"/);

    const res = await fin.client.post(`/admin/finance/offline/${id}/accept`, {
      note: "核对小票无误",
    });
    assert.equal(res.status, 303);
    assert.equal(await balanceOf(ctx, student.cardAccountId), -500);
    // Accepted again (a double submit, a second tab): nothing more is charged.
    const again = await fin.client.post(`/admin/finance/offline/${id}/accept`, {
      note: "再次确认",
    });
    assert.equal(again.status, 303);
    assert.equal(await balanceOf(ctx, student.cardAccountId), -500);
    const transfers = await ctx.db.selectFrom("ledger_transfers").select(["amount", "kind"])
      .where("reference", "=", `T${terminal.id}:O7`).execute();
    assert.deepEqual(transfers, [{ amount: 1500, kind: "purchase" }]);
    assert.equal(await audits(ctx, "finance.offline_accepted"), 1);
    assert.match(await fin.client.page("/admin/finance/offline"), /已确认扣款/);
  }));

Deno.test("rejecting a refused record charges nothing, is audited, and it cannot be accepted afterwards", () =>
  withApp(async (ctx) => {
    const { student, id } = await refusedRecord(ctx);
    const fin = await makeStaff(ctx, "fin1", [ROLES.finance]);
    const noNote = await fin.client.post(`/admin/finance/offline/${id}/reject`, { note: "" });
    assert.equal(noNote.status, 422);
    assert.match(await noNote.text(), /请填写处理说明/);
    const res = await fin.client.post(`/admin/finance/offline/${id}/reject`, {
      note: "商户违规脱机",
    });
    assert.equal(res.status, 303);
    const late = await fin.client.post(`/admin/finance/offline/${id}/accept`, { note: "改为扣款" });
    assert.equal(late.status, 422);
    assert.match(await late.text(), /该记录已驳回/);
    assert.equal(await balanceOf(ctx, student.cardAccountId), 1000);
    assert.equal(await audits(ctx, "finance.offline_rejected"), 1);
    assert.equal(await audits(ctx, "finance.offline_accepted"), 0);
  }));

Deno.test("a record of an unknown chip, a closed account or an absurd amount can only be rejected", () =>
  withApp(async (ctx) => {
    const fin = await makeStaff(ctx, "fin1", [ROLES.finance]);
    const unknown = await refusedRecord(ctx, { known: false });
    const r1 = await fin.client.post(`/admin/finance/offline/${unknown.id}/accept`, {
      note: "试试",
    });
    assert.equal(r1.status, 422);
    assert.match(await r1.text(), /芯片卡号不存在，无法扣款/);
    const absurd = await refusedRecord(ctx, { amount: 200_000_000 });
    const r2 = await fin.client.post(`/admin/finance/offline/${absurd.id}/accept`, {
      note: "试试",
    });
    assert.equal(r2.status, 422);
    assert.match(await r2.text(), /金额超出可扣款范围/);
    assert.equal(await balanceOf(ctx, absurd.student.cardAccountId), 1000);
    const closed = await refusedRecord(ctx);
    await closeCardWithPayout(
      ctx.db,
      { staffId: fin.id },
      closed.student.cardAccountId,
      "毕业离校",
    );
    const r3 = await fin.client.post(`/admin/finance/offline/${closed.id}/accept`, {
      note: "试试",
    });
    assert.equal(r3.status, 422);
    assert.match(await r3.text(), /已销户，无法扣款/);
    assert.equal(await balanceOf(ctx, closed.student.cardAccountId), 0);
    assert.equal(await audits(ctx, "finance.offline_accepted"), 0);
  }));

Deno.test("脱机复核: a sysadmin may look, only finance may decide, others may not look", () =>
  withApp(async (ctx) => {
    const { student, id } = await refusedRecord(ctx);
    const admin = await makeStaff(ctx, "admin1", [ROLES.sysadmin]);
    const office = await makeStaff(ctx, "office1", [ROLES.cardOffice]);
    const page = await admin.client.page("/admin/finance/offline");
    assert.match(page, /待复核/);
    assert.doesNotMatch(page, /<button[^>]*>确认扣款</);
    const res = await admin.client.post(`/admin/finance/offline/${id}/accept`, { note: "越权" });
    assert.equal(res.status, 403);
    const look = await office.client.get("/admin/finance/offline");
    assert.equal(look.status, 403);
    await look.body?.cancel();
    assert.equal(await balanceOf(ctx, student.cardAccountId), 1000);
  }));

Deno.test("two finance members accepting the same record at once charge it once", () =>
  withApp(async (ctx) => {
    const { student, terminal, id } = await refusedRecord(ctx);
    const a = await makeStaff(ctx, "fin1", [ROLES.finance]);
    const b = await makeStaff(ctx, "fin2", [ROLES.finance]);
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all(
        [a, b, a, b].map((s) =>
          s.client.post(`/admin/finance/offline/${id}/accept`, { note: "同时确认" })
        ),
      );
      assert.deepEqual(results.map((r) => r.status), [303, 303, 303, 303]);
    }
    assert.equal(await balanceOf(ctx, student.cardAccountId), -500);
    const transfers = await ctx.db.selectFrom("ledger_transfers").select("id")
      .where("reference", "=", `T${terminal.id}:O7`).execute();
    assert.equal(transfers.length, 1);
    assert.equal(await audits(ctx, "finance.offline_accepted"), 1);
  }));

Deno.test("脱机复核 pages past its first screen with its count, filters by state and exports", async () => {
  await withApp(async (ctx) => {
    const { student, merchant, terminal } = await refusedRecord(ctx);
    for (let seq = 100; seq < 160; seq++) {
      await fileOfflineReview(ctx.db, {
        reference: `T${terminal.id}:O${seq}`,
        terminalId: terminal.id,
        terminalName: terminal.name,
        merchantId: merchant.id,
        merchantName: merchant.name,
        offlineSequence: seq,
        chip: "A1B2C3D4",
        cardAccountId: student.cardAccountId,
        amount: 1500,
        occurredAt: new Date(Date.now() - 3_600_000),
        reason: "over_payment_limit",
      });
    }
    const finance = await makeStaff(ctx, "fin1", [ROLES.finance]);
    const first = await finance.client.page("/admin/finance/offline");
    assert.match(first, /共 <strong>61<\/strong> 条，第 1–50 条/);
    const second = await finance.client.page("/admin/finance/offline?page=2");
    assert.match(second, /第 51–61 条/);
    assert.match(second, /脱机流水 7</);
    const rejected = await finance.client.page("/admin/finance/offline?state=rejected");
    assert.match(rejected, /共 <strong>0<\/strong> 条/);
    assert.match(rejected, /没有符合条件的脱机记录/);
    const file = await finance.client.get("/admin/finance/offline?state=pending&export=csv");
    const lines = (await file.text()).replace(/^\uFEFF/, "").trim().split("\r\n");
    assert.equal(lines.length, 62);
    assert.match(lines[0], /^上传时间,终端号,终端,商户,脱机流水,芯片卡号,学号,姓名,金额\(元\)/);
    assert.match(lines[1], /超市2号收银,学生超市,159,A1B2C3D4,.*,15\.00,.*待复核/);
  });
});
