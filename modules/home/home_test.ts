import assert from "node:assert/strict";
import { setupApp } from "../testkit/mod.ts";
import { ensureSchool, registerAccount } from "../account/mod.ts";
import { bindCardForTest, createCardAccountForTest, DEMO_CARDHOLDERS } from "../card/mod.ts";

async function setup() {
  const w = await setupApp();
  const { h } = w;
  const school = await ensureSchool(h.db, "云南城市建设职业学院", "YNCJ");
  const accountId = await registerAccount(h.db, {
    phone: "13800000002",
    password: "Abc12345",
    schoolId: school.id,
  });
  const c = w.client("10.40.0.1");
  assert.equal(
    (await c.post("/login", { phone: "13800000002", password: "Abc12345" })).status,
    303,
  );
  return { ...w, c, accountId, schoolId: school.id };
}

async function bindDemoCard(s: Awaited<ReturnType<typeof setup>>) {
  const holder = DEMO_CARDHOLDERS[0];
  const card = await createCardAccountForTest(s.h.db, { config: s.config }, {
    schoolId: s.schoolId,
    studentNumber: holder.studentNumber,
    idNumber: holder.idNumber,
    chipNumber: holder.chipNumber,
    name: holder.name,
  });
  await bindCardForTest(s.h.db, card.cardAccountId, s.accountId);
  return card;
}

Deno.test("智校园 shows the grid with the manual's entries and links", async () => {
  await using s = await setup();
  const html = await s.c.page("/");
  const links: Array<[string, string]> = [
    ["/pay/code", "付款码"],
    ["/wallet/recharge", "充值"],
    ["/billing/electricity", "电费充值"],
    ["/billing/water", "冷水充值"],
    ["/wallet", "余额"],
    ["/wallet/transactions", "交易记录"],
  ];
  for (const [href, label] of links) {
    assert.match(
      html,
      new RegExp(`href="${href}"[^>]*>(?:<span[^>]*>[^<]*</span>)?${label}<`),
      label,
    );
  }
  assert.match(html, /tabbar__item is-active"><span[^>]*>◎<\/span><span>智校园/);
  assert.match(html, /尚未绑定一卡通账号/);
  assert.ok(
    !html.includes("绑定成功后请立即修改一卡通密码"),
    "no reminder before a card is bound",
  );
});

Deno.test("after binding, the home page reminds to change the card password and bind an email", async () => {
  await using s = await setup();
  await bindDemoCard(s);
  let html = await s.c.page("/");
  assert.match(html, /绑定成功后请立即修改一卡通密码、绑定邮箱/);
  assert.match(html, /一卡通密码仍为默认密码/);
  assert.match(html, /尚未绑定邮箱/);
  assert.match(html, /张三/);

  await s.h.db.updateTable("accounts").set({ email: "z@qq.com", email_verified_at: new Date() })
    .where("id", "=", s.accountId).execute();
  html = await s.c.page("/");
  assert.match(html, /一卡通密码仍为默认密码/);
  assert.ok(!html.includes("尚未绑定邮箱"));

  await s.h.db.updateTable("card_accounts").set({ password_hash: "$argon2id$changed" })
    .where("account_id", "=", s.accountId).execute();
  html = await s.c.page("/");
  assert.ok(!html.includes("绑定成功后请立即修改一卡通密码"), "both done: no reminder");
});

Deno.test("我的 shows the masked phone, school, card summary and the manual's links", async () => {
  await using s = await setup();
  let html = await s.c.page("/me");
  assert.match(html, /138\*\*\*\*0002/);
  assert.ok(!html.includes("13800000002"), "the full phone is not shown");
  assert.match(html, /云南城市建设职业学院/);
  assert.match(html, /未绑定/);
  for (
    const href of ["/security", "/me/email", "/me/password", "/billing/room", "/pay/settings"]
  ) {
    assert.ok(html.includes(`href="${href}"`), href);
  }
  for (
    const label of [
      "一卡通安全中心",
      "绑定邮箱",
      "修改登录密码",
      "宿舍房间",
      "付款码设置",
      "退出登录",
    ]
  ) {
    assert.ok(html.includes(label), label);
  }
  assert.match(html, /<form method="post" action="\/logout"/);
  assert.match(html, /tabbar__item is-active"><span[^>]*>◉<\/span><span>我的/);
  await bindDemoCard(s);
  html = await s.c.page("/me");
  assert.match(html, /2024010001/);
  assert.match(html, /张三/);
  assert.match(html, /正常/);
});

Deno.test("signed-out visitors of 智校园 and 我的 go to the login page", async () => {
  await using s = await setup();
  const anon = s.client();
  const res = await anon.get("/");
  assert.equal(res.status, 303);
  assert.equal(res.headers.get("location"), "/login?next=%2F");
  const hx = await anon.get("/me", { "hx-request": "true" });
  assert.equal(hx.headers.get("hx-redirect"), "/login?next=%2Fme");
});

Deno.test("the service worker and its 网络不可用 page are served to anyone, never stored", async () => {
  await using s = await setup();
  const anon = s.client();
  const sw = await anon.get("/sw.js?v=1a2b");
  assert.equal(sw.status, 200);
  assert.match(sw.headers.get("content-type") ?? "", /javascript/);
  assert.equal(sw.headers.get("cache-control"), "no-cache");
  assert.match(await sw.text(), /caches only the shell/);
  const page = await anon.get("/offline");
  assert.equal(page.status, 200);
  const html = await page.text();
  assert.match(html, /<h1 class="msg__title">网络不可用<\/h1>/);
  assert.ok(!html.includes("tabbar"), "a one-off page: no bottom bar");
});
