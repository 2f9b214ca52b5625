import assert from "node:assert/strict";
import { readXlsx } from "../platform/sheets.ts";
import { createMerchant, registerTerminal } from "../merchant/mod.ts";
import { creditTopUp, getBalance, payFromCard, verifyLedger } from "../wallet/mod.ts";
import { csrfFor } from "../platform/testing.ts";
import { ROLES } from "../staff/mod.ts";
import { settlePaid } from "../topup/mod.ts";
import { readStatement } from "./mod.ts";
import { makeStaff, makeStudent, setupApp } from "../testkit/mod.ts";

type Ctx = Awaited<ReturnType<typeof setupApp>>;

async function fundedPurchase(ctx: Ctx, amount = 1000) {
  const s = await makeStudent(ctx);
  const merchant = await createMerchant(ctx.db, {
    code: `C${crypto.randomUUID().slice(0, 6)}`,
    name: "第一食堂",
    category: "canteen",
  });
  await creditTopUp(ctx.db, {
    cardAccountId: s.cardAccountId,
    amount: 5000,
    method: "sandbox",
    reference: `seed-${s.cardAccountId}`,
  });
  const pay = await payFromCard(ctx.db, {
    cardAccountId: s.cardAccountId,
    merchantId: merchant.id,
    amount,
    reference: `pos-${s.cardAccountId}-1`,
  });
  return { student: s, merchant, transferId: pay.transferId };
}

async function assertLedger(ctx: Ctx) {
  const r = await verifyLedger(ctx.db);
  assert.equal(r.ok, true, r.problems.join("; "));
}

const token = () => crypto.randomUUID().replaceAll("-", "");

Deno.test("finance refunds a payment in part and in full, never more than the original, once per form", async () => {
  await using ctx = await setupApp();
  const { student, transferId } = await fundedPurchase(ctx, 1000);
  const fin = await makeStaff(ctx, "fin1", [ROLES.finance]);
  assert.equal((await getBalance(ctx.db, student.cardAccountId)).balance, 4000);
  const page = await fin.client.page(`/admin/finance/refunds?transfer=${transferId}`);
  assert.match(page, /可退/);
  const formToken = /name="token" value="([^"]+)"/.exec(page)![1];

  const first = await fin.client.post("/admin/finance/refunds", {
    transfer_id: String(transferId),
    amount: "3",
    reason: "菜品售罄",
    token: formToken,
  });
  assert.equal(first.status, 303);
  // The same form submitted again: nothing more moves.
  const again = await fin.client.post("/admin/finance/refunds", {
    transfer_id: String(transferId),
    amount: "3",
    reason: "菜品售罄",
    token: formToken,
  });
  assert.equal(again.status, 303);
  assert.equal((await getBalance(ctx.db, student.cardAccountId)).balance, 4300);

  const over = await fin.client.post("/admin/finance/refunds", {
    transfer_id: String(transferId),
    amount: "7.01",
    reason: "多退",
    token: token(),
  });
  assert.equal(over.status, 422);
  assert.match(await over.text(), /退款金额超过可退金额 ¥7\.00/);

  // Ten different forms for the rest at once: exactly ¥7.00 more comes back in total.
  const racers = await Promise.all(
    Array.from({ length: 10 }, () =>
      fin.client.post("/admin/finance/refunds", {
        transfer_id: String(transferId),
        amount: "7",
        reason: "整单退款",
        token: token(),
      })),
  );
  assert.equal(racers.filter((r) => r.status === 303).length, 1);
  assert.equal((await getBalance(ctx.db, student.cardAccountId)).balance, 5000);
  const refunds = await ctx.db.selectFrom("finance_refunds").select("amount").execute();
  assert.equal(refunds.reduce((s, r) => s + r.amount, 0), 1000);
  const audit = await ctx.db.selectFrom("audit_log").select("action").where(
    "action",
    "=",
    "finance.refund",
  ).execute();
  assert.equal(audit.length, 2);
  await assertLedger(ctx);
});

