/**
 * The dorm-utility journey of issue 6: the demo student (bound to 张三) tops up the card, opens
 * 电费充值 from 智校园, is sent to choose a room (building, then room), pays electricity with a
 * quick amount and cold water with a free amount, sees both delivered, and finds both in 交易记录.
 */
import assert from "node:assert/strict";
import { journey, type Page } from "./_support.ts";

async function body(page: Page): Promise<string> {
  return await page.textContent("body") ?? "";
}

/** The card balance on 余额, in fen. */
async function balanceFen(page: Page, url: string): Promise<number> {
  await page.goto(url);
  const text = (await page.locator(".hero__amount").textContent())?.trim() ?? "";
  assert.match(text, /^\d+\.\d{2}$/);
  return Math.round(Number(text) * 100);
}

journey("billing: choose a room, pay electricity and water, see both in 交易记录", {
  server: { env: { METER_SIM_DELAY_MS: "300" } },
}, async ({ page, server, shot }) => {
  // ---- Sign in as the demo student and put ¥100 on the card through the sandbox gateway.
  await page.goto(server.url("/login"));
  await page.getByLabel("手机号").fill("13800000001");
  await page.getByLabel("登录密码").fill("Demo12345");
  await page.getByRole("button", { name: "登录", exact: true }).click();
  await page.waitForURL(server.url("/"));
  const start = await balanceFen(page, server.url("/wallet"));
  await page.goto(server.url("/wallet/recharge"));
  await page.getByLabel("输入金额").fill("100");
  await page.getByRole("button", { name: "充值", exact: true }).click();
  await page.getByRole("button", { name: "确认支付" }).click();
  await page.getByText("充值成功").waitFor();

  // ---- 智校园 → [电费充值]: no room yet, so choose one first.
  await page.goto(server.url("/"));
  await page.getByRole("link", { name: "电费充值" }).click();
  await page.waitForURL(server.url("/billing/electricity"));
  assert.match(await body(page), /请先选择宿舍房间/);
  await shot("no-room");
  await page.getByRole("link", { name: "选择宿舍" }).click();
  await page.getByLabel("楼栋").selectOption({ label: "2号楼" });
  await page.getByLabel("房间").selectOption({ label: "203" });
  await shot("choose-room");
  await page.getByRole("button", { name: "确认" }).click();
  await page.waitForURL(server.url("/billing/electricity"));
  assert.match(await body(page), /2号楼 203/);
  assert.match(await body(page), new RegExp(`卡余额¥${((start + 100_00) / 100).toFixed(2)}`));

  // ---- Pay ¥20 with a quick amount: [确认], then the order is delivered to the meter.
  await page.getByText("20元", { exact: true }).click();
  assert.equal(await page.getByLabel("输入金额").inputValue(), "20");
  await shot("electricity");
  await page.getByRole("button", { name: "确认" }).click();
  await page.waitForURL(/\/billing\/orders\/DF\d{20}$/);
  await page.getByText("电费充值成功").waitFor();
  assert.match(await body(page), /已到账：2号楼 203/);
  await shot("electricity-delivered");
  await page.goto(server.url("/billing/electricity"));
  assert.match(await body(page), /剩余电费\s*¥20\.00/);

  // ---- 冷水充值 with a free amount.
  await page.goto(server.url("/"));
  await page.getByRole("link", { name: "冷水充值" }).click();
  await page.waitForURL(server.url("/billing/water"));
  assert.match(await body(page), /2号楼 203/);
  await page.getByLabel("输入金额").fill("7.50");
  await page.getByRole("button", { name: "确认" }).click();
  await page.getByText("冷水充值成功").waitFor();
  await shot("water-delivered");

  // ---- 余额 → [交易记录]: the top-up and both utility payments.
  assert.equal(await balanceFen(page, server.url("/wallet")), start + 100_00 - 20_00 - 7_50);
  await page.getByRole("link", { name: "交易记录" }).click();
  await page.waitForURL(/\/wallet\/transactions/);
  const history = await body(page);
  assert.match(history, /电费[\s\S]*2号楼 203[\s\S]*已到账[\s\S]*-20\.00/);
  assert.match(history, /冷水[\s\S]*2号楼 203[\s\S]*已到账[\s\S]*-7\.50/);
  assert.match(history, /充值[\s\S]*\+100\.00/);
  await shot("transactions");
});
