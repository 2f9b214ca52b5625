/**
 * 补助发放 in the browser (issue 15): one finance member prepares a batch from a CSV list and sees
 * the refused row and why, cannot approve it herself; a second member approves it; the demo
 * student's 余额 then shows the 补助 and when it expires.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { chinaDay } from "../modules/platform/china_time.ts";
import { MessageCode, Status, TerminalClient } from "../terminal/mod.ts";
import { terminalKeyHex } from "../modules/merchant/mod.ts";
import { acceptConfirm, assertAccessible } from "./_ui.ts";
import {
  DESK,
  journey,
  type Page,
  signInDemoAdmin,
  staffMember,
  VIEWPORT,
  WECHAT_USER_AGENT,
} from "./_support.ts";

const APP_SECRET = "subsidy-journey-app-secret-0123456789abcdef";
/** The demo's QR scanner at 第一食堂 (a canteen: 补助 may be spent there). */
const QR_TERMINAL = 10003;

/** The student's 付款码 scanned at 第一食堂 for `amount` fen (scanned again if it was retired). */
async function payAtCanteen(page: Page, port: number, amount: number): Promise<void> {
  const reader = await TerminalClient.connect({
    port,
    terminalId: QR_TERMINAL,
    key: terminalKeyHex(APP_SECRET, QR_TERMINAL, 1),
  });
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      const code = (await page.locator(".paycode__digits").textContent() ?? "").replace(/\D/g, "");
      const reply = await reader.request({
        code: MessageCode.QrPayment,
        paymentCode: code,
        amount,
      });
      const status = (reply.message as { status: number }).status;
      if (status === Status.Ok) return;
      assert.ok(attempt < 2, `the scanner was refused: status ${status}`);
    }
  } finally {
    await reader.close();
  }
}

journey(
  "补助发放: finance prepares, a second member approves; the student sees the 补助 and its end on 余额, and a canteen payment takes it first",
  { server: { env: { APP_SECRET } } },
  async ({ page, server }) => {
    await page.setViewportSize(DESK);
    await signInDemoAdmin(page, server);
    const maker = await staffMember(page, server, {
      username: "caiwu1",
      name: "财务甲",
      role: "财务处",
    });
    const checker = await staffMember(page, server, {
      username: "caiwu2",
      name: "财务乙",
      role: "财务处",
    });

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

    // ¥15.00 at 第一食堂's scanner: the 补助 first (¥12.50), the rest (¥2.50) from cash — one
    // payment, shown once in 交易记录 with its split.
    await student.goto(server.url("/pay/code"));
    await student.getByRole("img", { name: "付款二维码" }).waitFor();
    await payAtCanteen(student, server.terminalPort, 1500);
    await student.getByRole("heading", { name: "支付成功" }).waitFor();
    await student.goto(server.url("/wallet/transactions"));
    const paid = student.locator(".tx", { hasText: "-15.00" });
    assert.equal(await paid.count(), 1);
    assert.equal(await paid.locator(".tx__split").textContent(), "补助 ¥12.50 + 现金 ¥2.50");
    await assertAccessible(student, "交易记录（补助）");
  },
);