Deno.test("the refund form refuses bad amounts, reasons, tokens and transfer ids without moving money", async () => {
  await using ctx = await setupApp();
  const { student, transferId } = await fundedPurchase(ctx, 1000);
  const fin = await makeStaff(ctx, "fin1", [ROLES.finance]);
  const cases: Array<[Record<string, string>, number, RegExp]> = [
    [{ amount: "0" }, 422, /请输入正确的退款金额/],
    [{ amount: "-1" }, 422, /请输入正确的退款金额/],
    [{ amount: "0.001" }, 422, /请输入正确的退款金额/],
    [{ amount: "1e9" }, 422, /请输入正确的退款金额/],
    [{ amount: "abc" }, 422, /请输入正确的退款金额/],
    [{ amount: "999999999" }, 422, /退款金额超过可退金额/],
    [{ reason: "" }, 422, /请填写原因/],
    [{ token: "short" }, 422, /表单已失效/],
    [{ transfer_id: "abc" }, 422, /请选择要退款的交易/],
    [{ transfer_id: "999999" }, 404, /页面不存在或您无权查看/],
  ];
  for (const [change, status, message] of cases) {
    const fields = {
      transfer_id: String(transferId),
      amount: "1",
      reason: "测试原因",
      token: token(),
      ...change,
    };
    const res = await fin.client.post("/admin/finance/refunds", fields);
    assert.equal(res.status, status, JSON.stringify(change));
    assert.match(await res.text(), message, JSON.stringify(change));
  }
  // A top-up is not a payment that can be refunded here.
  const topup = await ctx.db.selectFrom("ledger_transfers").select("id").where(
    "kind",
    "=",
    "topup",
  ).executeTakeFirstOrThrow();
  const res = await fin.client.post("/admin/finance/refunds", {
    transfer_id: String(topup.id),
    amount: "1",
    reason: "测试原因",
    token: token(),
  });
  assert.equal(res.status, 422);
  assert.equal((await getBalance(ctx.db, student.cardAccountId)).balance, 4000);
  assert.equal((await ctx.db.selectFrom("finance_refunds").select("id").execute()).length, 0);
  await assertLedger(ctx);
});

Deno.test("调账 pages past its first screen with its count, filters by state and exports; 概览 counts every pending one", async () => {
  await using ctx = await setupApp();
  const s = await makeStudent(ctx);
  const maker = await makeStaff(ctx, "maker", [ROLES.finance]);
  const checker = await makeStaff(ctx, "checker", [ROLES.finance]);
  const rows = Array.from({ length: 265 }, (_, i) => ({
    card_account_id: s.cardAccountId,
    amount: 100 + i,
    reason: `补录 ${i + 1}`,
    proposed_by: maker.id,
    ...(i < 5
      ? { state: "rejected" as const, decided_by: checker.id, decided_at: new Date() }
      : {}),
  }));
  await ctx.db.insertInto("finance_adjustments").values(rows).execute();

  const home = await checker.client.page("/admin/finance");
  assert.match(
    home,
    /待审批调账<\/dt><dd><a href="\/admin\/finance\/adjustments\?state=proposed">260 笔/,
  );
  const first = await checker.client.page("/admin/finance/adjustments");
  assert.match(first, /共 <strong>265<\/strong> 条，第 1–50 条/);
  assert.match(first, /补录 265/);
  const last = await checker.client.page("/admin/finance/adjustments?page=6");
  assert.match(last, /第 251–265 条/);
  assert.match(last, /补录 1</);
  const rejected = await checker.client.page("/admin/finance/adjustments?state=rejected");
  assert.match(rejected, /共 <strong>5<\/strong> 条/);
  assert.doesNotMatch(rejected, /补录 6</);
  const none = await checker.client.page("/admin/finance/adjustments?state=approved");
  assert.match(none, /没有符合条件的调账/);

  const file = await checker.client.get("/admin/finance/adjustments?state=rejected&export=xlsx");
  const sheet = await readXlsx(new Uint8Array(await file.arrayBuffer()));
  assert.deepEqual(sheet[0].cells.slice(0, 4), ["编号", "学号", "姓名", "金额(元)"]);
  assert.equal(sheet.length, 6);
  assert.deepEqual(sheet.slice(1).map((r) => r.cells[7]), Array(5).fill("已驳回"));
  assert.deepEqual(sheet.slice(1).map((r) => r.cells[4]).sort(), [
    "补录 1",
    "补录 2",
    "补录 3",
    "补录 4",
    "补录 5",
  ]);
});

