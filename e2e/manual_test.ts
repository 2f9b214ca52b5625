/**
 * The printed manual (校园一信通使用手册), walked from top to bottom as a student would, on a phone
 * in WeChat: only what the manual says is used — page names, the [bracketed] field names as visible
 * labels, button names, tiles and links by their visible text — and each step checks what the
 * student sees next. One screenshot per step lands in e2e/artifacts/.
 *
 * The student registers a new 一信通账号, binds the demo cardholder 李四 (2024010002, not bound to the
 * demo login account) with the default card password, changes it, tops up, looks at 余额 and
 * 交易记录, pays with the 付款码 at the demo QR scanner (a real reader client over the TCP reader
 * port), pays electricity and cold water, binds an email, reports the card lost and lifts the
 * loss, and finally resets the forgotten login password by email code. A second account without an
 * email is sent to 教学楼 503 图文信息中心 (温馨提示).
 */
import assert from "node:assert/strict";
import { journey, nextCode, type Page } from "./_support.ts";
import { acceptConfirm, assertAccessible } from "./_ui.ts";
import { MessageCode, Status, TerminalClient } from "../terminal/mod.ts";
import { terminalKeyHex } from "../modules/merchant/mod.ts";

/** A fixed APP_SECRET for this server, so the test can derive a demo reader's key (README). */
const APP_SECRET = "manual-walkthrough-app-secret-0123456789abcdef";
/** The demo QR scanner 一食堂扫码器 of 第一食堂 (README: 10003), key version 1 on a fresh database. */
const QR_TERMINAL = 10003;

const SCHOOL = "云南城市建设职业学院";
const PHONE = "13712345601";
const LOGIN_PASSWORD = "Xue2025abc";
const NEW_LOGIN_PASSWORD = "Xin2026def";
const EMAIL = "lisi2024@qq.com";
/** Demo cardholder 李四 (README, modules/card DEMO_CARDHOLDERS): not bound to any login account. */
const STUDENT_NUMBER = "2024010002";
const STUDENT_NAME = "李四";
const ID_NUMBER = "530102200601204526";
const CHIP_NUMBER = "3158642908";
const NEW_CARD_PASSWORD = "470925";
/** A second student who never binds an email (温馨提示 / manual section 9's reminder). */
const PHONE_WITHOUT_EMAIL = "13712345602";

/** The manual's rule: the default card password is the last 6 of the 身份证, a final X uppercase. */
function defaultCardPassword(idNumber: string): string {
  return idNumber.slice(-6).toUpperCase();
}

/** Waits until the visible 余额 on the 余额 page reads exactly `yuan` (e.g. "300.00"). */
async function seeBalance(page: Page, yuan: string): Promise<void> {
  await page.locator(".hero__amount", {
    hasText: new RegExp(`^\\s*${yuan.replace(".", "\\.")}\\s*$`),
  })
    .waitFor();
}

/**
 * 智校园 and 我的, by the bottom bar. Every page the manual walks through after signing in has it
 * (issue 16): a page without it fails here rather than being reached by typing the address.
 */
async function tab(page: Page, name: "智校园" | "我的"): Promise<void> {
  const bar = page.getByRole("navigation", { name: "主导航" });
  assert.equal(await bar.count(), 1, `the bottom bar on ${new URL(page.url()).pathname}`);
  await bar.getByRole("link", { name }).click();
  if (name === "智校园") await page.getByRole("heading", { name: "智校园" }).waitFor();
  else await page.getByRole("button", { name: "退出登录" }).waitFor();
}

async function signIn(page: Page, phone: string, password: string): Promise<void> {
  await page.getByLabel("手机号").fill(phone);
  await page.getByLabel("登录密码").fill(password);
  await page.getByRole("button", { name: "登录", exact: true }).click();
}

async function signOut(page: Page): Promise<void> {
  await tab(page, "我的");
  await page.getByRole("button", { name: "退出登录" }).click();
  await page.getByRole("heading", { name: "校园一信通" }).waitFor();
}

