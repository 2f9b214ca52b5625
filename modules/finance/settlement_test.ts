import assert from "node:assert/strict";
import { readXlsx } from "../platform/sheets.ts";
import { createMerchant, setSettlementTerms } from "../merchant/mod.ts";
import { merchantBalances, payFromCard, refundTransfer, verifyLedger } from "../wallet/mod.ts";
import { ROLES } from "../staff/mod.ts";
import { makeStaff, makeStudent, setupApp, type TestWorld } from "../testkit/mod.ts";
import {
  feeOf,
  payStatement,
  periodOf,
  prepareStatements,
  settlementLedgerCheck,
  verifySettlements,
} from "./mod.ts";

const DAY = 86_400_000;

/** An outsourced window settled daily at `bp`, a student with ¥500, and a payment function. */
async function outsourced(w: TestWorld, bp = 500) {
  const merchant = await createMerchant(w.db, {
    code: `W${crypto.randomUUID().slice(0, 6)}`,
    name: "外包窗口",
    category: "canteen",
  });
  await setSettlementTerms(w.db, { staffId: null }, {
    merchantId: merchant.id,
    settles: true,
    period: "daily",
    feeRateBp: bp,
    payeeName: "某餐饮公司",
    payeeBank: "某银行",
    payeeAccount: "6228 0000 0000",
  });
  const student = await makeStudent(w, { balance: 500_00 });
  let n = 0;
  const pay = async (amount: number) =>
    (await payFromCard(w.db, {
      cardAccountId: student.cardAccountId,
      merchantId: merchant.id,
      amount,
      reference: `pos-${merchant.id}-${++n}`,
    })).transferId;
  return { merchant, student, pay };
}

async function owed(w: TestWorld, merchantId: number): Promise<number> {
  return (await merchantBalances(w.db, [merchantId], new Date())).get(merchantId)?.balance ?? 0;
}

async function statements(w: TestWorld, merchantId: number) {
  return await w.db.selectFrom("settlement_statements").selectAll()
    .where("merchant_id", "=", merchantId).orderBy("id").execute();
}

async function assertLedger(w: TestWorld) {
  const r = await verifyLedger(w.db);
  assert.equal(r.ok, true, r.problems.join("; "));
}

Deno.test("periods are China days, weeks from Monday and months; the fee rounds half up to the fen", () => {
  // 2026-12-07 00:30 in China is 2026-12-06 16:30 UTC, a Monday.
  const at = new Date("2026-12-06T16:30:00Z");
  assert.deepEqual(
    [periodOf("daily", at).startDay, periodOf("daily", at).endDay],
    ["2026-12-07", "2026-12-07"],
  );
  assert.deepEqual(
    [periodOf("weekly", at).startDay, periodOf("weekly", at).endDay],
    ["2026-12-07", "2026-12-13"],
  );
  const month = periodOf("monthly", at);
  assert.deepEqual([month.startDay, month.endDay], ["2026-12-01", "2026-12-31"]);
  assert.equal(month.end.toISOString(), "2026-12-31T16:00:00.000Z");
  assert.equal(periodOf("monthly", new Date("2027-02-10T00:00:00Z")).endDay, "2027-02-28");
  assert.equal(feeOf(7460, 500), 373);
  assert.equal(feeOf(10, 350), 0); // 0.35 fen
  assert.equal(feeOf(100, 350), 4); // 3.5 fen rounds up
  assert.equal(feeOf(-500, 350), 0);
});

Deno.test("a statement sums an ended period of the merchant: payments, refunds, the fee at its rate, the payable", async () => {
  await using w = await setupApp();
  const { merchant, pay } = await outsourced(w, 500);
  const fin = await makeStaff(w, "settle1", [ROLES.finance]);
  const first = await pay(10_00);
  await pay(24_80);
  await refundTransfer(w.db, {
    transferId: first,
    amount: 4_80,
    reference: "refund-1",
    reason: "少打一份",
    staffId: null,
  });
  const actor = { staffId: fin.id, ip: null };
  // Today has not ended: nothing to prepare yet.
  assert.deepEqual(await prepareStatements(w.db, actor, { merchantId: merchant.id }), {
    prepared: [],
    carried: 0,
  });
  const tomorrow = new Date(Date.now() + DAY);
  const r = await prepareStatements(w.db, actor, { merchantId: merchant.id, now: tomorrow });
  assert.equal(r.prepared.length, 1);
  const [s] = await statements(w, merchant.id);
  assert.deepEqual(
    [s.gross, s.gross_count, s.refunds, s.refund_count, s.net, s.fee, s.payable, s.state],
    [34_80, 2, 4_80, 1, 30_00, 1_50, 28_50, "prepared"],
  );
  // Prepared again: the period has its statement, nothing twice.
  assert.deepEqual(
    (await prepareStatements(w.db, actor, { merchantId: merchant.id, now: tomorrow })).prepared,
    [],
  );
  const lines = await w.db.selectFrom("settlement_lines").select("merchant_delta")
    .where("statement_id", "=", s.id).execute();
  assert.deepEqual(lines.map((l) => l.merchant_delta).sort((a, b) => a - b), [-4_80, 10_00, 24_80]);
  assert.equal(await owed(w, merchant.id), 30_00);
});