Deno.test("an adjustment needs a second finance staff member: self-approval is refused", async () => {
  await using ctx = await setupApp();
  const s = await makeStudent(ctx);
  const card = await ctx.db.selectFrom("card_accounts").select("student_number").where(
    "id",
    "=",
    s.cardAccountId,
  ).executeTakeFirstOrThrow();
  const maker = await makeStaff(ctx, "maker", [ROLES.finance]);
  const checker = await makeStaff(ctx, "checker", [ROLES.finance]);
  for (
    const [amount, message] of [
      ["0", /请输入正确的调账金额/],
      ["1e9", /请输入正确的调账金额/],
      ["0.001", /请输入正确的调账金额/],
      ["abc", /请输入正确的调账金额/],
      ["20000", /单笔调账不能超过/],
    ] as const
  ) {
    const bad = await maker.client.post("/admin/finance/adjustments", {
      student_number: card.student_number,
      amount,
      reason: "测试",
    });
    assert.equal(bad.status, 422, amount);
    assert.match(await bad.text(), message);
  }
  const unknown = await maker.client.post("/admin/finance/adjustments", {
    student_number: "0000000000",
    amount: "10",
    reason: "测试",
  });
  assert.match(await unknown.text(), /未找到该学号/);
  const noReason = await maker.client.post("/admin/finance/adjustments", {
    student_number: card.student_number,
    amount: "10",
    reason: "",
  });
  assert.match(await noReason.text(), /请填写原因/);

  assert.equal(
    (await maker.client.post("/admin/finance/adjustments", {
      student_number: card.student_number,
      amount: "12.50",
      reason: "补录食堂断网期间的充值",
    })).status,
    303,
  );
  const adj = await ctx.db.selectFrom("finance_adjustments").selectAll()
    .executeTakeFirstOrThrow();
  assert.equal(adj.amount, 1250);
  assert.equal(adj.state, "proposed");
  assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 0);

  const self = await maker.client.post(`/admin/finance/adjustments/${adj.id}/approve`);
  assert.equal(self.status, 422);
  assert.match(await self.text(), /不能审批自己提交的调账/);
  assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 0);

  assert.equal(
    (await checker.client.post(`/admin/finance/adjustments/${adj.id}/approve`)).status,
    303,
  );
  assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 1250);
  const twice = await checker.client.post(`/admin/finance/adjustments/${adj.id}/approve`);
  assert.match(await twice.text(), /该调账已处理/);
  assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 1250);

  // A debit beyond the balance is refused by the ledger and stays proposed.
  await maker.client.post("/admin/finance/adjustments", {
    student_number: card.student_number,
    amount: "-20",
    reason: "误充扣回",
  });
  const debit = await ctx.db.selectFrom("finance_adjustments").selectAll().where(
    "amount",
    "=",
    -2000,
  ).executeTakeFirstOrThrow();
  assert.equal(
    (await checker.client.post(`/admin/finance/adjustments/${debit.id}/approve`)).status,
    422,
  );
  assert.equal(
    (await ctx.db.selectFrom("finance_adjustments").select("state").where("id", "=", debit.id)
      .executeTakeFirstOrThrow()).state,
    "proposed",
  );
  assert.equal(
    (await checker.client.post(`/admin/finance/adjustments/${debit.id}/reject`)).status,
    303,
  );
  assert.equal((await checker.client.post("/admin/finance/adjustments/abc/approve")).status, 404);
  assert.equal(
    (await checker.client.post("/admin/finance/adjustments/99999/approve")).status,
    404,
  );

  const actions = await ctx.db.selectFrom("audit_log").select(["action", "staff_id"]).where(
    "action",
    "like",
    "finance.adjustment%",
  ).orderBy("id").execute();
  assert.deepEqual(actions, [
    { action: "finance.adjustment_proposed", staff_id: maker.id },
    { action: "finance.adjustment_approved", staff_id: checker.id },
    { action: "finance.adjustment_proposed", staff_id: maker.id },
    { action: "finance.adjustment_rejected", staff_id: checker.id },
  ]);
  // The database itself refuses a decision by the proposer.
  await assert.rejects(
    ctx.db.updateTable("finance_adjustments").set({ decided_by: maker.id }).where(
      "id",
      "=",
      debit.id,
    ).execute(),
  );
  await assertLedger(ctx);
});

