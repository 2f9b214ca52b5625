/** 代充: someone else pays into a card, sees only a masked confirmation, and limits hold. */
import assert from "node:assert/strict";
import { sql } from "kysely";
import { getBalance, verifyLedger } from "../wallet/mod.ts";
import { ROLES } from "../staff/mod.ts";
import { openDatabase } from "../platform/database.ts";
import { type TestClient, testConfig } from "../platform/testing.ts";
import { buildGateways, runTopupTick, settlePaid } from "./mod.ts";
import { makeStaff, makeStudent, setupApp } from "../testkit/mod.ts";
import { maskName, maskStudentNumber, openProxyOrder, recipientTicket } from "./proxy.ts";

type Ctx = Awaited<ReturnType<typeof setupApp>>;

async function holder(ctx: Ctx, name = "张三丰") {
  const s = await makeStudent(ctx, { balance: 10_00, name });
  const card = await ctx.db.selectFrom("card_accounts").select(["student_number", "school_id"])
    .where("id", "=", s.cardAccountId).executeTakeFirstOrThrow();
  return { ...s, studentNumber: card.student_number, schoolId: card.school_id, name };
}

/** 代充 by 学号 + 姓名 from a payer's browser: the confirmation page's ticket. */
async function lookUp(
  payer: TestClient,
  h: { schoolId: number; studentNumber: string; name: string },
) {
  const res = await payer.post("/topup/proxy", {
    school_id: String(h.schoolId),
    student_number: h.studentNumber,
    name: h.name,
  });
  assert.equal(res.status, 303, await res.clone().text());
  const location = res.headers.get("location")!;
  assert.match(location, /^\/topup\/proxy\/confirm\?t=/);
  return { location, ticket: new URL(location, "http://x").searchParams.get("t")! };
}

async function pay(payer: TestClient, ticket: string, amount: string) {
  return await payer.post("/topup/proxy/pay", { ticket, amount, method: "sandbox" });
}

Deno.test("代充 by 学号 + 姓名: masked confirmation, sandbox payment, credited once, 充值到账 names 代充", async () => {
  await using ctx = await setupApp();
  const h = await holder(ctx);
  const payer = ctx.client("10.5.0.1");
  const form = await payer.page("/topup/proxy");
  assert.equal(form.match(/<h1/g)?.length, 1);
  const { location, ticket } = await lookUp(payer, h);
  const confirm = await payer.page(location);
  assert.match(confirm, /<span class="cell__ft">张\*\*<\/span>/);
  assert.match(confirm, new RegExp(maskStudentNumber(h.studentNumber).replace(/\*/g, "\\*")));
  assert.match(confirm, /测试学校|学院|大学/);
  assert.doesNotMatch(confirm, /张三丰/);
  assert.doesNotMatch(confirm, new RegExp(h.studentNumber));
  assert.doesNotMatch(confirm, /余额|¥10\.00/);

  let res = await pay(payer, ticket, "50");
  assert.equal(res.status, 303);
  const sandboxPage = res.headers.get("location")!;
  const orderNo = /\/topup\/proxy\/orders\/(YXT\d+)\/sandbox$/.exec(sandboxPage)![1];
  assert.match(await payer.page(sandboxPage), /确认支付/);
  res = await payer.post(`/topup/proxy/orders/${orderNo}/sandbox/confirm`);
  assert.equal(res.status, 303);
  assert.match(await payer.page(`/topup/proxy/orders/${orderNo}`), /处理中/);
  await runTopupTick(ctx, buildGateways(ctx), ctx.app);
  await runTopupTick(ctx, buildGateways(ctx), ctx.app);
  const result = await payer.page(`/topup/proxy/orders/${orderNo}`);
  assert.match(result, /代充成功/);
  assert.match(result, /¥50\.00/);
  assert.match(result, /张\*\*/);
  assert.doesNotMatch(result, /余额|¥60\.00|张三丰/);
  assert.equal((await getBalance(ctx.db, h.cardAccountId)).balance, 60_00);
  const credit = await sql<{ details: { info: { proxy?: boolean } } }>`
    select details from ledger_transfers where reference = ${`topup:${orderNo}`}`.execute(ctx.db);
  assert.equal(credit.rows[0].details.info.proxy, true);

  // Nobody else sees the payer's order: not another browser, not the student's own pages.
  assert.equal((await ctx.client("10.5.0.2").get(`/topup/proxy/orders/${orderNo}`)).status, 404);
  assert.equal((await h.client.get(`/wallet/recharge/orders/${orderNo}`)).status, 404);
  // A repeated notify credits nothing more.
  assert.equal(
    await settlePaid(ctx, {
      method: "sandbox",
      orderNo,
      txnId: (await ctx.db.selectFrom("topup_orders").select("gateway_txn_id")
        .where("order_no", "=", orderNo).executeTakeFirstOrThrow()).gateway_txn_id!,
      amount: 50_00,
    }),
    "duplicate",
  );
  assert.equal((await getBalance(ctx.db, h.cardAccountId)).balance, 60_00);
  const report = await verifyLedger(ctx.db);
  assert.equal(report.ok, true, report.problems.join("; "));
});

