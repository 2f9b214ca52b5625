import assert from "node:assert/strict";
import { sql } from "kysely";
import { getBalance, verifyLedger } from "../wallet/mod.ts";
import { ROLES } from "../staff/mod.ts";
import { buildGateways, runTopupTick, sandboxOf } from "./mod.ts";
import { makeStaff, makeStudent, setupApp } from "../testkit/mod.ts";

type Ctx = Awaited<ReturnType<typeof setupApp>>;

async function assertLedgerBalanced(ctx: Ctx) {
  const report = await verifyLedger(ctx.db);
  assert.equal(report.ok, true, JSON.stringify(report).slice(0, 500));
}

/** Opens a sandbox top-up through the 充值 form and returns its order number. */
async function openOrder(
  client: Awaited<ReturnType<typeof makeStudent>>["client"],
  amount: string,
) {
  const res = await client.post("/wallet/recharge", { amount, method: "sandbox" });
  assert.equal(res.status, 303, await res.clone().text());
  const m = /^\/pay\/sandbox\/(YXT\d+)$/.exec(res.headers.get("location") ?? "");
  assert.ok(m, `redirect to the 测试支付 page, got ${res.headers.get("location")}`);
  return m[1];
}

async function signedNotify(ctx: Ctx, body: Record<string, unknown>, secretOk = true) {
  const sandbox = sandboxOf(buildGateways(ctx))!;
  const text = JSON.stringify(body);
  const ts = String(Math.floor(Date.now() / 1000));
  const sig = await sandbox.sign(ts, text);
  return await ctx.app.request("http://localhost:8000/pay/notify/sandbox", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-sandbox-timestamp": ts,
      "x-sandbox-signature": secretOk ? sig : sig.replace(/^./, (c) => (c === "a" ? "b" : "a")),
    },
    body: text,
  });
}

async function orderRow(ctx: Ctx, orderNo: string) {
  return await ctx.db.selectFrom("topup_orders").selectAll().where("order_no", "=", orderNo)
    .executeTakeFirstOrThrow();
}

async function topupCredits(ctx: Ctx, cardAccountId: number) {
  const r = await sql<
    { n: number; total: number }
  >`select count(*)::int as n, coalesce(sum(amount), 0)::bigint as total
    from ledger_transfers where card_account_id = ${cardAccountId} and kind = 'topup'`.execute(
    ctx.db,
  );
  return r.rows[0];
}

const tick = (ctx: Ctx, now = new Date()) => runTopupTick(ctx, buildGateways(ctx), ctx.app, now);

Deno.test("a student tops up through the sandbox: 处理中 turns into 充值成功 and the balance grows once", async () => {
  await using ctx = await setupApp();
  const s = await makeStudent(ctx);
  const form = await s.client.page("/wallet/recharge");
  for (const word of ["输入金额", "支付方式", ">充值<", "测试支付", "50元"]) {
    assert.ok(form.includes(word), word);
  }

  const res = await s.client.post("/wallet/recharge", {
    quick: "50",
    amount: "",
    method: "sandbox",
  });
  assert.equal(res.status, 303);
  const orderNo = res.headers.get("location")!.split("/").pop()!;
  const pay = await s.client.page(`/pay/sandbox/${orderNo}`);
  assert.match(pay, /测试支付/);
  assert.match(pay, /¥50\.00/);

  const confirm = await s.client.post(`/pay/sandbox/${orderNo}/confirm`);
  assert.equal(confirm.status, 303);
  assert.equal(confirm.headers.get("location"), `/wallet/recharge/orders/${orderNo}`);
  const waiting = await s.client.page(`/wallet/recharge/orders/${orderNo}`);
  assert.match(waiting, /处理中/);
  assert.match(waiting, /hx-trigger="every 2s"/);
  assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 0);

  await tick(ctx);
  const done = await s.client.page(`/wallet/recharge/orders/${orderNo}`, {
    "hx-request": "true",
  });
  assert.match(done, /充值成功/);
  assert.doesNotMatch(done, /hx-trigger/);
  assert.doesNotMatch(done, /<html/);
  assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 5000);
  await tick(ctx, new Date(Date.now() + 120_000));
  assert.deepEqual(await topupCredits(ctx, s.cardAccountId), { n: 1, total: 5000 });
  await assertLedgerBalanced(ctx);
});