Deno.test("daily reports per merchant and per terminal, with an SVG bar chart and CSV export", async () => {
  await using ctx = await setupApp();
  const s = await makeStudent(ctx);
  await creditTopUp(ctx.db, {
    cardAccountId: s.cardAccountId,
    amount: 10_000,
    method: "sandbox",
    reference: "seed",
  });
  const a = await createMerchant(ctx.db, {
    code: "CANTEEN-A",
    name: "第一食堂",
    category: "canteen",
  });
  const b = await createMerchant(ctx.db, {
    code: "SHOP-B",
    name: "校园超市",
    category: "supermarket",
  });
  const t1 = (await registerTerminal(ctx.db, ctx.config.appSecret, {
    merchantId: a.id,
    kind: "canteen_pos",
    name: "一食堂1号窗口",
  })).terminal;
  const t2 = (await registerTerminal(ctx.db, ctx.config.appSecret, {
    merchantId: a.id,
    kind: "canteen_pos",
    name: "一食堂2号窗口",
  })).terminal;
  let n = 0;
  const pay = (merchantId: number, terminalId: number | null, amount: number) =>
    payFromCard(ctx.db, {
      cardAccountId: s.cardAccountId,
      merchantId,
      terminalId,
      amount,
      reference: `r${n++}`,
    });
  await pay(a.id, t1.id, 1200);
  await pay(a.id, t1.id, 800);
  await pay(a.id, t2.id, 1500);
  await pay(b.id, null, 350);
  const fin = await makeStaff(ctx, "fin1", [ROLES.finance]);
  const byMerchant = await fin.client.page("/admin/finance/reports");
  assert.match(byMerchant, /<svg class="bar-chart"/);
  assert.equal((byMerchant.match(/<rect x="220"/g) ?? []).length, 2);
  // The days side by side: the last 7 days by default, a bar each, today's 4 payments in the last.
  const bars = [...byMerchant.matchAll(/<rect class="trend-bar"[^>]*><title>([^<]+)<\/title>/g)];
  assert.equal(bars.length, 7);
  assert.match(bars[6][1], /^\d{4}-\d{2}-\d{2}：4 笔，¥38\.50$/);
  assert.match(bars[0][1], /：0 笔，¥0\.00$/);
  assert.match(byMerchant, /<summary>每日明细（7 天）<\/summary>/);
  // 按商户 names the merchant once.
  assert.match(byMerchant, /<thead><tr><th>商户<\/th><th class="num">笔数<\/th>/);
  assert.match(byMerchant, /<tr><td>第一食堂<\/td><td class="num">3<\/td>/);
  const merchantCsv = await (await fin.client.get("/admin/finance/reports.csv")).text();
  assert.ok(merchantCsv.startsWith("\uFEFF商户,笔数,金额(元),退款(元),起始日期,截止日期\r\n"));
  assert.match(merchantCsv, /\r\n第一食堂,3,35\.00,0\.00,/);
  const xlsx = await fin.client.get("/admin/finance/reports.xlsx?by=terminal");
  const sheet = await readXlsx(new Uint8Array(await xlsx.arrayBuffer()));
  assert.deepEqual(sheet[0].cells.slice(0, 4), ["终端", "商户", "笔数", "金额(元)"]);
  assert.equal(sheet.length, 4);
  // A month's range keeps a bar for every day; a range over a year is cut to its last 366 days.
  const month = await fin.client.page("/admin/finance/reports?from=2026-01-01&to=2026-01-31");
  assert.equal((month.match(/<rect class="trend-bar"/g) ?? []).length, 31);
  const years = await fin.client.page("/admin/finance/reports?from=2020-01-01&to=2026-01-31");
  assert.match(years, /2025-01-31 至 2026-01-31/);
  assert.match(byMerchant, /第一食堂：3 笔，¥35\.00/);
  assert.match(byMerchant, /校园超市：1 笔，¥3\.50/);
  assert.match(byMerchant, /4 笔，¥38\.50/);
  const byTerminal = await fin.client.page("/admin/finance/reports?by=terminal");
  assert.match(byTerminal, /一食堂1号窗口：2 笔，¥20\.00/);
  assert.match(byTerminal, /一食堂2号窗口：1 笔，¥15\.00/);
  const csv = await fin.client.get("/admin/finance/reports.csv?by=terminal");
  assert.match(csv.headers.get("content-type")!, /text\/csv/);
  assert.match(csv.headers.get("content-disposition")!, /attachment/);
  const text = await csv.text();
  assert.ok(text.startsWith("\uFEFF终端,商户,笔数,金额(元)"));
  assert.match(text, /一食堂1号窗口,第一食堂,2,20\.00,0\.00/);
  // Bad parameters fall back to today rather than failing.
  for (const q of ["from=2026-13-45", "to=abc&by=nonsense", "from=' or 1=1"]) {
    assert.equal((await fin.client.get(`/admin/finance/reports?${q}`)).status, 200, q);
  }
  const yesterday = new Date(Date.now() + 8 * 3600_000 - 86_400_000).toISOString().slice(0, 10);
  assert.match(
    await fin.client.page(`/admin/finance/reports?from=${yesterday}&to=${yesterday}`),
    /该期间没有消费/,
  );
});

