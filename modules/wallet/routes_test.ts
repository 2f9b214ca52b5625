import assert from "node:assert/strict";
import { TestClient } from "../platform/testing.ts";
import { createStaff } from "../staff/mod.ts";
import { setup } from "./_test_support.ts";
import {
  getBalance,
  getPaySettings,
  payFromCard,
  payUtility,
  redeemPaymentCode,
  verifyLedger,
} from "./mod.ts";

Deno.test("余额 shows balance and held amount, with 交易记录 in the corner", async () => {
  const t = await setup();
  try {
    const s = await t.student(12_345);
    const html = await s.client.page("/wallet");
    assert.match(html, /123\.45/);
    assert.match(html, /淋浴冻结/);
    assert.match(
      html,
      /href="\/wallet\/transactions"[^>]*>交易记录|class="hero__corner" href="\/wallet\/transactions">交易记录/,
    );
    const anon = new TestClient(t.app, t.config);
    const res = await anon.get("/wallet");
    assert.equal(res.status, 303);
    assert.match(res.headers.get("location") ?? "", /^\/login\?next=/);
    assert.equal((await verifyLedger(t.db)).ok, true);
  } finally {
    await t.h.close();
  }
});

Deno.test("without a bound card the wallet pages say to bind one", async () => {
  const t = await setup();
  try {
    const s = await t.student(0);
    await t.db.updateTable("card_accounts").set({ account_id: null }).where(
      "id",
      "=",
      s.cardAccountId,
    ).execute();
    for (const path of ["/wallet", "/wallet/transactions", "/pay/code", "/pay/settings"]) {
      assert.match(await s.client.page(path), /尚未绑定一卡通账号/, path);
    }
  } finally {
    await t.h.close();
  }
});

Deno.test("交易记录 lists newest first with filters, pages and totals; detail is private", async () => {
  const t = await setup();
  try {
    const s = await t.student(100_000);
    for (let i = 0; i < 25; i++) {
      await payFromCard(t.db, {
        cardAccountId: s.cardAccountId,
        merchantId: t.merchant.id,
        amount: 100 + i,
        reference: `p${i}`,
        terminalId: 9,
      });
    }
    await payUtility(t.db, {
      cardAccountId: s.cardAccountId,
      amount: 500,
      utility: "water",
      reference: "w1",
      details: { room: "3号楼101" },
    });
    const html = await s.client.page("/wallet/transactions");
    assert.match(html, /冷水/);
    assert.match(html, /3号楼101/);
    assert.ok(html.indexOf("冷水") < html.indexOf("第一食堂"), "newest first");
    assert.match(html, /今日消费/);
    const total = (25 * 100 + 300) + 500;
    assert.match(
      html,
      new RegExp(`¥${Math.floor(total / 100)}\\.${String(total % 100).padStart(2, "0")}`),
    );
    const more = /hx-get="(\/wallet\/transactions\?before=\d+[^"]*)"/.exec(html);
    assert.ok(more, "an infinite-scroll sentinel");
    const page2 = await s.client.page(more[1].replaceAll("&amp;", "&"), { "hx-request": "true" });
    assert.doesNotMatch(page2, /<html/);
    // 25 payments, 1 water, 1 top-up: 20 on the first page, 7 on the second.
    assert.equal((page2.match(/class="tx"/g) ?? []).length, 7);
    const water = await s.client.page("/wallet/transactions?type=water");
    assert.equal((water.match(/class="tx"/g) ?? []).length, 1);
    const month = await s.client.page("/wallet/transactions?month=2020-01");
    assert.equal((month.match(/class="tx"/g) ?? []).length, 0);
    for (
      const bad of [
        "?type=bogus",
        "?month=2026-13",
        "?month=abc",
        "?before=-1",
        "?before=1e9",
        "?before=x",
      ]
    ) {
      const res = await s.client.get(`/wallet/transactions${bad}`);
      assert.equal(res.status, 400, bad);
      assert.match(await res.text(), /筛选条件无效/);
    }
    const id = /href="\/wallet\/transactions\/(\d+)"/.exec(html)![1];
    const detail = await s.client.page(`/wallet/transactions/${id}`);
    assert.match(detail, /交易后余额/);
    const other = await t.student(1000, "10.2.0.9");
    for (
      const path of [
        `/wallet/transactions/${id}`,
        "/wallet/transactions/0",
        "/wallet/transactions/abc",
        "/wallet/transactions/99999999",
      ]
    ) {
      const res = await other.client.get(path);
      assert.equal(res.status, 404, path);
      const body = await res.text();
      assert.doesNotMatch(body, /交易后余额|第一食堂/);
    }
    assert.equal((await verifyLedger(t.db)).ok, true);
  } finally {
    await t.h.close();
  }
});

