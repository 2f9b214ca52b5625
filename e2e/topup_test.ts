/**
 * The 充值 journey (manual section 5): the demo student signs in, chooses 智校园 [充值], enters an
 * amount, picks the sandbox as 支付方式, pays on the 测试支付 page, watches the result page turn
 * from 处理中 to 充值成功 by itself, and finds the new balance and the 充值 line in 交易记录.
 * Then finance reconciles the sandbox's statement: one matched payment.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { journey, type Page, signInDemoAdmin } from "./_support.ts";

async function balanceYuan(page: Page): Promise<number> {
  const text = (await page.locator(".hero__amount").textContent()) ?? "";
  return Number(text.trim());
}

journey(
  "top-up: 充值 through the sandbox gateway, balance and 交易记录",
  {},
  async ({ page, context, server, shot }) => {
    await page.goto(server.url("/login"));
    await page.getByLabel("手机号").fill("13800000001");
    await page.getByLabel("登录密码").fill("Demo12345");
    await page.getByRole("button", { name: "登录", exact: true }).click();
    await page.waitForURL(server.url("/"));

    await page.goto(server.url("/wallet"));
    const before = await balanceYuan(page);

    // 智校园 → [充值]
    await page.goto(server.url("/"));
    await page.getByRole("link", { name: "充值" }).first().click();
    await page.waitForURL(server.url("/wallet/recharge"));
    // A wrong amount first: the same form comes back with the message.
    await page.getByLabel("输入金额").fill("0.001");
    await page.getByRole("button", { name: "充值", exact: true }).click();
    await page.getByText("请输入正确的金额（元，最多两位小数）").waitFor();
    // The quick amount fills [输入金额].
    await page.locator("label", { hasText: "50元" }).click();
    assert.equal(await page.getByLabel("输入金额").inputValue(), "50");
    await page.getByLabel("输入金额").fill("52.5");
    await page.getByRole("radio", { name: /测试支付/ }).check();
    await shot("recharge-form");
    await page.getByRole("button", { name: "充值", exact: true }).click();

    // The sandbox's clearly labelled 测试支付 page.
    await page.waitForURL(/\/pay\/sandbox\/YXT\d+$/);
    await page.getByText("测试支付 · 沙箱环境，不会真实扣款").waitFor();
    assert.match(await page.textContent("body") ?? "", /¥52\.50/);
    await shot("sandbox-pay");
    await page.getByRole("button", { name: "确认支付" }).click();

    // 处理中 turns into 充值成功 without a reload once the notify arrives.
    await page.waitForURL(/\/wallet\/recharge\/orders\/YXT\d+$/);
    const orderNo = page.url().split("/").pop()!;
    await page.getByRole("heading", { name: "充值成功" }).waitFor({ timeout: 20_000 });
    await shot("recharge-success");

    await page.getByRole("link", { name: "查看余额" }).click();
    await page.waitForURL(server.url("/wallet"));
    assert.equal(Math.round((await balanceYuan(page)) * 100), Math.round(before * 100) + 5250);
    await page.getByRole("link", { name: "交易记录" }).click();
    await page.waitForURL(/\/wallet\/transactions/);
    const first = page.locator(".tx").first();
    assert.match(await first.textContent() ?? "", /充值/);
    assert.match(await first.textContent() ?? "", /\+52\.50/);
    await shot("transactions");

    // 财务处 downloads the sandbox statement and reconciles it: the payment matches.
    const staff = await context.newPage();
    await signInDemoAdmin(staff, server);
    await staff.goto(server.url("/admin/finance/reconcile"));
    const statement = await staff.request.get(
      server.url(
        `/admin/finance/reconcile/sandbox-statement.csv?date=${
          new Date(Date.now() + 8 * 3600_000).toISOString().slice(0, 10)
        }`,
      ),
    );
    const csv = await statement.text();
    assert.match(csv, new RegExp(orderNo));
    await staff.locator('input[type="file"]').setInputFiles({
      name: "sandbox.csv",
      mimeType: "text/csv",
      buffer: Buffer.from(csv, "utf8"),
    });
    await staff.getByRole("button", { name: "开始对账" }).click();
    await staff.waitForURL(/\/admin\/finance\/reconcile\/\d+$/);
    const result = await staff.textContent("body") ?? "";
    assert.match(result, /一致\s*1 笔/);
    assert.match(result, /我方缺失（渠道已收款，我方未入账）\s*0 笔/);
  },
);