async function uploadStatement(
  ctx: Ctx,
  client: Awaited<ReturnType<typeof makeStaff>>["client"],
  csv: string,
  method = "sandbox",
) {
  const form = new FormData();
  form.set("method", method);
  form.set("statement", new File([csv], "wechat-bill.csv", { type: "text/csv" }));
  const headers = new Headers({
    cookie: [...client.cookies].map(([k, v]) => `${k}=${v}`).join("; "),
    "x-csrf-token": await csrfFor(ctx.config, client.cookies, true),
  });
  return await ctx.app.request("http://localhost:8000/admin/finance/reconcile", {
    method: "POST",
    headers,
    body: form,
  });
}

Deno.test("top-up reconciliation sorts a statement into matched, missing on either side and amount mismatches", async () => {
  await using ctx = await setupApp();
  const s = await makeStudent(ctx);
  const open = async (amount: string) => {
    const res = await s.client.post("/wallet/recharge", { amount, method: "sandbox" });
    return res.headers.get("location")!.split("/").pop()!;
  };
  const txnOf = async (no: string) =>
    (await ctx.db.selectFrom("sandbox_payments").select("txn_id").where("order_no", "=", no)
      .executeTakeFirstOrThrow()).txn_id;
  const matched = await open("10");
  const mismatch = await open("20");
  const oursOnly = await open("30");
  const theirsOnly = await open("40");
  for (const [no, amount] of [[matched, 1000], [mismatch, 2000], [oursOnly, 3000]] as const) {
    assert.equal(
      await settlePaid(ctx, { method: "sandbox", orderNo: no, txnId: await txnOf(no), amount }),
      "credited",
    );
  }
  const day = new Date(Date.now() + 8 * 3600_000).toISOString().slice(0, 10);
  const csv = [
    "\uFEFF交易时间,商户订单号,微信支付订单号,金额(元),状态",
    `${day} 10:00:00,\`${matched},\`${await txnOf(matched)},10.00,SUCCESS`,
    `${day} 10:01:00,${mismatch},${await txnOf(mismatch)},20.01,SUCCESS`,
    `${day} 10:02:00,${theirsOnly},${await txnOf(theirsOnly)},"40.00",SUCCESS`,
    `${day} 10:03:00,YXT00000000000000000099,4200000000,5.00,SUCCESS`,
    `${day} 10:04:00,${matched},R1,10.00,REFUND`,
    "总交易单数,4,,,",
  ].join("\r\n");
  const fin = await makeStaff(ctx, "fin1", [ROLES.finance]);
  const res = await uploadStatement(ctx, fin.client, csv);
  assert.equal(res.status, 303, await res.clone().text());
  const page = await fin.client.page(res.headers.get("location")!);
  const rec = await ctx.db.selectFrom("finance_reconciliations").selectAll()
    .executeTakeFirstOrThrow();
  assert.deepEqual([
    rec.matched,
    rec.missing_ours,
    rec.missing_theirs,
    rec.mismatched,
    rec.rows_total,
  ], [1, 2, 1, 1, 4]);
  assert.match(page, new RegExp(`${oursOnly}`));
  assert.match(page, /无此订单/);
  assert.match(page, /¥20\.01/);
  const audit = await ctx.db.selectFrom("audit_log").select("action").where(
    "action",
    "=",
    "finance.reconciled",
  ).execute();
  assert.equal(audit.length, 1);

  // The order list finds an order by its number and by the student's 学号.
  const found = await fin.client.page(`/admin/finance/orders?q=${theirsOnly}`);
  assert.match(found, new RegExp(theirsOnly));
  assert.match(found, /待支付/);
  assert.doesNotMatch(found, new RegExp(matched));
  // Unusable uploads come back with a message.
  assert.equal((await uploadStatement(ctx, fin.client, "a,b,c\n1,2,3")).status, 422);
  assert.equal((await uploadStatement(ctx, fin.client, "")).status, 422);
  assert.equal((await uploadStatement(ctx, fin.client, csv, "alipay")).status, 422);
  assert.equal((await fin.client.get("/admin/finance/reconcile/999")).status, 404);
  assert.equal((await fin.client.get("/admin/finance/reconcile/abc")).status, 404);
});

