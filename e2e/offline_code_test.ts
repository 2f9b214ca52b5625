/**
 * 离线付款码 (issue 18) in a real browser: 张三 opens 付款码 online (the page checks the phone in
 * and keeps its device), the network goes (Chromium's offline emulation) and the page shows an
 * offline code of its own making; the 第一食堂 QR scanner (a real reader over TCP) is paid with it,
 * the same code is refused the second time, and back online the page returns to online codes and
 * 交易记录 shows the payment. Then, with the service worker in control, 付款码 opened without the
 * network comes from its shell and shows an offline code too, and goes back online by itself.
 */
import assert from "node:assert/strict";
import { journey, type Page } from "./_support.ts";
import { assertAccessible } from "./_ui.ts";
import { MessageCode, Status, TerminalClient } from "../terminal/mod.ts";
import { terminalKeyHex } from "../modules/merchant/mod.ts";

/** A fixed APP_SECRET for this server, so the test can derive a demo reader's key (README). */
const APP_SECRET = "offline-code-journey-app-secret-0123456789abcdef";
/** The demo QR scanner of 第一食堂. */
const QR_TERMINAL = 10003;
const PHONE = "13800000001";
const PASSWORD = "Demo12345";

async function signIn(page: Page, url: (p: string) => string): Promise<void> {
  await page.goto(url("/login"));
  await page.getByLabel("手机号").fill(PHONE);
  await page.getByLabel("登录密码").fill(PASSWORD);
  await page.getByRole("button", { name: "登录", exact: true }).click();
  await page.getByRole("heading", { name: "智校园" }).waitFor();
}

/** The offline code the page shows now, read as a student would (查看数字). */
async function shownOfflineCode(page: Page): Promise<string> {
  const box = page.locator("[data-offline-codes]");
  await box.locator(".paycode__barcode svg").waitFor();
  const digits = box.locator(".paycode__digits");
  if (!(await digits.isVisible())) {
    await box.getByRole("button", { name: "查看数字" }).click();
    await digits.waitFor();
  }
  return ((await digits.textContent()) ?? "").replace(/\D/g, "");
}

/** The scanner's two scans of one code: each its own request (its own sequence number). */
async function payTwice(port: number, code: string, amount: number) {
  const reader = await TerminalClient.connect({
    port,
    terminalId: QR_TERMINAL,
    key: terminalKeyHex(APP_SECRET, QR_TERMINAL, 1),
  });
  try {
    const scan = async () =>
      (await reader.request({ code: MessageCode.QrPayment, paymentCode: code, amount }))
        .message as { code: number; status: number; balance: number };
    return [await scan(), await scan()];
  } finally {
    await reader.close();
  }
}

journey(
  "离线付款码: offline, the page's own code pays once at the QR scanner; back online, 交易记录",
  {
    server: { env: { APP_SECRET } },
  },
  async ({ page, context, server, shot }) => {
    await signIn(page, server.url);
    await page.getByRole("link", { name: "付款码", exact: true }).click();
    await page.getByRole("img", { name: "付款二维码" }).waitFor();
    // The page checks the phone in after it shows, and keeps its device.
    await page.waitForFunction(() =>
      // deno-lint-ignore no-explicit-any
      !!(globalThis as any).localStorage.getItem("yxt.payDevice")
    );

    // The network goes: 离线付款码, with the offline limits, instead of a greyed-out code.
    await context.setOffline(true);
    await page.getByRole("heading", { name: "离线付款码" }).waitFor();
    await page.getByText("离线付款码：单笔不超过 ¥30.00，每日不超过 ¥100.00").waitFor();
    assert.equal(
      await page.getByRole("button", { name: "网络不可用，付款码可能已失效，点击重试" }).count(),
      0,
    );
    const code = await shownOfflineCode(page);
    assert.match(code, /^87\d{16}$/);
    assert.match(
      (await page.locator("[data-offline-codes] .paycode__masked").textContent()) ?? "",
      /^87\d\d \*+$/,
    );
    await assertAccessible(page, "离线付款码");
    await shot("offline-code");

    // The scanner is online: the code pays ¥8.50 of 张三's ¥200.00, once.
    const [paid, again] = await payTwice(server.terminalPort, code, 850);
    assert.deepEqual([paid.code, paid.status, paid.balance], [
      MessageCode.QrPaymentReply,
      0,
      19150,
    ]);
    assert.equal(again.status, Status.CodeUsed, "the same code is refused the second time");

    // Back online: an online code again, by itself; the payment is in 交易记录.
    const refreshed = page.waitForResponse((r) => r.url().endsWith("/pay/code/refresh"));
    await context.setOffline(false);
    assert.equal((await refreshed).status(), 200);
    await page.getByRole("heading", { name: "付款码", exact: true }).waitFor();
    assert.equal(await page.locator("[data-offline-codes]").count(), 0);
    await page.goto(server.url("/wallet/transactions"));
    await page.locator(".tx", { hasText: /第一食堂[\s\S]*-8\.50/ }).first().waitFor();
    await shot("transactions");

    // With the service worker in control, 付款码 opened without the network is its shell.
    await page.goto(server.url("/pay/code"));
    await page.evaluate(() =>
      // deno-lint-ignore no-explicit-any
      (globalThis as any).navigator.serviceWorker.ready.then(() => true)
    );
    await page.reload();
    await page.waitForFunction(() =>
      // deno-lint-ignore no-explicit-any
      (globalThis as any).navigator.serviceWorker.controller !== null
    );
    await context.setOffline(true);
    await page.goto(server.url("/pay/code"));
    await page.getByRole("heading", { name: "离线付款码" }).waitFor();
    const fromShell = await shownOfflineCode(page);
    assert.match(fromShell, /^87\d{16}$/);
    assert.doesNotMatch((await page.textContent("body")) ?? "", /余额/, "the shell holds no money");
    await shot("offline-shell");
    // The network returns: back to the online page by itself.
    await context.setOffline(false);
    await page.locator("#paycode-card[data-paycode]").waitFor();
    await page.getByRole("heading", { name: "付款码", exact: true }).waitFor();
  },
);
