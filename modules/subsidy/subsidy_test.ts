import assert from "node:assert/strict";
import { sql } from "kysely";
import { chinaDay } from "../platform/china_time.ts";
import { csrfFor } from "../platform/testing.ts";
import { ROLES } from "../staff/mod.ts";
import { createMerchant } from "../merchant/mod.ts";
import { listCardTypes } from "../card/mod.ts";
import { expireLots, getBalance, payFromCard, verifyLedger } from "../wallet/mod.ts";
import { makeStaff, makeStudent, setupApp, type TestWorld } from "../testkit/mod.ts";
import { approveBatch, createBatch, getBatch, reverseRecipient, withdrawBatch } from "./mod.ts";

const DAY = 86_400_000;
const ALL_PLACES = ["canteen", "supermarket", "shower", "utilities"];

type Client = Awaited<ReturnType<typeof makeStaff>>["client"];

async function holder(w: TestWorld, balance = 0) {
  const s = await makeStudent(w, { balance });
  const card = await w.db.selectFrom("card_accounts").select(["student_number", "school_id"])
    .where("id", "=", s.cardAccountId).executeTakeFirstOrThrow();
  return { ...s, studentNumber: card.student_number, schoolId: Number(card.school_id) };
}

async function upload(c: Client, fields: Record<string, string | string[]>, text: string | null) {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) {
    for (const one of Array.isArray(v) ? v : [v]) form.append(k, one);
  }
  form.set("_csrf", await csrfFor(c.config, c.cookies, true));
  if (text !== null) form.set("file", new File([text], "名单.csv", { type: "text/csv" }));
  return await c.app.request("http://localhost:8000/admin/subsidy/new", {
    method: "POST",
    headers: { cookie: [...c.cookies].map(([k, v]) => `${k}=${v}`).join("; ") },
    body: form,
  }, { remoteAddr: { transport: "tcp", hostname: c.ip, port: 50000 } });
}

const fieldsFor = (schoolId: number, extra: Record<string, string | string[]> = {}) => ({
  name: "十二月伙食补助",
  purpose: "家庭经济困难学生伙食补助",
  school_id: String(schoolId),
  source: "list",
  valid_from: chinaDay(),
  valid_until: chinaDay(Date.now() + 30 * DAY),
  categories: ["canteen", "shower"],
  ...extra,
});

async function lotsOf(w: TestWorld, card: number) {
  return await w.db.selectFrom("purse_lots").select(["granted", "remaining", "batch_id"])
    .where("card_account_id", "=", card).execute();
}

async function assertLedger(w: TestWorld) {
  const r = await verifyLedger(w.db);
  assert.equal(r.ok, true, r.problems.join("; "));
}

async function typeId(w: TestWorld, name: string): Promise<number> {
  return (await listCardTypes(w.db)).find((t) => t.name === name)!.id;
}

const batchIdOf = (res: Response) =>
  Number(/\/admin\/subsidy\/(\d+)/.exec(res.headers.get("location") ?? "")![1]);