Deno.test("a statement is read with BOM, backticks, quotes, summary lines and odd rows", () => {
  const r = readStatement(
    '\uFEFF交易时间,商户订单号,微信订单号,应结订单金额,交易状态\n`2026-11-25 09:00:00,`YXT1,`420001,"1,234.50",SUCCESS\n2026-11-25,YXT2,4202,abc,SUCCESS\n2026-11-25,YXT1,4203,1.00,SUCCESS\n总交易单数,1\n',
  );
  assert.deepEqual(r.rows.map((x) => [x.orderNo, x.txnId, x.amount]), [["YXT1", "420001", 123450]]);
  assert.deepEqual(r.problems.map((p) => p.line), [3, 4]);
  assert.equal(r.skipped, 1);
  assert.match(readStatement("x,y\n1,2").problems[0].message, /表头缺少/);
});

Deno.test("every finance admin route answers each role as it should", async () => {
  await using ctx = await setupApp();
  const { transferId } = await fundedPurchase(ctx, 500);
  const staff = {
    finance: await makeStaff(ctx, "fin", [ROLES.finance]),
    sysadmin: await makeStaff(ctx, "sys", [ROLES.sysadmin]),
    card_office: await makeStaff(ctx, "card", [ROLES.cardOffice]),
    info_centre: await makeStaff(ctx, "info", [ROLES.infoCentre]),
  };
  const gets = [
    "/admin/finance",
    "/admin/finance/refunds",
    `/admin/finance/refunds?transfer=${transferId}`,
    "/admin/finance/adjustments",
    "/admin/finance/reports",
    "/admin/finance/reports.csv",
    "/admin/finance/orders",
    "/admin/finance/orders?q=2024",
    "/admin/finance/reconcile",
    "/admin/finance/reconcile/sandbox-statement.csv",
    "/admin/finance/flags",
    "/admin/topup/sandbox",
  ];
  const posts: Array<[string, Record<string, string>]> = [
    ["/admin/finance/refunds", {
      transfer_id: String(transferId),
      amount: "0.01",
      reason: "角色测试",
      token: "",
    }],
    ["/admin/finance/adjustments", { student_number: "0000", amount: "1", reason: "角色测试" }],
    ["/admin/finance/adjustments/1/approve", {}],
    ["/admin/finance/adjustments/1/reject", {}],
    ["/admin/finance/reconcile", {}],
    ["/admin/finance/flags/1/resolve", { resolution: "角色测试" }],
    ["/admin/topup/sandbox", { mode: "normal" }],
  ];
  for (const path of gets) {
    for (const [role, s] of Object.entries(staff)) {
      const res = await s.client.get(path);
      const expected = role === "finance" || role === "sysadmin" ? 200 : 403;
      assert.equal(res.status, expected, `${role} GET ${path}`);
      await res.body?.cancel();
    }
    const anon = await ctx.app.request(`http://localhost:8000${path}`);
    assert.equal(anon.status, 303, `anonymous GET ${path}`);
    assert.match(anon.headers.get("location")!, /^\/admin\/login/);
  }
  for (const [path, fields] of posts) {
    for (const [role, s] of Object.entries(staff)) {
      const res = await s.client.post(path, {
        ...fields,
        token: fields.token === "" ? token() : fields.token ?? "",
      });
      const allowed = role === "finance" ||
        (role === "sysadmin" && path === "/admin/topup/sandbox");
      if (allowed) assert.notEqual(res.status, 403, `${role} POST ${path}`);
      else assert.equal(res.status, 403, `${role} POST ${path}`);
      await res.body?.cancel();
    }
  }
  const nav = await staff.card_office.client.page("/admin");
  assert.doesNotMatch(nav, /href="\/admin\/finance"/);
  assert.match(await staff.sysadmin.client.page("/admin"), /href="\/admin\/finance"/);
  // sysadmin may look but not change: no refund form is shown.
  assert.doesNotMatch(
    await staff.sysadmin.client.page(`/admin/finance/refunds?transfer=${transferId}`),
    /确认退款/,
  );
});

