/**
 * 代充 (issue 17): the demo student shares their 代充 link from 充值; a parent opens it in another
 * browser, sees only 张*, the school and 学号 2024****01, pays through the sandbox, and watches
 * 处理中 turn into 代充成功 with no balance shown. The card is credited once, the student's
 * 消息通知 lists 充值到账 naming 代充, and 代充 by 学号 + 姓名 reaches the same confirmation.
 * Every new page passes axe, has one h1 and 44 px tap targets.
 */
import assert from "node:assert/strict";
import { journey, type Page, VIEWPORT, WECHAT_USER_AGENT } from "./_support.ts";
import { checkPage } from "./_ui.ts";

async function balanceYuan(page: Page): Promise<number> {
  const text = (await page.locator(".hero__amount").textContent()) ?? "";
  return Number(text.trim());
}

journey("代充: a shared link, a masked confirmation, one credit, 充值到账 names 代充", {}, async (
  { page, context, server, shot },
) => {
  await page.goto(server.url("/login"));
  await page.getByLabel("手机号").fill("13800000001");
  await page.getByLabel("登录密码").fill("Demo12345");
  await page.getByRole("button", { name: "登录", exact: true }).click();
  await page.waitForURL(server.url("/"));
  await page.goto(server.url("/wallet"));
  const before = await balanceYuan(page);

  // 充值 → 请家人代充: the link to share.
  await page.goto(server.url("/wallet/recharge"));
  await page.getByRole("link", { name: /请家人代充/ }).click();
  await page.waitForURL(server.url("/wallet/recharge/proxy"));
  await checkPage(page, "请家人代充", true);
  const link = await page.getByLabel("代充链接").inputValue();
  assert.match(link, /\/topup\/proxy\/c\/[A-Za-z0-9_-]{22}$/);
  await shot("share-link");

  // A parent, in their own WeChat.
  const parent = await context.browser()!.newContext({
    viewport: VIEWPORT,
    userAgent: WECHAT_USER_AGENT,
    isMobile: true,
    hasTouch: true,
    locale: "zh-CN",
    timezoneId: "Asia/Shanghai",
  });
  const payer = await parent.newPage();
  try {
    await payer.goto(link);
    const confirm = (await payer.textContent("body")) ?? "";
    assert.match(confirm, /张\*/);
    assert.match(confirm, /云南城市建设职业学院/);
    assert.match(confirm, /2024\*\*\*\*01/);
    assert.doesNotMatch(confirm, /张三|2024010001|余额/);
    await checkPage(payer, "代充确认", false);
    await shot("confirm");
    // A wrong amount first: the same page comes back with the message.
    await payer.getByLabel("充值金额").fill("0.001");
    await payer.getByRole("button", { name: /去支付/ }).click();
    await payer.getByText("请输入正确的金额（元，最多两位小数）").waitFor();
    assert.match((await payer.textContent("body")) ?? "", /张\*/);
    await payer.locator("label", { hasText: "20元" }).click();
    await payer.getByRole("radio", { name: /测试支付/ }).check();
    await payer.getByRole("button", { name: /去支付/ }).click();
    await payer.waitForURL(/\/topup\/proxy\/orders\/YXT\d+\/sandbox$/);
    await payer.getByText("测试支付 · 沙箱环境，不会真实扣款").waitFor();
    assert.match((await payer.textContent("body")) ?? "", /¥20\.00/);
    await payer.getByRole("button", { name: "确认支付" }).click();
    await payer.waitForURL(/\/topup\/proxy\/orders\/YXT\d+$/);
    await payer.getByRole("heading", { name: "代充成功" }).waitFor({ timeout: 20_000 });
    const result = (await payer.textContent("body")) ?? "";
    assert.match(result, /¥20\.00/);
    assert.doesNotMatch(result, /余额|张三/);
    await checkPage(payer, "代充结果", false);
    await shot("proxy-success");

    // 代充 by 学号 + 姓名 reaches the same masked confirmation.
    await payer.goto(server.url("/topup/proxy"));
    await checkPage(payer, "代充", false);
    await payer.getByLabel("学号").fill("2024010001");
    await payer.getByLabel("姓名").fill("张五");
    await payer.getByRole("button", { name: "下一步" }).click();
    await payer.getByText("学号或姓名不正确，请核对后重试").waitFor();
    await payer.getByLabel("姓名").fill("张三");
    await payer.getByRole("button", { name: "下一步" }).click();
    await payer.waitForURL(/\/topup\/proxy\/confirm\?t=/);
    assert.match((await payer.textContent("body")) ?? "", /2024\*\*\*\*01/);
  } finally {
    await parent.close();
  }

  // The student: the balance grew once, and 消息通知 lists 充值到账 naming 代充.
  await page.goto(server.url("/wallet"));
  assert.equal(Math.round((await balanceYuan(page)) * 100), Math.round(before * 100) + 2000);
  await page.goto(server.url("/me/notifications"));
  // The notifier derives it on the server within a round or two: each reload asks again.
  const deadline = Date.now() + 20_000;
  while (
    !/代充（测试支付）/.test((await page.textContent("body")) ?? "") && Date.now() < deadline
  ) {
    await page.reload();
  }
  assert.match((await page.textContent("body")) ?? "", /充值到账[\s\S]*代充（测试支付）/);
  await checkPage(page, "消息通知", true);
  await shot("notifications");
  await page.goto(server.url("/me/wechat"));
  await checkPage(page, "微信登录", true);
});