Deno.test("duplicate notifies, and 20 identical notifies at once, credit exactly once", async () => {
  await using ctx = await setupApp();
  const s = await makeStudent(ctx);
  const sandbox = sandboxOf(buildGateways(ctx))!;
  await sandbox.setMode("duplicate");
  const orderNo = await openOrder(s.client, "12.34");
  await s.client.post(`/pay/sandbox/${orderNo}/confirm`);
  await tick(ctx);
  await tick(ctx, new Date(Date.now() + 10_000));
  const delivered = await ctx.db.selectFrom("sandbox_notifies").select("delivered_at")
    .where("order_no", "=", orderNo).execute();
  assert.equal(delivered.length, 5);
  assert.ok(delivered.every((d) => d.delivered_at !== null));
  assert.deepEqual(await topupCredits(ctx, s.cardAccountId), { n: 1, total: 1234 });

  // Twenty more, concurrently, with the real transaction id.
  const payment = await sandbox.payment(orderNo);
  const body = { order_no: orderNo, txn_id: payment!.txn_id, amount: 1234, state: "SUCCESS" };
  const answers = await Promise.all(Array.from({ length: 20 }, () => signedNotify(ctx, body)));
  assert.deepEqual(answers.map((a) => a.status), Array(20).fill(200));
  assert.deepEqual(await topupCredits(ctx, s.cardAccountId), { n: 1, total: 1234 });
  assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 1234);
  const outcomes = await ctx.db.selectFrom("topup_notifies").select("outcome").where(
    "order_no",
    "=",
    orderNo,
  ).execute();
  assert.equal(outcomes.filter((o) => o.outcome === "credited").length, 1);
  assert.equal(outcomes.filter((o) => o.outcome === "duplicate").length, 24);
  await assertLedgerBalanced(ctx);
});

Deno.test("20 first notifies racing each other credit exactly once", async () => {
  await using ctx = await setupApp();
  const s = await makeStudent(ctx);
  const orderNo = await openOrder(s.client, "20");
  const sandbox = sandboxOf(buildGateways(ctx))!;
  const txn = (await sandbox.payment(orderNo))!.txn_id;
  const answers = await Promise.all(
    Array.from(
      { length: 20 },
      () => signedNotify(ctx, { order_no: orderNo, txn_id: txn, amount: 2000, state: "SUCCESS" }),
    ),
  );
  assert.ok(answers.every((a) => a.status === 200));
  assert.deepEqual(await topupCredits(ctx, s.cardAccountId), { n: 1, total: 2000 });
  assert.equal((await orderRow(ctx, orderNo)).state, "paid");
  await assertLedgerBalanced(ctx);
});

Deno.test("out-of-order notifies: a stale 未支付 after success, or before it, change nothing twice", async () => {
  await using ctx = await setupApp();
  const s = await makeStudent(ctx);
  const sandbox = sandboxOf(buildGateways(ctx))!;
  await sandbox.setMode("out_of_order");
  const a = await openOrder(s.client, "5");
  await s.client.post(`/pay/sandbox/${a}/confirm`);
  await tick(ctx, new Date(Date.now() + 2000));
  assert.equal((await orderRow(ctx, a)).state, "paid");

  // Reversed: the stale one first, then the success.
  const b = await openOrder(s.client, "7");
  const txn = (await sandbox.payment(b))!.txn_id;
  assert.equal(
    (await signedNotify(ctx, { order_no: b, txn_id: txn, amount: 700, state: "NOTPAY" })).status,
    200,
  );
  assert.equal((await orderRow(ctx, b)).state, "pending");
  assert.equal(
    (await signedNotify(ctx, { order_no: b, txn_id: txn, amount: 700, state: "SUCCESS" })).status,
    200,
  );
  assert.equal(
    (await signedNotify(ctx, { order_no: b, txn_id: txn, amount: 700, state: "NOTPAY" })).status,
    200,
  );
  assert.equal((await orderRow(ctx, b)).state, "paid");
  assert.deepEqual(await topupCredits(ctx, s.cardAccountId), { n: 2, total: 1200 });
  await assertLedgerBalanced(ctx);
});