Deno.test("a list is checked row by row, nothing is credited until a second finance member approves, and the student sees it on 余额", async () => {
  await using w = await setupApp();
  const a = await holder(w, 1_00);
  const b = await holder(w);
  const twice = await holder(w);
  const closed = await holder(w);
  await w.db.updateTable("card_accounts").set({ status: "cancelled" })
    .where("id", "=", closed.cardAccountId).execute();
  const temporary = await holder(w);
  await w.db.updateTable("card_accounts").set({ card_type_id: await typeId(w, "临时卡") })
    .where("id", "=", temporary.cardAccountId).execute();
  const maker = await makeStaff(w, "fin-a", [ROLES.finance]);
  const checker = await makeStaff(w, "fin-b", [ROLES.finance]);
  const list = [
    "学号,金额（元）",
    `${a.studentNumber},10.00`,
    `${b.studentNumber},5.5`,
    `${twice.studentNumber},3`,
    `${twice.studentNumber},4`,
    "20999999,5",
    `${closed.studentNumber},5`,
    `${a.studentNumber.slice(0, -1)}X,0`,
    "20250001,-3",
    "20250002,20000",
    "2=cmd|calc,5",
    `${temporary.studentNumber},5`,
  ].join("\n");
  const made = await upload(maker.client, fieldsFor(a.schoolId), list);
  assert.equal(made.status, 303, await made.text());
  const id = batchIdOf(made);
  const preview = await (await maker.client.get(`/admin/subsidy/${id}`)).text();
  assert.match(preview, /应发人数<\/dt><dd>2</);
  assert.match(preview, /应发金额<\/dt><dd>¥15\.50/);
  for (
    const why of [
      /学号重复（第 4、5 行），均不发放/,
      /本校没有此学号的一卡通账户/,
      /一卡通账户已注销/,
      /金额须大于0/,
      /金额超过单人上限 ¥10000\.00/,
      /学号“2=cmd\|calc”格式不正确/,
      /卡类别“临时卡”不发放补助/,
    ]
  ) assert.match(preview, why);
  assert.equal((await getBalance(w.db, a.cardAccountId)).balance, 1_00);
  assert.equal((await lotsOf(w, a.cardAccountId)).length, 0);
  assert.doesNotMatch(preview, /审核发放<\/button>/, "the preparer is not offered the approval");

  const self = await maker.client.post(`/admin/subsidy/${id}/approve`, {});
  assert.equal(self.status, 422);
  assert.match(await self.text(), /不能审核自己编制的批次/);
  assert.equal((await getBatch(w.db, id))!.state, "draft");
  assert.equal((await lotsOf(w, a.cardAccountId)).length, 0);

  const ok = await checker.client.post(`/admin/subsidy/${id}/approve`, {});
  assert.equal(ok.status, 303);
  const again = await checker.client.post(`/admin/subsidy/${id}/approve`, {});
  assert.equal(again.status, 303, "a second submission is answered as done");
  assert.deepEqual((await lotsOf(w, a.cardAccountId)).map((l) => Number(l.granted)), [10_00]);
  assert.deepEqual((await lotsOf(w, b.cardAccountId)).map((l) => Number(l.granted)), [5_50]);
  assert.equal((await lotsOf(w, twice.cardAccountId)).length, 0);
  assert.equal((await getBalance(w.db, a.cardAccountId)).balance, 11_00);
  assert.equal((await getBatch(w.db, id))!.state, "approved");

  const until = chinaDay(Date.now() + 31 * DAY);
  const wallet = await (await a.client.get("/wallet")).text();
  assert.match(wallet, new RegExp(`补助将于${until}[^<]*到期（¥10\\.00）`));
  const page = await (await checker.client.get(`/admin/subsidy/${id}`)).text();
  assert.match(page, /已发放<\/dt><dd>¥15\.50/);
  const csv = await (await checker.client.get(`/admin/subsidy?export=csv`)).text();
  assert.match(
    csv,
    /十二月伙食补助,家庭经济困难学生伙食补助,已发放,.*,2,15\.50,9,2,15\.50,0\.00,0\.00,0\.00,15\.50/,
  );
  const audit = await w.db.selectFrom("audit_log").select(["action", "staff_id"])
    .where("target_type", "=", "subsidy_batch").orderBy("id").execute();
  assert.deepEqual(audit.map((r) => r.action), [
    "subsidy.created",
    "subsidy.approved",
    "subsidy.completed",
  ]);
  assert.equal(Number(audit[1].staff_id), checker.id);
  await assertLedger(w);
});

Deno.test("a batch whose end is before its start, or with no place to spend, is refused and nothing is made", async () => {
  await using w = await setupApp();
  const a = await holder(w);
  const maker = await makeStaff(w, "fin-a", [ROLES.finance]);
  const list = `学号,金额\n${a.studentNumber},10\n`;
  const early = await upload(
    maker.client,
    fieldsFor(a.schoolId, {
      valid_from: chinaDay(Date.now() + 5 * DAY),
      valid_until: chinaDay(Date.now() + 2 * DAY),
    }),
    list,
  );
  assert.equal(early.status, 422);
  assert.match(await early.text(), /有效期截止不能早于开始日期/);
  const nowhere = await upload(maker.client, fieldsFor(a.schoolId, { categories: [] }), list);
  assert.equal(nowhere.status, 422);
  assert.match(await nowhere.text(), /请选择可使用的商户类别/);
  const noList = await upload(maker.client, fieldsFor(a.schoolId), null);
  assert.equal(noList.status, 422);
  assert.match(await noList.text(), /请上传发放名单/);
  const count = await w.db.selectFrom("subsidy_batches").select((e) => e.fn.countAll().as("n"))
    .executeTakeFirstOrThrow();
  assert.equal(Number(count.n), 0);
});