Deno.test("a wrong name and an unknown 学号 look the same; a 学号's name cannot be guessed for long", async () => {
  await using ctx = await setupApp();
  const h = await holder(ctx, "李四");
  const payer = ctx.client("10.5.1.1");
  const wrong = async (fields: Record<string, string>) => {
    const res = await payer.post("/topup/proxy", {
      school_id: String(h.schoolId),
      student_number: h.studentNumber,
      name: h.name,
      ...fields,
    });
    return { status: res.status, text: await res.text() };
  };
  const byName = await wrong({ name: "李五" });
  const byNumber = await wrong({ student_number: "2099999999" });
  assert.equal(byName.status, 422);
  assert.equal(byNumber.status, 422);
  assert.match(byName.text, /学号或姓名不正确/);
  assert.match(byNumber.text, /学号或姓名不正确/);
  assert.match(byName.text, /value="李五"/, "the typed name is kept");
  assert.equal((await wrong({ student_number: "" })).status, 422);
  for (let i = 0; i < 4; i++) await wrong({ name: `王${i}` });
  // Five wrong names for this 学号 in the hour: now even the right one is refused.
  const locked = await wrong({});
  assert.match(locked.text, /尝试次数过多/);
  // Another 学号 is not held back by it.
  const other = await holder(ctx, "赵六");
  await lookUp(ctx.client("10.5.1.2"), other);
});

Deno.test("the student's shared link opens the confirmation; a new link ends the old one", async () => {
  await using ctx = await setupApp();
  const h = await holder(ctx);
  const page = await h.client.page("/wallet/recharge/proxy");
  const link = /readonly value="([^"]+)"/.exec(page)![1];
  const path = new URL(link).pathname;
  assert.match(path, /^\/topup\/proxy\/c\/[A-Za-z0-9_-]{22}$/);
  assert.match(await h.client.page("/wallet/recharge"), /请家人代充/);
  assert.match(page, new RegExp(`href="${path}">预览`));
  const payer = ctx.client("10.5.2.1");
  const opened = await payer.page(path);
  assert.match(opened, /张\*\*/);
  assert.match(opened, /name="ticket" value="\d+\.\d+\.[0-9a-f]{32}"/);
  const renewed = await h.client.post("/wallet/recharge/proxy/renew");
  assert.match(await renewed.text(), /旧链接已失效/);
  const gone = await payer.get(path);
  assert.equal(gone.status, 404);
  assert.match(await gone.text(), /该代充链接已失效/);
  assert.equal((await ctx.client("10.5.2.2").get("/topup/proxy/c/not-a-token")).status, 404);
  // A forged or stale ticket sends the payer back to the start.
  const forged = await payer.get(
    "/topup/proxy/confirm?t=1.9999999999.0123456789abcdef0123456789abcdef",
  );
  assert.equal(forged.status, 303);
  assert.equal(forged.headers.get("location"), "/topup/proxy");
});

