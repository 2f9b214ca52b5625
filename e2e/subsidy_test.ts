/**
 * 补助发放 in the browser (issue 15): one finance member prepares a batch from a CSV list and sees
 * the refused row and why, cannot approve it herself; a second member approves it; the demo
 * student's 余额 then shows the 补助 and when it expires.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { chinaDay } from "../modules/platform/china_time.ts";
import { acceptConfirm, assertAccessible } from "./_ui.ts";
import {
  journey,
  type Page,
  type RunningServer,
  signInDemoAdmin,
  VIEWPORT,
  WECHAT_USER_AGENT,
} from "./_support.ts";

const DESK = { width: 1366, height: 768 };

/** A finance member made by the admin, signed in on a browser context of their own. */
async function financeMember(admin: Page, server: RunningServer, username: string, name: string) {
  await admin.goto(server.url("/admin/staff"));
  await admin.getByLabel("用户名", { exact: true }).fill(username);
  await admin.getByLabel("姓名", { exact: true }).fill(name);
  await admin.getByLabel("初始密码").fill("Start12345");
  await admin.getByRole("checkbox", { name: "财务处" }).check();
  await admin.getByRole("button", { name: "创建" }).click();
  await admin.getByRole("cell", { name: username, exact: true }).waitFor();
  const own = await admin.context().browser()!.newContext({
    viewport: DESK,
    locale: "zh-CN",
    timezoneId: "Asia/Shanghai",
  });
  const page = await own.newPage();
  await page.goto(server.url("/admin/login"));
  await page.getByLabel("用户名").fill(username);
  await page.getByLabel("密码").fill("Start12345");
  await page.getByRole("button", { name: "登录" }).click();
  await page.waitForURL(/\/admin\/password$/);
  await page.getByLabel("原密码").fill("Start12345");
  await page.getByLabel("新密码").fill(`${username}Pw2026`);
  await page.getByRole("button", { name: "确认" }).click();
  await page.waitForURL(server.url("/admin"));
  return page;
}

journey(
  "补助发放: finance prepares, a second member approves, the student's 余额 shows the 补助 and its end",
  {},
  async ({ page, server }) => {
    await page.setViewportSize(DESK);
    await signInDemoAdmin(page, server);
    const maker = await financeMember(page, server, "caiwu1", "财务甲");
    const checker = await financeMember(page, server, "caiwu2", "财务乙");

    await maker.getByRole("navigation", { name: "管理后台导航" })
      .getByRole("link", { name: "补助发放" }).click();
    await maker.getByRole("link", { name: "新建补助批次" }).click();
    await assertAccessible(maker, "新建补助批次");
    const until = chinaDay(Date.now() + 20 * 86_400_000);
    await maker.getByLabel("批次名称").fill("寒假留校伙食补助");
    await maker.getByLabel("发放事由").fill("寒假留校学生伙食补助");
    await maker.getByLabel(/有效期截止/).fill(until);
    await maker.locator('input[type="file"]').setInputFiles({
      name: "补助名单.csv",
      mimeType: "text/csv",
      buffer: Buffer.from("学号,金额（元）\n2024010001,12.50\n2099000001,5\n"),
    });
    await maker.getByRole("button", { name: "编制批次并预览" }).click();
    await maker.getByText("已编制批次，请核对预览").waitFor();
    const preview = await maker.locator("main").textContent() ?? "";
    assert.match(preview, /应发金额¥12\.50/);
    assert.match(preview, /2099000001[\s\S]*不发放：本校没有此学号的一卡通账户/);
    await maker.getByText("本批次由您编制，须由另一位财务人员审核发放").waitFor();
    assert.equal(await maker.getByRole("button", { name: "审核发放" }).count(), 0);
    await assertAccessible(maker, "补助批次预览");

    await checker.goto(maker.url().replace(/\?.*$/, ""));
    await checker.getByRole("button", { name: "审核发放" }).click();
    await acceptConfirm(checker);
    await checker.getByText("已审核，补助已发放到持卡人的补助钱包").waitFor();
    assert.match(await checker.locator("#subsidy-totals").textContent() ?? "", /已发放¥12\.50/);
    await assertAccessible(checker, "补助批次");

    // The demo student on the phone: 余额 shows the 补助 purse and when it ends.
    const phone = await page.context().browser()!.newContext({
      viewport: VIEWPORT,
      userAgent: WECHAT_USER_AGENT,
      locale: "zh-CN",
      timezoneId: "Asia/Shanghai",
    });
    const student = await phone.newPage();
    await student.goto(server.url("/login"));
    await student.getByLabel("手机号").fill("13800000001");
    await student.getByLabel("登录密码").fill("Demo12345");
    await student.getByRole("button", { name: "登录", exact: true }).click();
    await student.getByRole("heading", { name: "智校园" }).waitFor();
    await student.goto(server.url("/wallet"));
    const dayAfter = chinaDay(new Date(`${until}T00:00:00+08:00`).getTime() + 86_400_000);
    await student.getByText(new RegExp(`补助将于${dayAfter}[^（]*到期（¥12\\.50）`)).waitFor();
  },
);