Deno.test("a badly signed notify or one with a wrong amount credits nothing and is flagged for finance", async () => {
  await using ctx = await setupApp();
  const s = await makeStudent(ctx);
  const sandbox = sandboxOf(buildGateways(ctx))!;
  const orderNo = await openOrder(s.client, "30");
  const txn = (await sandbox.payment(orderNo))!.txn_id;

  const forged = await signedNotify(ctx, {
    order_no: orderNo,
    txn_id: txn,
    amount: 3000,
    state: "SUCCESS",
  }, false);
  assert.equal(forged.status, 401);
  assert.equal((await forged.json()).code, "FAIL");
  const unsigned = await ctx.app.request("http://localhost:8000/pay/notify/sandbox", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ order_no: orderNo, txn_id: txn, amount: 3000, state: "SUCCESS" }),
  });
  assert.equal(unsigned.status, 401);

  const wrong = await signedNotify(ctx, {
    order_no: orderNo,
    txn_id: txn,
    amount: 3001,
    state: "SUCCESS",
  });
  assert.equal(wrong.status, 200);
  assert.deepEqual(await topupCredits(ctx, s.cardAccountId), { n: 0, total: 0 });
  const order = await orderRow(ctx, orderNo);
  assert.equal(order.state, "pending");
  assert.equal(order.flagged, true);
  assert.match(order.flag_reason!, /金额不符/);
  const flags = await ctx.db.selectFrom("topup_notifies").select(["outcome", "flagged"])
    .where("flagged", "=", true).orderBy("id").execute();
  assert.deepEqual(flags.map((f) => f.outcome), [
    "bad_signature",
    "bad_signature",
    "amount_mismatch",
  ]);

  // Through the sandbox's own misbehaving modes, too.
  await sandbox.setMode("wrong_amount");
  await s.client.post(`/pay/sandbox/${orderNo}/confirm`);
  await tick(ctx);
  await sandbox.setMode("bad_signature");
  const other = await openOrder(s.client, "8");
  await s.client.post(`/pay/sandbox/${other}/confirm`);
  await tick(ctx);
  assert.equal((await orderRow(ctx, other)).state, "pending");
  assert.deepEqual(await topupCredits(ctx, s.cardAccountId), { n: 0, total: 0 });
  assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 0);
  await assertLedgerBalanced(ctx);
});

Deno.test("a lost notify is made good by querying the gateway; an unpaid order closes when it expires", async () => {
  await using ctx = await setupApp();
  const s = await makeStudent(ctx);
  const paid = await openOrder(s.client, "40");
  await s.client.post(`/pay/sandbox/${paid}/confirm`);
  await ctx.db.deleteFrom("sandbox_notifies").execute();
  const unpaid = await openOrder(s.client, "9.99");
  await tick(ctx, new Date(Date.now() + 61_000));
  assert.equal((await orderRow(ctx, paid)).state, "paid");
  assert.equal((await orderRow(ctx, unpaid)).state, "pending");
  await tick(ctx, new Date(Date.now() + 16 * 60_000));
  assert.equal((await orderRow(ctx, unpaid)).state, "closed");
  const page = await s.client.page(`/wallet/recharge/orders/${unpaid}`);
  assert.match(page, /充值未完成/);
  // The payer can no longer pay a closed order.
  await s.client.post(`/pay/sandbox/${unpaid}/confirm`);
  await tick(ctx);
  assert.deepEqual(await topupCredits(ctx, s.cardAccountId), { n: 1, total: 4000 });
  await assertLedgerBalanced(ctx);
});

Deno.test("a success notify arriving after the order was closed is credited and flagged", async () => {
  await using ctx = await setupApp();
  const s = await makeStudent(ctx);
  const orderNo = await openOrder(s.client, "15");
  const txn =
    (await buildGateways(ctx).get("sandbox")!.query(orderNo),
      (await sandboxOf(buildGateways(ctx))!.payment(orderNo))!.txn_id);
  const cancel = await s.client.post(`/pay/sandbox/${orderNo}/cancel`);
  assert.equal(cancel.status, 303);
  assert.equal((await orderRow(ctx, orderNo)).state, "closed");
  assert.equal(
    (await signedNotify(ctx, { order_no: orderNo, txn_id: txn, amount: 1500, state: "SUCCESS" }))
      .status,
    200,
  );
  const order = await orderRow(ctx, orderNo);
  assert.equal(order.state, "paid");
  assert.equal(order.flagged, true);
  assert.equal((await getBalance(ctx.db, s.cardAccountId)).balance, 1500);
  await assertLedgerBalanced(ctx);
});