Deno.test("代充 limits: per payer and per card per day, and the card's own 充值 limits too", async () => {
  await using ctx = await setupApp({
    env: {
      ...testConfig().env,
      PROXY_TOPUP_PAYER_DAILY_YUAN: "300",
      PROXY_TOPUP_CARD_DAILY_YUAN: "400",
    },
  });
  const a = await holder(ctx, "钱七");
  const b = await holder(ctx, "孙八");
  const payer = ctx.client("10.5.3.1");
  const { ticket } = await lookUp(payer, a);
  assert.equal((await pay(payer, ticket, "200")).status, 303);
  let res = await pay(payer, ticket, "150");
  assert.equal(res.status, 422);
  assert.match(await res.text(), /超出每人每日代充限额¥300\.00，今日还可代充¥100\.00/);
  const { ticket: tb } = await lookUp(payer, b);
  res = await pay(payer, tb, "101");
  assert.equal(res.status, 422, "the payer's limit spans cards");
  // Another payer for card a: the card's 代充 limit (¥400) counts what others paid.
  const other = ctx.client("10.5.3.2");
  const { ticket: ta2 } = await lookUp(other, a);
  res = await pay(other, ta2, "250");
  assert.equal(res.status, 422);
  assert.match(await res.text(), /今日还可代充¥200\.00/);
  assert.equal((await pay(other, ta2, "200")).status, 303);
  // Amounts the 充值 rules refuse are refused here too.
  res = await pay(other, ta2, "0.5");
  assert.match(await res.text(), /单笔充值金额不能低于/);
  res = await pay(other, ta2, "abc");
  assert.match(await res.text(), /请输入正确的金额/);
  const orders = await ctx.db.selectFrom("topup_orders").select([
    "proxy",
    "account_id",
    "payer_key",
  ])
    .where("proxy", "=", true).execute();
  assert.equal(orders.length, 2);
  assert.ok(orders.every((o) => o.account_id === null && /^web:[0-9a-f]{32}$/.test(o.payer_key!)));
});

Deno.test(
  "racing 代充 forms of one payer cannot pass the payer's daily limit together (PostgreSQL)",
  {
    ignore: !Deno.env.get("DATABASE_URL"),
  },
  async () => {
    await using ctx = await setupApp();
    const cards = [];
    for (const n of ["周一", "吴二", "郑三", "王四"]) cards.push(await holder(ctx, n));
    const gateways = buildGateways(ctx);
    const second = await openDatabase({ databaseUrl: ctx.url!, poolSize: 8 });
    try {
      const tickets = await Promise.all(
        cards.map((c) => recipientTicket(ctx.config, c.cardAccountId)),
      );
      // ¥200 each to four cards at once: the ¥500 a day of one payer allows two.
      const results = await Promise.allSettled(tickets.map((ticket, i) =>
        openProxyOrder(
          { db: i % 2 ? second.db : ctx.db, config: ctx.config },
          gateways,
          { ticket, amountText: "200", method: "sandbox", payerKey: "web:racer" },
        )
      ));
      assert.equal(results.filter((r) => r.status === "fulfilled").length, 2);
      const total = await sql<{ s: number }>`select coalesce(sum(amount), 0)::bigint as s
      from topup_orders where payer_key = 'web:racer'`.execute(ctx.db);
      assert.equal(Number(total.rows[0].s), 400_00);
    } finally {
      await second.close();
    }
  },
);

Deno.test("充值退回 of a 代充 goes back through the gateway to whoever paid", async () => {
  await using ctx = await setupApp();
  const h = await holder(ctx);
  const payer = ctx.client("10.5.4.1");
  const { ticket } = await lookUp(payer, h);
  const res = await pay(payer, ticket, "30");
  const orderNo = /orders\/(YXT\d+)\/sandbox/.exec(res.headers.get("location")!)![1];
  await payer.post(`/topup/proxy/orders/${orderNo}/sandbox/confirm`);
  await runTopupTick(ctx, buildGateways(ctx), ctx.app);
  assert.equal((await getBalance(ctx.db, h.cardAccountId)).balance, 40_00);
  const fin = await makeStaff(ctx, "fin-proxy", [ROLES.finance]);
  const page = await fin.client.page(`/admin/finance/topup-refunds?order=${orderNo}`);
  const token = /name="token" value="([^"]+)"/.exec(page)![1];
  const back = await fin.client.post("/admin/finance/topup-refunds", {
    order_no: orderNo,
    amount: "30",
    reason: "付款人申请退回",
    token,
  });
  assert.equal(back.status, 303);
  assert.equal((await getBalance(ctx.db, h.cardAccountId)).balance, 10_00);
  const atGateway = await sql<{ order_no: string; amount: number }>`
    select order_no, amount from sandbox_refunds`.execute(ctx.db);
  assert.deepEqual(atGateway.rows, [{ order_no: orderNo, amount: 30_00 }]);
});

Deno.test("masks keep a first character and hide the rest", () => {
  assert.equal(maskName("张三"), "张*");
  assert.equal(maskName("欧阳娜娜"), "欧***");
  assert.equal(maskName("王"), "王");
  assert.equal(maskStudentNumber("2024010001"), "2024****01");
  assert.equal(maskStudentNumber("20240"), "20****0");
  assert.equal(maskStudentNumber("2024"), "2***");
});