journey("manual: 校园一信通使用手册 from top to bottom", {
  smtp: true,
  server: { env: { APP_SECRET, METER_SIM_DELAY_MS: "300" } },
}, async ({ page, context, server, shot: screenshot, smtp }) => {
  // Every step's page is also checked with axe-core: no serious or critical violation.
  const shot = async (label: string) => {
    await assertAccessible(page, label);
    await screenshot(label);
  };
  // A loaded machine: be patient with every auto-wait.
  context.setDefaultTimeout(60_000);

  // ---- 2. 注册账号: 校园一信通 → [立即注册].
  await page.goto(server.url("/"));
  await page.getByRole("heading", { name: "校园一信通" }).waitFor();
  await shot("2-login-page");
  await page.getByRole("link", { name: "立即注册" }).click();
  await page.getByLabel("手机号").fill(PHONE);
  await page.getByLabel("登录密码").fill(LOGIN_PASSWORD);
  await page.getByLabel("学校").selectOption({ label: SCHOOL });
  await page.getByText("提醒：请记住第一次的登录密码！").waitFor();
  await shot("2-register");
  await page.getByRole("button", { name: "注册", exact: true }).click();
  await page.getByRole("heading", { name: "智校园" }).waitFor();
  await page.getByText(SCHOOL).first().waitFor();
  await shot("2-registered");

  // 注册成功后即可用手机号登录校园一信通.
  await signOut(page);
  await signIn(page, PHONE, LOGIN_PASSWORD);
  await page.getByRole("heading", { name: "智校园" }).waitFor();
  await shot("2-signed-in-with-phone");

  // ---- 3. 绑定一卡通账号: 我的 → 一卡通安全中心 → 一卡通账号绑定, [学号], [一卡通密码], [确认].
  await tab(page, "我的");
  await page.getByRole("link", { name: /一卡通安全中心/ }).click();
  await page.getByRole("heading", { name: "一卡通安全中心" }).waitFor();
  await page.getByRole("link", { name: /一卡通账号绑定/ }).click();
  await page.getByRole("heading", { name: "一卡通账号绑定" }).waitFor();
  await page.getByLabel("学号").fill(STUDENT_NUMBER);
  await page.getByLabel("一卡通密码", { exact: true }).fill(defaultCardPassword(ID_NUMBER));
  await shot("3-bind");
  await page.getByRole("button", { name: "确认" }).click();
  await page.getByText("绑定成功后需要重新登录").waitFor();
  await page.getByText("提醒：绑定成功后请立即修改一卡通密码、绑定邮箱！").waitFor();
  await shot("3-bound-sign-in-again");
  await page.getByRole("link", { name: "重新登录" }).click();
  await signIn(page, PHONE, LOGIN_PASSWORD);
  await page.getByText(`已绑定：${STUDENT_NAME}（学号 ${STUDENT_NUMBER}）`).waitFor();
  // 提醒：绑定成功后请立即修改一卡通密码、绑定邮箱！ — the home page says so until both are done.
  await tab(page, "智校园");
  await page.getByText("绑定成功后请立即修改一卡通密码、绑定邮箱！").waitFor();
  await page.getByText(/一卡通密码仍为默认密码/).waitFor();
  await page.getByText(/尚未绑定邮箱/).waitFor();
  await shot("3-home-reminders");

  // ---- 4. 修改一卡通密码: 我的 → 一卡通安全中心 → 一卡通密码修改, [原密码], [新密码], [确认].
  await tab(page, "我的");
  await page.getByRole("link", { name: /一卡通安全中心/ }).click();
  await page.getByRole("link", { name: "一卡通密码修改" }).click();
  await page.getByRole("heading", { name: "一卡通密码修改" }).waitFor();
  await page.getByLabel("原密码").fill(defaultCardPassword(ID_NUMBER));
  await page.getByLabel("新密码").fill(NEW_CARD_PASSWORD);
  await shot("4-card-password");
  await page.getByRole("button", { name: "确认" }).click();
  await page.getByText("一卡通密码修改成功").waitFor();
  await shot("4-card-password-changed");
  await tab(page, "智校园");
  await page.getByText(/尚未绑定邮箱/).waitFor();
  assert.equal(await page.getByText(/一卡通密码仍为默认密码/).count(), 0);

  // ---- 5. 余额充值: 智校园 [充值], [输入金额], 支付方式, [充值]; confirm on 测试支付.
  await page.getByRole("link", { name: "充值", exact: true }).click();
  await page.getByRole("heading", { name: "充值", exact: true }).waitFor();
  await page.getByLabel("输入金额").fill("100");
  await page.getByRole("radiogroup", { name: "支付方式" }).getByRole("radio", { name: /测试支付/ })
    .check();
  await shot("5-recharge");
  await page.getByRole("button", { name: "充值", exact: true }).click();
  await page.getByText("测试支付 · 沙箱环境，不会真实扣款").waitFor();
  await page.getByText("¥100.00").waitFor();
  await shot("5-sandbox-pay");
  await page.getByRole("button", { name: "确认支付" }).click();
  await page.getByRole("heading", { name: "充值成功" }).waitFor();
  await shot("5-recharge-success");

  // ---- 6. 余额, and [交易记录] in its upper right. Demo cardholders start with ¥200.00.
  await tab(page, "智校园");
  await page.getByRole("link", { name: "余额", exact: true }).click();
  await seeBalance(page, "300.00");
  const txLink = page.getByRole("link", { name: "交易记录" });
  const box = await txLink.boundingBox();
  assert.ok(box, "交易记录 is visible on 余额");
  assert.ok(
    box.x > 390 / 2 && box.y < 200,
    `交易记录 sits in the upper right: ${JSON.stringify(box)}`,
  );
  await shot("6-balance");
  await txLink.click();
  await page.getByRole("heading", { name: "交易记录" }).or(page.locator(".tx").first()).first()
    .waitFor();
  await page.locator(".tx", { hasText: /充值[\s\S]*\+100\.00/ }).first().waitFor();
  await shot("6-transactions");

  // ---- 一(二) 二维码支付: 智校园 [付款码], shown at the 第一食堂 QR scanner (reader over TCP).
  await tab(page, "智校园");
  await page.getByRole("link", { name: "付款码", exact: true }).click();
  await page.getByRole("img", { name: "付款二维码" }).waitFor();
  await page.evaluate(() => Object.assign(globalThis, { __samePage: "yes" }));
  await shot("1-2-payment-code");
  const reader = await TerminalClient.connect({
    port: server.terminalPort,
    terminalId: QR_TERMINAL,
    key: terminalKeyHex(APP_SECRET, QR_TERMINAL, 1),
  });
  try {
    // The code shown is what the scanner reads (the digits under the QR are the same code). The
    // page refreshes it every 30 s and retires the old one, so a reader that scanned a retired
    // code scans again, as a cashier would.
    let paid = false;
    for (let attempt = 0; attempt < 3 && !paid; attempt++) {
      const shown = await page.locator(".paycode__digits").textContent() ?? "";
      const code = shown.replace(/\D/g, "");
      assert.match(code, /^88\d{16}$/);
      const reply = await reader.request({
        code: MessageCode.QrPayment,
        paymentCode: code,
        amount: 850,
      });
      const status = (reply.message as { status: number }).status;
      paid = status === Status.Ok;
      if (!paid) assert.ok(attempt < 2, `the scanner was refused: status ${status}`);
    }
  } finally {
    await reader.close();
  }
  // 支付成功 appears on the same page, without a reload.
  await page.getByRole("heading", { name: "支付成功" }).waitFor();
  await page.getByText("¥8.50").waitFor();
  await page.getByText(/第一食堂 · 余额 ¥291\.50/).waitFor();
  assert.equal(
    await page.evaluate(() => (globalThis as { __samePage?: string }).__samePage),
    "yes",
  );
  await shot("1-2-paid");

  // ---- 一(三) 电费充值 and 冷水充值 from 智校园, paid from the card balance (room chosen first).
  await tab(page, "智校园");
  await page.getByRole("link", { name: "电费充值" }).click();
  await page.getByText("请先选择宿舍房间").waitFor();
  await page.getByRole("link", { name: "选择宿舍" }).click();
  await page.getByLabel("楼栋").selectOption({ label: "1号楼" });
  await page.getByLabel("房间").selectOption({ label: "101" });
  await shot("1-3-choose-room");
  await page.getByRole("button", { name: "确认" }).click();
  await page.getByRole("heading", { name: "电费充值" }).waitFor();
  await page.locator("#billing-room", { hasText: "1号楼 101" }).waitFor();
  await page.getByText("¥291.50").waitFor();
  await page.getByLabel("输入金额").fill("20");
  await shot("1-3-electricity");
  await page.getByRole("button", { name: "确认" }).click();
  await page.getByRole("heading", { name: "电费充值成功" }).waitFor();
  await page.getByText(/已到账：1号楼 101/).waitFor();
  await shot("1-3-electricity-paid");

  await tab(page, "智校园");
  await page.getByRole("link", { name: "冷水充值" }).click();
  await page.getByRole("heading", { name: "冷水充值" }).waitFor();
  await page.locator("#billing-room", { hasText: "1号楼 101" }).waitFor();
  await page.getByLabel("输入金额").fill("10");
  await shot("1-3-water");
  await page.getByRole("button", { name: "确认" }).click();
  await page.getByRole("heading", { name: "冷水充值成功" }).waitFor();
  await shot("1-3-water-paid");

  await tab(page, "智校园");
  await page.getByRole("link", { name: "余额", exact: true }).click();
  await seeBalance(page, "261.50");
  await page.getByRole("link", { name: "交易记录" }).click();
  await page.locator(".tx", { hasText: /第一食堂[\s\S]*-8\.50/ }).first().waitFor();
  await page.locator(".tx", { hasText: /电费[\s\S]*-20\.00/ }).first().waitFor();
  await page.locator(".tx", { hasText: /冷水[\s\S]*-10\.00/ }).first().waitFor();
  await shot("1-3-transactions");

  // ---- 7. 绑定邮箱: 我的 → [绑定邮箱], [邮箱], [发送验证码], the code from the mail, [确定].
  await tab(page, "我的");
  await page.getByRole("link", { name: /绑定邮箱/ }).click();
  await page.getByRole("heading", { name: "绑定邮箱" }).waitFor();
  await page.getByLabel("邮箱", { exact: true }).fill(EMAIL);
  const bindMail = nextCode(smtp!, EMAIL, 60_000);
  await page.getByRole("button", { name: "发送验证码" }).click();
  await page.getByText(`验证码已发送至 ${EMAIL}`).waitFor();
  await page.getByLabel("验证码", { exact: true }).fill(await bindMail);
  await shot("7-email");
  await page.getByRole("button", { name: "确定" }).click();
  await page.getByText("邮箱绑定成功").waitFor();
  await shot("7-email-bound");
  // Both reminders are done: the home page no longer reminds.
  await tab(page, "智校园");
  await page.getByRole("link", { name: "付款码", exact: true }).waitFor();
  assert.equal(await page.getByText("绑定成功后请立即修改一卡通密码、绑定邮箱！").count(), 0);

  // ---- 8. 挂失: 一卡通安全中心 → 挂失; [一卡通芯片卡号] pops up pre-filled; note it down.
  await tab(page, "我的");
  await page.getByRole("link", { name: /一卡通安全中心/ }).click();
  await page.getByRole("link", { name: "挂失", exact: true }).click();
  await page.getByRole("heading", { name: "挂失" }).waitFor();
  const noted = (await page.locator("#chip-number").textContent() ?? "").trim();
  assert.equal(noted, CHIP_NUMBER, "the chip number (not the 学号) is shown to note down");
  // 温馨提示 3: the number that pops up is the chip number, 并非学号, to be kept (截图).
  await page.getByText(/一卡通芯片卡号（并非学号）/).waitFor();
  await page.getByText(/截图记下芯片卡号/).waitFor();
  assert.equal(await page.getByLabel("一卡通芯片卡号").inputValue(), noted);
  await page.getByLabel("身份证", { exact: true }).fill(ID_NUMBER);
  await page.getByLabel("一卡通密码", { exact: true }).fill(NEW_CARD_PASSWORD);
  await shot("8-loss");
  await page.getByRole("button", { name: "确认" }).click();
  // The 挂失 form asks "确认挂失？" in an in-page dialog; the student accepts.
  await acceptConfirm(page, "确认挂失");
  await page.getByText(/挂失成功/).waitFor();
  await shot("8-loss-reported");
  await tab(page, "我的");
  await page.getByText("已挂失").waitFor();

  // 解挂 with the noted chip number, [身份证], [一卡通密码], [确认].
  await page.getByRole("link", { name: /一卡通安全中心/ }).click();
  await page.getByRole("link", { name: "解挂", exact: true }).click();
  await page.getByRole("heading", { name: "解挂" }).waitFor();
  await page.getByLabel("一卡通芯片卡号").fill(noted);
  await page.getByLabel("身份证", { exact: true }).fill(ID_NUMBER);
  await page.getByLabel("一卡通密码", { exact: true }).fill(NEW_CARD_PASSWORD);
  await shot("8-unloss");
  await page.getByRole("button", { name: "确认" }).click();
  await page.getByText("解挂成功").waitFor();
  await shot("8-loss-lifted");
  await tab(page, "我的");
  await page.getByText("正常", { exact: true }).waitFor();

  // ---- 9. 忘记密码: 登录界面 → 忘记密码, [手机号], [邮箱验证码], [新密码], [确认].
  await signOut(page);
  await page.getByRole("link", { name: "忘记密码" }).click();
  await page.getByLabel("手机号").fill(PHONE);
  const resetMail = nextCode(smtp!, EMAIL, 60_000);
  await page.getByRole("button", { name: "发送验证码" }).click();
  await page.getByText(/验证码已发送至绑定邮箱/).waitFor();
  await page.getByLabel("邮箱验证码").fill(await resetMail);
  await page.getByLabel("新密码").fill(NEW_LOGIN_PASSWORD);
  await shot("9-forgot-password");
  await page.getByRole("button", { name: "确认" }).click();
  await page.getByText("登录密码已重置，请使用新密码登录").waitFor();
  await shot("9-password-reset");
  await signIn(page, PHONE, NEW_LOGIN_PASSWORD);
  await page.getByRole("heading", { name: "智校园" }).waitFor();
  await page.getByText(`${STUDENT_NAME}（${STUDENT_NUMBER}）`).waitFor();
  await shot("9-signed-in-with-new-password");

  // ---- 温馨提示 / 9's 提醒: without a bound email, go to 教学楼 503 图文信息中心.
  await signOut(page);
  await page.getByRole("link", { name: "立即注册" }).click();
  await page.getByLabel("手机号").fill(PHONE_WITHOUT_EMAIL);
  await page.getByLabel("登录密码").fill(LOGIN_PASSWORD);
  await page.getByLabel("学校").selectOption({ label: SCHOOL });
  await page.getByRole("button", { name: "注册", exact: true }).click();
  await page.getByRole("heading", { name: "智校园" }).waitFor();
  await signOut(page);
  await page.getByRole("link", { name: "忘记密码" }).click();
  await page.getByLabel("手机号").fill(PHONE_WITHOUT_EMAIL);
  await page.getByRole("button", { name: "发送验证码" }).click();
  await page.getByText(/无法通过邮箱找回。未绑定邮箱的，请到教学楼 503 图文信息中心修改登录密码/)
    .waitFor();
  await shot("tips-no-email-503");
});