Deno.test("maker-checker: the preparer cannot approve; a second member approves; paying needs the bank's reference and moves the money once", async () => {
  await using w = await setupApp();
  const { merchant, pay } = await outsourced(w, 350);
  await pay(100_00);
  const maker = await makeStaff(w, "maker1", [ROLES.finance]);
  const checker = await makeStaff(w, "checker1", [ROLES.finance]);
  await prepareStatements(w.db, { staffId: maker.id, ip: null }, {
    merchantId: merchant.id,
    now: new Date(Date.now() + DAY),
  });
  const [s] = await statements(w, merchant.id);
  assert.equal(s.payable, 96_50);

  const page = await maker.client.page(`/admin/finance/settlements/${s.id}`);
  assert.match(page, /本结算单由您编制，须由另一位财务人员复核/);
  assert.doesNotMatch(page, /复核通过<\/button>/);
  const self = await maker.client.post(`/admin/finance/settlements/${s.id}/approve`, {});
  assert.equal(self.status, 422);
  assert.match(await self.text(), /本结算单由您编制，须由另一位财务人员复核/);
  // Paying before approval is refused, and moves nothing.
  const early = await maker.client.post(`/admin/finance/settlements/${s.id}/pay`, {
    bank_reference: "X1",
  });
  assert.equal(early.status, 422);
  assert.match(await early.text(), /结算单须复核通过后才能付款/);
  assert.equal(await owed(w, merchant.id), 100_00);

  const ok = await checker.client.post(`/admin/finance/settlements/${s.id}/approve`, {});
  assert.equal(ok.status, 303);
  assert.match(
    await checker.client.page(ok.headers.get("location")!),
    /已复核通过，结算单已冻结，可以付款/,
  );

  const noRef = await maker.client.post(`/admin/finance/settlements/${s.id}/pay`, {
    bank_reference: " ",
  });
  assert.equal(noRef.status, 422);
  assert.match(await noRef.text(), /请填写银行付款流水号/);
  const paid = await maker.client.post(`/admin/finance/settlements/${s.id}/pay`, {
    bank_reference: "ABC123",
  });
  assert.equal(paid.status, 303);
  // The same form again is the same payment; another reference is refused.
  const again = await maker.client.post(`/admin/finance/settlements/${s.id}/pay`, {
    bank_reference: "ABC123",
  });
  assert.equal(again.status, 303);
  const other = await maker.client.post(`/admin/finance/settlements/${s.id}/pay`, {
    bank_reference: "ZZZ999",
  });
  assert.equal(other.status, 422);
  assert.match(await other.text(), /该结算单已登记付款/);

  const moved = await w.db.selectFrom("ledger_transfers").select(["kind", "amount"])
    .where("merchant_id", "=", merchant.id).where("kind", "in", [
      "settlement_payout",
      "settlement_fee",
    ] as never).orderBy("kind").execute();
  assert.deepEqual(moved.map((t) => [t.kind, t.amount]), [
    ["settlement_fee", 3_50],
    ["settlement_payout", 96_50],
  ]);
  assert.equal(await owed(w, merchant.id), 0);
  const after = await w.db.selectFrom("settlement_statements").selectAll()
    .where("id", "=", s.id).executeTakeFirstOrThrow();
  assert.deepEqual(
    [after.state, after.bank_reference, after.paid_by, after.decided_by],
    ["paid", "ABC123", maker.id, checker.id],
  );
  const audit = await w.db.selectFrom("audit_log").select("action")
    .where("action", "like", "settlement.%").orderBy("id").execute();
  assert.deepEqual(audit.map((a) => a.action), [
    "settlement.prepared",
    "settlement.approved",
    "settlement.paid",
  ]);
  await assertLedger(w);

  // The print view and the lines as Excel.
  assert.match(
    await maker.client.page(`/admin/finance/settlements/${s.id}/print`),
    /商户结算单[\s\S]*¥96\.50[\s\S]*ABC123/,
  );
  const xlsx = await maker.client.get(`/admin/finance/settlements/${s.id}?export=xlsx`);
  const rows = await readXlsx(new Uint8Array(await xlsx.arrayBuffer()));
  assert.deepEqual(rows[0].cells, ["流水号", "时间", "类型", "终端", "金额"]);
  assert.equal(rows.length, 2);
  assert.equal(rows[1].cells[4], "100");

  // The check of statements against the ledger agrees, and catches a statement changed after it
  // was paid.
  assert.deepEqual(await verifySettlements(w.db), []);
  assert.match(
    await maker.client.page("/admin/finance/settlements"),
    /结算核对：已付款的结算单与账上付款一致/,
  );
  assert.match(await maker.client.page("/admin/ledger"), /账务平衡[\s\S]*商户结算核对一致/);
  await w.db.updateTable("settlement_statements").set({ payable: 95_50, fee: 4_50 })
    .where("id", "=", s.id).execute();
  assert.deepEqual(await verifySettlements(w.db), [
    `结算单 #${s.id}：应付 ¥95.50、管理费 ¥4.50，账上付款 ¥96.50、管理费 ¥3.50`,
  ]);
  assert.match(await maker.client.page("/admin/finance/settlements"), /结算核对发现问题/);
  // The ledger verifier (账务核验, deno task verify-ledger) reports it too.
  assert.equal((await verifyLedger(w.db)).ok, true, "the wallet's own rules still hold");
  const books = await verifyLedger(w.db, [settlementLedgerCheck]);
  assert.deepEqual(books.problems, [
    `商户结算: 结算单 #${s.id}：应付 ¥95.50、管理费 ¥4.50，账上付款 ¥96.50、管理费 ¥3.50`,
  ]);
  const ledgerPage = await maker.client.page("/admin/ledger");
  assert.match(ledgerPage, /发现 1 个问题[\s\S]*商户结算: 结算单 #\d+：应付 ¥95\.50/);
});

Deno.test("approved is frozen: a refund made after it lands in the next period's statement", async () => {
  await using w = await setupApp();
  const { merchant, pay } = await outsourced(w, 0);
  const a = { staffId: (await makeStaff(w, "fz1", [ROLES.finance])).id, ip: null };
  const b = { staffId: (await makeStaff(w, "fz2", [ROLES.finance])).id, ip: null };
  const paid = await pay(50_00);
  await prepareStatements(w.db, a, { merchantId: merchant.id, now: new Date(Date.now() + DAY) });
  const [first] = await statements(w, merchant.id);
  const { decideStatement } = await import("./mod.ts");
  await decideStatement(w.db, b, { id: first.id, approve: true, note: "" });

  await refundTransfer(w.db, {
    transferId: paid,
    amount: 20_00,
    reference: "late-refund",
    reason: "退菜",
    staffId: null,
  });
  // Only a refund so far: no statement with a negative net, it waits for takings.
  const waiting = await prepareStatements(w.db, a, {
    merchantId: merchant.id,
    now: new Date(Date.now() + 2 * DAY),
  });
  assert.deepEqual(waiting, { prepared: [], carried: 1 });
  await pay(30_00);
  await prepareStatements(w.db, a, {
    merchantId: merchant.id,
    now: new Date(Date.now() + 2 * DAY),
  });
  const [, second] = await statements(w, merchant.id);
  assert.deepEqual(
    [second.gross, second.refunds, second.net, second.payable],
    [30_00, 20_00, 10_00, 10_00],
  );
  assert.notEqual(second.period_start, first.period_start);
  const frozen = await w.db.selectFrom("settlement_statements").select(["net", "refunds"])
    .where("id", "=", first.id).executeTakeFirstOrThrow();
  assert.deepEqual([frozen.net, frozen.refunds], [50_00, 0]);
  assert.equal(await owed(w, merchant.id), 60_00);
});

Deno.test("a statement sent back frees its movements for a new one; sending back needs a note", async () => {
  await using w = await setupApp();
  const { merchant, pay } = await outsourced(w, 500);
  await pay(20_00);
  const maker = await makeStaff(w, "rj1", [ROLES.finance]);
  const checker = await makeStaff(w, "rj2", [ROLES.finance]);
  const tomorrow = new Date(Date.now() + DAY);
  await prepareStatements(w.db, { staffId: maker.id, ip: null }, {
    merchantId: merchant.id,
    now: tomorrow,
  });
  const [s] = await statements(w, merchant.id);
  const bare = await checker.client.post(`/admin/finance/settlements/${s.id}/reject`, {
    note: "",
  });
  assert.equal(bare.status, 422);
  assert.match(await bare.text(), /请填写退回说明/);
  const back = await checker.client.post(`/admin/finance/settlements/${s.id}/reject`, {
    note: "费率应为4%",
  });
  assert.equal(back.status, 303);
  await setSettlementTerms(w.db, { staffId: null }, {
    merchantId: merchant.id,
    settles: true,
    period: "daily",
    feeRateBp: 400,
    payeeName: null,
    payeeBank: null,
    payeeAccount: null,
  });
  await prepareStatements(w.db, { staffId: maker.id, ip: null }, {
    merchantId: merchant.id,
    now: tomorrow,
  });
  const [old, fresh] = await statements(w, merchant.id);
  assert.equal(old.state, "rejected");
  assert.deepEqual([fresh.state, fresh.net, fresh.fee, fresh.payable], [
    "prepared",
    20_00,
    80,
    19_20,
  ]);
});

Deno.test("结算条件: a fee rate that is not a percentage comes back with its message and changes nothing", async () => {
  await using w = await setupApp();
  const merchant = await createMerchant(w.db, {
    code: "WT1",
    name: "外包超市",
    category: "supermarket",
  });
  const fin = await makeStaff(w, "terms1", [ROLES.finance]);
  const bad = await fin.client.post(`/admin/finance/settlements/terms/${merchant.id}`, {
    settles: "1",
    period: "monthly",
    fee_rate: "5,5",
  });
  assert.equal(bad.status, 422);
  const html = await bad.text();
  assert.match(html, /管理费率为0到100之间的百分数，最多两位小数/);
  assert.match(html, /value="5,5"/);
  assert.equal(
    (await w.db.selectFrom("merchant_settlement_terms").selectAll().execute()).length,
    0,
  );
  const good = await fin.client.post(`/admin/finance/settlements/terms/${merchant.id}`, {
    settles: "1",
    period: "weekly",
    fee_rate: "3.5",
    payee_account: "6228 1234",
  });
  assert.equal(good.status, 303);
  const row = await w.db.selectFrom("merchant_settlement_terms").selectAll()
    .executeTakeFirstOrThrow();
  assert.deepEqual([row.settles, row.period, row.fee_rate_bp], [true, "weekly", 350]);
  assert.match(
    await fin.client.page("/admin/finance/settlements"),
    /外包超市[\s\S]*每周[\s\S]*3\.50%/,
  );
});

Deno.test("paying one statement from many requests at once books its payout and fee once (race)", async () => {
  await using w = await setupApp();
  const { merchant, pay } = await outsourced(w, 500);
  await pay(80_00);
  const maker = { staffId: (await makeStaff(w, "race1", [ROLES.finance])).id, ip: null };
  const checker = { staffId: (await makeStaff(w, "race2", [ROLES.finance])).id, ip: null };
  const tomorrow = new Date(Date.now() + DAY);
  // Preparing from several tabs at once makes one statement.
  const prepared = await Promise.all(
    Array.from(
      { length: 4 },
      () => prepareStatements(w.db, maker, { merchantId: merchant.id, now: tomorrow }),
    ),
  );
  assert.equal(prepared.reduce((n, r) => n + r.prepared.length, 0), 1);
  const [s] = await statements(w, merchant.id);
  const { decideStatement } = await import("./mod.ts");
  await decideStatement(w.db, checker, { id: s.id, approve: true, note: "" });
  const results = await Promise.all(
    Array.from(
      { length: 8 },
      () => payStatement(w.db, maker, { id: s.id, bankReference: "BANK-42" }),
    ),
  );
  assert.equal(results.filter((r) => !r.duplicate).length, 1);
  const moved = await w.db.selectFrom("ledger_transfers").select(["reference", "amount"])
    .where("merchant_id", "=", merchant.id).where("reference", "like", "settlement-%")
    .orderBy("reference").execute();
  assert.deepEqual(moved.map((t) => [t.reference, t.amount]), [
    [`settlement-fee:${s.id}`, 4_00],
    [`settlement-payout:${s.id}`, 76_00],
  ]);
  assert.equal(await owed(w, merchant.id), 0);
  await assertLedger(w);
});