Deno.test("every student of a card type gets the one amount; a batch is withdrawn before approval, never after", async () => {
  await using w = await setupApp();
  const a = await holder(w);
  const b = await holder(w);
  const maker = await makeStaff(w, "fin-a", [ROLES.finance]);
  const checker = await makeStaff(w, "fin-b", [ROLES.finance]);
  const noAmount = await upload(
    maker.client,
    fieldsFor(a.schoolId, { source: "card_type", card_type: String(await typeId(w, "学生")) }),
    null,
  );
  assert.equal(noAmount.status, 422);
  assert.match(await noAmount.text(), /请填写每人金额/);
  const temporary = await upload(
    maker.client,
    fieldsFor(a.schoolId, {
      source: "card_type",
      card_type: String(await typeId(w, "临时卡")),
      amount: "15",
    }),
    null,
  );
  assert.equal(temporary.status, 422);
  assert.match(await temporary.text(), /卡类别“临时卡”不发放补助/);
  const made = await upload(
    maker.client,
    fieldsFor(a.schoolId, {
      source: "card_type",
      card_type: String(await typeId(w, "学生")),
      amount: "15",
    }),
    null,
  );
  assert.equal(made.status, 303, await made.text());
  const first = batchIdOf(made);
  const withdrawn = await maker.client.post(`/admin/subsidy/${first}/withdraw`, {});
  assert.equal(withdrawn.status, 303);
  const late = await checker.client.post(`/admin/subsidy/${first}/approve`, {});
  assert.equal(late.status, 422);
  assert.match(await late.text(), /批次已撤回/);
  assert.equal((await lotsOf(w, a.cardAccountId)).length, 0);

  const actor = { staffId: maker.id, ip: null };
  const second = await createBatch(w.db, actor, {
    name: "冬季补助",
    purpose: "全体学生",
    schoolId: a.schoolId,
    purse: "subsidy",
    source: "card_type",
    cardTypeId: await typeId(w, "学生"),
    list: null,
    amount: 15_00,
    validFrom: chinaDay(),
    validUntil: chinaDay(Date.now() + DAY),
    categories: ALL_PLACES,
  });
  await approveBatch(w.db, { staffId: checker.id, ip: null }, second);
  for (const s of [a, b]) {
    assert.deepEqual((await lotsOf(w, s.cardAccountId)).map((l) => Number(l.granted)), [15_00]);
  }
  await assert.rejects(withdrawBatch(w.db, actor, second), /Batch approved/);
  await assertLedger(w);
});

Deno.test("an approval stopped after its first chunk is resumed by approving again, and each card is credited once", async () => {
  await using w = await setupApp();
  const cards = [];
  for (let i = 0; i < 5; i++) cards.push(await holder(w));
  const maker = await makeStaff(w, "fin-a", [ROLES.finance]);
  const checker = await makeStaff(w, "fin-b", [ROLES.finance]);
  const other = await makeStaff(w, "fin-c", [ROLES.finance]);
  const list = `学号,金额\n${cards.map((c, i) => `${c.studentNumber},${i + 1}`).join("\n")}\n`;
  const id = batchIdOf(await upload(maker.client, fieldsFor(cards[0].schoolId), list));
  const crashed = await approveBatch(w.db, { staffId: checker.id, ip: null }, id, {
    chunk: 2,
    maxChunks: 1,
  });
  assert.deepEqual(crashed, { credited: 2, complete: false });
  assert.equal((await getBatch(w.db, id))!.state, "approving");
  const page = await (await other.client.get(`/admin/subsidy/${id}`)).text();
  assert.match(page, /继续发放/);
  const resumed = await other.client.post(`/admin/subsidy/${id}/approve`, {});
  assert.equal(resumed.status, 303);
  assert.match(resumed.headers.get("location")!, /done=approved/);
  for (const [i, c] of cards.entries()) {
    assert.deepEqual((await lotsOf(w, c.cardAccountId)).map((l) => Number(l.granted)), [
      (i + 1) * 100,
    ]);
  }
  const b = (await getBatch(w.db, id))!;
  assert.equal(b.state, "approved");
  assert.equal(Number(b.approved_by), checker.id, "the approval stays the first checker's");
  await assertLedger(w);
});