Deno.test("the 充值 form refuses bad amounts and methods with a message and opens no order", async () => {
  await using ctx = await setupApp();
  const s = await makeStudent(ctx);
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ amount: "0", method: "sandbox" }, /请输入正确的金额|不能低于/],
    [{ amount: "-1", method: "sandbox" }, /请输入正确的金额/],
    [{ amount: "0.001", method: "sandbox" }, /请输入正确的金额/],
    [{ amount: "1e9", method: "sandbox" }, /请输入正确的金额/],
    [{ amount: "1000000000", method: "sandbox" }, /请输入正确的金额/],
    [{ amount: "999999999", method: "sandbox" }, /不能超过/],
    [{ amount: "abc", method: "sandbox" }, /请输入正确的金额/],
    [{ amount: "0.5", method: "sandbox" }, /不能低于¥1\.00/],
    [{ amount: "1000.01", method: "sandbox" }, /不能超过¥1000\.00/],
    [{ amount: "", quick: "", method: "sandbox" }, /请输入充值金额/],
    [{ amount: "<script>", method: "sandbox" }, /请输入正确的金额/],
    [{ amount: "10", method: "alipay" }, /请选择支付方式/],
    [{ amount: "10", method: "wechat" }, /请选择支付方式/],
    [{ amount: "x".repeat(100), method: "sandbox" }, /金额格式不正确/],
  ];
  for (const [fields, message] of cases) {
    const res = await s.client.post("/wallet/recharge", fields);
    const text = await res.text();
    assert.equal(res.status, 422, JSON.stringify(fields));
    assert.match(text, message, JSON.stringify(fields));
    assert.doesNotMatch(text, /&lt;script&gt;<\/script>|<script>alert/);
  }
  // Daily limit: ¥2000; three ¥800 top-ups do not fit.
  await openOrder(s.client, "800");
  await openOrder(s.client, "800");
  const over = await s.client.post("/wallet/recharge", { amount: "800", method: "sandbox" });
  assert.equal(over.status, 422);
  assert.match(await over.text(), /今日还可充值¥400\.00/);
  const orders = await ctx.db.selectFrom("topup_orders").select("amount").execute();
  assert.deepEqual(orders.map((o) => o.amount), [80000, 80000]);
  // Without a CSRF token nothing happens either.
  const noToken = await s.client.post("/wallet/recharge", { amount: "10", method: "sandbox" }, {
    csrf: false,
  });
  assert.equal(noToken.status, 403);
});

Deno.test("without a bound card the 充值 page says to bind one and refuses to open an order", async () => {
  await using ctx = await setupApp();
  const s = await makeStudent(ctx, { bind: false });
  const page = await s.client.page("/wallet/recharge");
  assert.match(page, /请先绑定一卡通账号/);
  const res = await s.client.post("/wallet/recharge", { amount: "10", method: "sandbox" });
  assert.equal(res.status, 422);
  assert.match(await res.text(), /请先绑定一卡通账号后再充值/);
  assert.equal((await ctx.db.selectFrom("topup_orders").select("id").execute()).length, 0);
  const anonymous = await ctx.app.request("http://localhost:8000/wallet/recharge");
  assert.equal(anonymous.status, 303);
  assert.match(anonymous.headers.get("location")!, /^\/login\?next=/);
});