Deno.test("付款码 shows an SVG QR and the digits; a reader's redemption shows 支付成功 without a reload", async () => {
  const t = await setup();
  try {
    const s = await t.student(5_000);
    const html = await s.client.page("/pay/code");
    assert.match(html, /<svg[^>]*viewBox/);
    assert.doesNotMatch(html, /<script>(?!<)|style="/);
    assert.match(html, /pay\.js/);
    const code = /status\?code=(\d{18})/.exec(html)![1];
    assert.match(code, /^88/);
    assert.match(html, new RegExp(code.replace(/(\d{4})(?=\d)/g, "$1 ")));
    const waiting = s.client.get(`/pay/code/status?code=${code}`, { "hx-request": "true" });
    await new Promise((r) => setTimeout(r, 50));
    await redeemPaymentCode(t.db, {
      code,
      amount: 1_250,
      merchantId: t.merchant.id,
      terminalId: 2,
      reference: "T2:1",
    });
    const res = await waiting;
    const body = await res.text();
    assert.match(body, /支付成功/);
    assert.match(body, /¥12\.50/);
    assert.match(body, /第一食堂/);
    assert.equal(res.headers.get("hx-retarget"), "#paycode-card");
    // Refresh retires the old code.
    const fresh = await s.client.post("/pay/code/refresh", {}, {
      headers: { "hx-request": "true" },
    });
    const freshCode = /status\?code=(\d{18})/.exec(await fresh.text())![1];
    assert.notEqual(freshCode, code);
    const other = await t.student(1000, "10.2.0.8");
    assert.equal((await other.client.get(`/pay/code/status?code=${freshCode}`)).status, 404);
    assert.equal((await s.client.get(`/pay/code/status?code=abc`)).status, 404);
    assert.equal((await verifyLedger(t.db)).ok, true);
  } finally {
    await t.h.close();
  }
});

Deno.test("付款码设置: limits in yuan, bad input kept with a message, freezing stops the code", async () => {
  const t = await setup();
  try {
    const s = await t.student(5_000);
    for (const bad of ["0", "-1", "0.001", "1e9", "abc", "", "1000000000", "300"]) {
      const res = await s.client.post("/pay/settings", { pay_limit: bad, daily_limit: "400" });
      assert.equal(res.status, 422, bad);
      const body = await res.text();
      assert.match(body, /field-error/);
    }
    assert.equal((await getPaySettings(t.db, s.cardAccountId)).payLimit, 20_000);
    const ok = await s.client.post("/pay/settings", { pay_limit: "50.5", daily_limit: "100" });
    assert.equal(ok.status, 303);
    const settings = await getPaySettings(t.db, s.cardAccountId);
    assert.equal(settings.payLimit, 5_050);
    assert.equal(settings.dailyLimit, 10_000);
    const page = await s.client.page("/pay/code");
    const code = /status\?code=(\d{18})/.exec(page)![1];
    assert.equal(
      (await s.client.post("/pay/settings", {
        pay_limit: "50.5",
        daily_limit: "100",
        code_frozen: "1",
      })).status,
      303,
    );
    assert.match(await s.client.page("/pay/code"), /付款码已冻结/);
    await assert.rejects(
      redeemPaymentCode(t.db, { code, amount: 100, merchantId: t.merchant.id, reference: "x" }),
    );
    assert.equal((await getBalance(t.db, s.cardAccountId)).balance, 5_000);
    const forged = await s.client.post("/pay/settings", { pay_limit: "1", daily_limit: "1" }, {
      csrf: false,
    });
    assert.equal(forged.status, 403);
    assert.equal((await verifyLedger(t.db)).ok, true);
  } finally {
    await t.h.close();
  }
});

Deno.test("账务核验 is for finance and system administrators", async () => {
  const t = await setup();
  try {
    await t.student(1_000);
    const login = async (username: string, roles: Parameters<typeof createStaff>[1]["roles"]) => {
      await createStaff(t.db, { username, name: username, password: "Staff12345", roles });
      const c = new TestClient(t.app, t.config, `10.3.0.${username.length}`);
      const res = await c.post("/admin/login", { username, password: "Staff12345" });
      assert.equal(res.status, 303);
      return c;
    };
    const finance = await login("fin", ["finance"]);
    const page = await finance.page("/admin/ledger");
    assert.match(page, /账务平衡/);
    const clerk = await login("cardclerk", ["card_office"]);
    assert.equal((await clerk.get("/admin/ledger")).status, 403);
  } finally {
    await t.h.close();
  }
});