Deno.test("after approval a card's grant is reversed by a new transfer; spent and expired money is reported per batch", async () => {
  await using w = await setupApp();
  const a = await holder(w, 2_00);
  const b = await holder(w);
  const maker = await makeStaff(w, "fin-a", [ROLES.finance]);
  const checker = await makeStaff(w, "fin-b", [ROLES.finance]);
  const canteen = await createMerchant(w.db, {
    code: "CT-SB",
    name: "一食堂",
    category: "canteen",
  });
  const list = `学号,金额\n${a.studentNumber},10\n${b.studentNumber},8\n`;
  const id = batchIdOf(await upload(maker.client, fieldsFor(a.schoolId), list));
  await checker.client.post(`/admin/subsidy/${id}/approve`, {});
  await payFromCard(w.db, {
    cardAccountId: a.cardAccountId,
    merchantId: canteen.id,
    amount: 3_00,
    reference: "sb-lunch",
  });
  const reversed = await checker.client.post(`/admin/subsidy/${id}/reverse`, {
    student_number: a.studentNumber,
    reason: "名单有误",
  });
  assert.equal(reversed.status, 303);
  assert.equal((await getBalance(w.db, a.cardAccountId)).balance, 2_00 + 10_00 - 3_00 - 7_00);
  const twice = await checker.client.post(`/admin/subsidy/${id}/reverse`, {
    student_number: a.studentNumber,
    reason: "名单有误",
  });
  assert.equal(twice.status, 422);
  assert.match(await twice.text(), /没有可冲回的金额/);
  await expireLots(w.db, new Date(Date.now() + 32 * DAY));
  const page = await (await checker.client.get(`/admin/subsidy/${id}`)).text();
  for (
    const [label, amount] of [
      ["已发放", "¥18.00"],
      ["已消费", "¥3.00"],
      ["到期退回", "¥8.00"],
      ["冲回/销户退回", "¥7.00"],
      ["剩余", "¥0.00"],
    ]
  ) assert.match(page, new RegExp(`${label}</dt><dd>${amount.replace(".", "\\.")}`));
  const csv = await (await checker.client.get(`/admin/subsidy/${id}?export=csv`)).text();
  assert.match(csv, new RegExp(`${a.studentNumber},测试学生,10\\.00,3\\.00,0\\.00,7\\.00,0\\.00`));
  const audit = await w.db.selectFrom("audit_log").select("action")
    .where("action", "=", "subsidy.reversed").execute();
  assert.equal(audit.length, 1);
  await assert.rejects(
    reverseRecipient(w.db, { staffId: checker.id, ip: null }, {
      batchId: id,
      studentNumber: "20999999",
      reason: "x",
    }),
    /Not granted/,
  );
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from ledger_transfers
    where kind = 'subsidy_expiry'`.execute(w.db);
  assert.equal(rows[0].n, 1);
  await assertLedger(w);
});

Deno.test("the batches list pages past its first screen and says how many; the export has them all", async () => {
  await using w = await setupApp();
  const h = await holder(w);
  const finance = await makeStaff(w, "fin1", [ROLES.finance]);
  await w.db.insertInto("subsidy_batches").values(
    Array.from({ length: 57 }, (_, i) => ({
      name: `第${i + 1}批`,
      purpose: "伙食补助",
      school_id: h.schoolId,
      purse: "subsidy",
      source: "list" as const,
      card_type_id: null,
      valid_from: new Date(),
      valid_until: new Date(Date.now() + 30 * DAY),
      categories: ["canteen"],
      recipients: 0,
      total: 0,
      refused: 0,
      created_by: finance.id,
      approved_by: null,
      approved_at: null,
      completed_at: null,
      withdrawn_by: null,
      withdrawn_at: null,
    })),
  ).execute();
  const first = await finance.client.page("/admin/subsidy");
  assert.match(first, /共 <strong>57<\/strong> 条，第 1–50 条/);
  assert.match(first, />第57批</);
  assert.doesNotMatch(first, />第7批</);
  const second = await finance.client.page("/admin/subsidy?page=2");
  assert.match(second, /第 51–57 条/);
  assert.match(second, />第1批</);
  const csv = await (await finance.client.get("/admin/subsidy?export=csv")).text();
  assert.equal(csv.trim().split(/\r?\n/).length, 1 + 57);
});