Deno.test("someone else's order, or a made-up one, is 404 on every order URL", async () => {
  await using ctx = await setupApp();
  const owner = await makeStudent(ctx);
  const other = await makeStudent(ctx);
  const orderNo = await openOrder(owner.client, "10");
  for (
    const path of [
      `/wallet/recharge/orders/${orderNo}`,
      `/pay/sandbox/${orderNo}`,
      `/wallet/recharge/orders/${orderNo}/pay`,
    ]
  ) {
    assert.equal((await other.client.get(path)).status, 404, path);
  }
  for (const action of ["confirm", "cancel"]) {
    assert.equal((await other.client.post(`/pay/sandbox/${orderNo}/${action}`)).status, 404);
  }
  for (const bad of ["YXT0", "1' or '1'='1", "%00", "x".repeat(300), "-1"]) {
    assert.equal(
      (await owner.client.get(`/wallet/recharge/orders/${encodeURIComponent(bad)}`)).status,
      404,
      bad,
    );
  }
  assert.equal((await orderRow(ctx, orderNo)).state, "pending");
  assert.equal(
    (await ctx.db.selectFrom("sandbox_payments").select("state").executeTakeFirstOrThrow()).state,
    "NOTPAY",
  );
});

Deno.test("the sandbox gateway refuses to run against DATABASE_URL unless allowed", async () => {
  await using ctx = await setupApp();
  const prod = {
    ...ctx.config,
    databaseUrl: "postgres://db.example/yxt",
    allowSandboxGateway: false,
  };
  assert.throws(
    () => buildGateways({ db: ctx.db, config: prod }),
    /sandbox payment gateway needs ALLOW_SANDBOX_GATEWAY=1/,
  );
  assert.ok(
    buildGateways({ db: ctx.db, config: { ...prod, allowSandboxGateway: true } }).has(
      "sandbox",
    ),
  );
  assert.throws(
    () => buildGateways({ db: ctx.db, config: { ...ctx.config, paymentGateway: "wechat" } }),
    /WECHAT_MCHID/,
  );
});

Deno.test("the sandbox notify setting is for finance and sysadmin only, and is audited", async () => {
  await using ctx = await setupApp();
  const fin = await makeStaff(ctx, "fin1", [ROLES.finance]);
  const card = await makeStaff(ctx, "card1", [ROLES.cardOffice]);
  assert.equal((await card.client.get("/admin/topup/sandbox")).status, 403);
  assert.equal((await card.client.post("/admin/topup/sandbox", { mode: "late" })).status, 403);
  assert.match(await fin.client.page("/admin/topup/sandbox"), /通知方式/);
  assert.equal((await fin.client.post("/admin/topup/sandbox", { mode: "nonsense" })).status, 422);
  assert.equal((await fin.client.post("/admin/topup/sandbox", { mode: "late" })).status, 303);
  assert.equal(await sandboxOf(buildGateways(ctx))!.mode(), "late");
  const audit = await ctx.db.selectFrom("audit_log").select(["action", "staff_id"]).where(
    "action",
    "=",
    "topup.sandbox_mode",
  ).execute();
  assert.deepEqual(audit, [{ action: "topup.sandbox_mode", staff_id: fin.id }]);
});

Deno.test("a late notify is held back by the sandbox, then credits once when it arrives", async () => {
  await using ctx = await setupApp();
  const s = await makeStudent(ctx);
  const sandbox = sandboxOf(buildGateways(ctx))!;
  await sandbox.setMode("late");
  const orderNo = await openOrder(s.client, "6");
  await s.client.post(`/pay/sandbox/${orderNo}/confirm`);
  await tick(ctx);
  const queued = await ctx.db.selectFrom("sandbox_notifies").select("delivered_at").where(
    "order_no",
    "=",
    orderNo,
  )
    .executeTakeFirstOrThrow();
  assert.equal(queued.delivered_at, null);
  assert.equal((await orderRow(ctx, orderNo)).state, "pending");
  assert.match(await s.client.page(`/wallet/recharge/orders/${orderNo}`), /处理中/);
  await tick(ctx, new Date(Date.now() + 31_000));
  assert.equal((await orderRow(ctx, orderNo)).state, "paid");
  await tick(ctx, new Date(Date.now() + 200_000));
  const outcomes = await ctx.db.selectFrom("topup_notifies").select("outcome").where(
    "order_no",
    "=",
    orderNo,
  ).execute();
  assert.deepEqual(outcomes.map((o) => o.outcome), ["credited"]);
  assert.deepEqual(await topupCredits(ctx, s.cardAccountId), { n: 1, total: 600 });
  await assertLedgerBalanced(ctx);
});