Deno.test("finance marks a flagged notify as handled, with a note, in the audit log", async () => {
  await using ctx = await setupApp();
  const fin = await makeStaff(ctx, "fin1", [ROLES.finance]);
  const forged = await ctx.app.request("http://localhost:8000/pay/notify/sandbox", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-sandbox-timestamp": String(Math.floor(Date.now() / 1000)),
      "x-sandbox-signature": "0".repeat(64),
    },
    body: JSON.stringify({ order_no: "YXT123456", txn_id: "X", amount: 100, state: "SUCCESS" }),
  });
  assert.equal(forged.status, 401);
  const page = await fin.client.page("/admin/finance/flags");
  assert.match(page, /bad_signature/);
  assert.match(page, /YXT123456/);
  const flag = await ctx.db.selectFrom("topup_notifies").select("id").executeTakeFirstOrThrow();
  assert.equal(
    (await fin.client.post(`/admin/finance/flags/${flag.id}/resolve`, { resolution: "" })).status,
    422,
  );
  assert.equal(
    (await fin.client.post(`/admin/finance/flags/${flag.id}/resolve`, {
      resolution: "伪造通知，已报告信息中心",
    })).status,
    303,
  );
  assert.equal(
    (await fin.client.post(`/admin/finance/flags/${flag.id}/resolve`, { resolution: "再次处理" }))
      .status,
    404,
  );
  assert.doesNotMatch(await fin.client.page("/admin/finance/flags"), /YXT123456/);
  const audit = await ctx.db.selectFrom("audit_log").select(["action", "staff_id"]).where(
    "action",
    "=",
    "finance.notify_resolved",
  ).execute();
  assert.deepEqual(audit, [{ action: "finance.notify_resolved", staff_id: fin.id }]);
});
