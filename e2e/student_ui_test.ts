/**
 * Students' pages as good as WeChat Pay's own (issue 16), on a phone in WeChat:
 *
 * - every student page passes axe-core with no serious or critical violation, has one h1, tap
 *   targets of at least 44 px, and the bottom bar where it is not a one-off step; dark mode keeps
 *   the codes on white; /favicon.ico exists; a 320×568 phone shows home's main actions unscrolled;
 * - 付款码: a Code128 barcode above the QR, digits behind 查看数字, the payment source, and a code
 *   that greys out while the network is gone and comes back by itself;
 * - forms: the button is busy and disabled once submitted, 充值 shows its amount and the new
 *   balance, 挂失 asks in an in-page dialog.
 */
import assert from "node:assert/strict";
import { journey, type Page } from "./_support.ts";
import { acceptConfirm, assertAccessible } from "./_ui.ts";

const PHONE = "13800000001";
const PASSWORD = "Demo12345";

async function signIn(page: Page, url: (p: string) => string): Promise<void> {
  await page.goto(url("/login"));
  await page.getByLabel("手机号").fill(PHONE);
  await page.getByLabel("登录密码").fill(PASSWORD);
  await page.getByRole("button", { name: "登录", exact: true }).click();
  await page.getByRole("heading", { name: "智校园" }).waitFor();
}

/** Visible controls smaller than 44 px (links inside a sentence are exempt, as in WCAG 2.5.5). */
function smallTargets(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    // deno-lint-ignore no-explicit-any
    const doc = (globalThis as any).document;
    const out: string[] = [];
    for (const el of doc.querySelectorAll("a, button, input, select")) {
      if (el.type === "hidden" || el.closest("[hidden]")) continue;
      const target = (el.type === "radio" || el.type === "checkbox") ? el.closest("label") : el;
      if (!target) continue;
      const r = target.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) continue;
      const parent = el.parentElement;
      const inline = el.tagName === "A" && parent && ["P", "LI", "SPAN"].includes(parent.tagName) &&
        parent.textContent.trim().length > el.textContent.trim().length;
      if (inline) continue;
      if (r.height < 44 || r.width < 44) {
        out.push(
          `${el.tagName.toLowerCase()} "${el.textContent.trim() || el.name}" ${
            Math.round(r.width)
          }×${Math.round(r.height)}`,
        );
      }
    }
    return out;
  });
}

/** The page's checks: axe, one h1, tap targets, and whether the bottom bar is there. */
async function checkPage(page: Page, label: string, tabbar: boolean): Promise<void> {
  await assertAccessible(page, label);
  assert.equal(await page.locator("h1").count(), 1, `${label}: one h1`);
  assert.deepEqual(await smallTargets(page), [], `${label}: tap targets of at least 44 px`);
  const bar = await page.getByRole("navigation", { name: "主导航" }).count();
  assert.equal(bar, tabbar ? 1 : 0, `${label}: bottom bar ${tabbar ? "shown" : "absent"}`);
}

journey("student pages: axe, one h1, 44 px targets, bottom bar, dark mode, favicon", {}, async ({
  page,
  server,
  shot,
}) => {
  const url = server.url;
  const favicon = await fetch(url("/favicon.ico"));
  assert.equal(favicon.status, 200);
  assert.equal(favicon.headers.get("content-type"), "image/x-icon");
  assert.ok((await favicon.arrayBuffer()).byteLength > 0);

  for (const path of ["/login", "/register", "/password/forgot"]) {
    await page.goto(url(path));
    await checkPage(page, path, false);
  }
  await signIn(page, url);
  const pages: Array<[string, boolean]> = [
    ["/", true],
    ["/me", true],
    ["/me/email", true],
    ["/me/password", true],
    ["/security", true],
    ["/security/bind", true],
    ["/security/password", true],
    ["/security/loss", true],
    ["/security/unloss", true],
    ["/wallet", true],
    ["/wallet/transactions", true],
    ["/wallet/stats", true],
    ["/pay/code", true],
    ["/pay/settings", true],
    ["/wallet/recharge", true],
    ["/billing/electricity", true],
    ["/billing/water", true],
    ["/billing/room", true],
  ];
  for (const [path, tabbar] of pages) {
    await page.goto(url(path));
    await checkPage(page, path, tabbar);
  }
  // Our own error page.
  await page.goto(url("/no-such-page"));
  await checkPage(page, "404", true);
  // A transaction's detail, from the list.
  await page.goto(url("/wallet/transactions"));
  await page.locator(".tx a").first().click();
  await page.waitForURL(/\/wallet\/transactions\/\d+$/);
  await checkPage(page, "交易详情", true);

  // Dark mode: the pages stay readable; the codes stay on white.
  await page.emulateMedia({ colorScheme: "dark" });
  for (const [path] of [...pages, ["/no-such-page"]]) {
    await page.goto(url(path));
    await assertAccessible(page, `${path} (dark)`);
  }
  await page.goto(url("/pay/code"));
  const bg = await page.locator(".paycode__card").evaluate((el) =>
    // deno-lint-ignore no-explicit-any
    (globalThis as any).getComputedStyle(el).backgroundColor
  );
  assert.equal(bg, "rgb(255, 255, 255)", "the codes sit on white in dark mode");
  assert.notEqual(
    await page.evaluate(() =>
      // deno-lint-ignore no-explicit-any
      (globalThis as any).getComputedStyle((globalThis as any).document.body).backgroundColor
    ),
    "rgb(237, 237, 237)",
    "the page itself turns dark",
  );
  await shot("pay-code-dark");
  await page.emulateMedia({ colorScheme: "light" });

  // A small phone (320×568): 余额, 付款码 and 充值 without scrolling, above the bottom bar.
  await page.setViewportSize({ width: 320, height: 568 });
  await page.goto(url("/"));
  const barTop = (await page.locator(".tabbar").boundingBox())!.y;
  for (const name of ["付款码", "充值", "余额"]) {
    const box = (await page.getByRole("link", { name, exact: true }).boundingBox())!;
    assert.ok(
      box.y + box.height <= barTop,
      `${name} is visible unscrolled: ${JSON.stringify(box)}`,
    );
  }
  await shot("home-320x568");
});

journey("付款码: barcode above the QR, 查看数字, payment source, offline and back", {}, async ({
  page,
  context,
  server,
  shot,
}) => {
  await signIn(page, server.url);
  await page.getByRole("link", { name: "付款码", exact: true }).click();
  const barcode = page.getByRole("img", { name: "付款条形码" });
  const qr = page.getByRole("img", { name: "付款二维码" });
  await qr.waitFor();
  const barBox = (await barcode.boundingBox())!;
  const qrBox = (await qr.boundingBox())!;
  assert.ok(barBox.y + barBox.height <= qrBox.y, "the barcode sits above the QR");
  assert.ok(barBox.width >= 250, `the barcode is wide enough for a laser: ${barBox.width}`);
  await page.getByText("请调高屏幕亮度").waitFor();
  await page.getByText("一卡通余额 ¥200.00 · 张三").waitFor();

  // The digits are masked until 查看数字; the masked line shows only the prefix.
  const digits = page.locator(".paycode__digits");
  assert.equal(await digits.isVisible(), false);
  const masked = (await page.locator(".paycode__masked").textContent())!;
  assert.match(masked, /^88\d\d \*+$/);
  await page.getByRole("button", { name: "查看数字" }).click();
  await digits.waitFor();
  const code = ((await digits.textContent()) ?? "").replace(/\D/g, "");
  assert.match(code, /^88\d{16}$/);
  assert.ok(code.startsWith(masked.slice(0, 4)));
  await shot("digits-shown");

  // The network goes: the code greys out behind a retry; it comes back by itself.
  await context.setOffline(true);
  const stale = page.getByRole("button", { name: "网络不可用，付款码可能已失效，点击重试" });
  await stale.waitFor();
  await page.locator("#paycode-card.is-stale").waitFor();
  await shot("offline");
  // Tapping retry while still offline keeps the warning.
  const failed = page.waitForEvent("requestfailed");
  await stale.click();
  await failed;
  assert.equal(await page.locator("#paycode-card.is-stale").count(), 1);
  const refreshed = page.waitForResponse((r) => r.url().endsWith("/pay/code/refresh"));
  await context.setOffline(false);
  assert.equal((await refreshed).status(), 200);
  await page.locator("#paycode-card:not(.is-stale)").waitFor();
  assert.equal(await stale.count(), 0);
  // A fresh code, still shown in clear (the student chose 查看数字).
  await digits.waitFor();
  const fresh = ((await digits.textContent()) ?? "").replace(/\D/g, "");
  assert.match(fresh, /^88\d{16}$/);
  assert.notEqual(fresh, code, "a new code replaced the one that may have been retired");
  await shot("back-online");
});

journey("forms: busy button, 充值 ¥ amount and new balance, 挂失 in an in-page dialog", {}, async ({
  page,
  server,
  shot,
}) => {
  let nativeDialogs = 0;
  page.on("dialog", (d) => {
    nativeDialogs++;
    d.dismiss();
  });
  await signIn(page, server.url);
  await page.getByRole("link", { name: "充值", exact: true }).click();
  await page.getByLabel("输入金额").fill("50");
  const button = page.getByRole("button", { name: "充值", exact: true });
  assert.equal((await button.textContent())?.trim(), "充值 ¥50.00");
  await page.getByRole("radio", { name: /测试支付/ }).check();

  // Hold the post: the button is busy and disabled, a 加载中 toast shows, a second tap is lost.
  let posts = 0;
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  await page.route("**/wallet/recharge", async (route) => {
    if (route.request().method() !== "POST") return route.continue();
    posts++;
    await held;
    await route.continue();
  });
  // Two taps from inside the page while the post is held, and what the page shows 350 ms after
  // the first (playwright's own click and locators would wait for the held navigation).
  const seen = await button.evaluate((el) =>
    new Promise<Record<string, unknown>>((resolve) => {
      // deno-lint-ignore no-explicit-any
      const b = el as any;
      b.click();
      setTimeout(() => {
        const toast = b.ownerDocument.getElementById("loading-toast");
        b.click();
        resolve({
          disabled: b.disabled,
          busy: b.getAttribute("aria-busy"),
          loading: b.classList.contains("is-loading"),
          toast: toast && !toast.hidden ? toast.textContent : null,
        });
      }, 350);
    })
  );
  assert.deepEqual(seen, { disabled: true, busy: "true", loading: true, toast: "加载中" });
  release();
  await page.getByText("测试支付 · 沙箱环境，不会真实扣款").waitFor();
  assert.equal(posts, 1, "one post for two taps");
  await page.getByRole("button", { name: "确认支付" }).click();
  await page.getByRole("heading", { name: "充值成功" }).waitFor();
  await page.getByText("充值后余额 ¥250.00").waitFor();
  await assertAccessible(page, "充值成功");
  await shot("topup-success");

  // 挂失 asks in the page itself; 取消 sends nothing.
  await page.goto(server.url("/security/loss"));
  await page.getByLabel("身份证", { exact: true }).fill("53010220050315123X");
  await page.getByLabel("一卡通密码", { exact: true }).fill("15123X");
  await page.getByRole("button", { name: "确认" }).click();
  const dialog = page.getByRole("alertdialog");
  await dialog.getByText("确认挂失？挂失后实体卡将无法使用。").waitFor();
  await assertAccessible(page, "挂失 dialog");
  await shot("loss-dialog");
  await dialog.getByRole("button", { name: "取消" }).click();
  assert.equal(await dialog.count(), 0);
  assert.ok(page.url().endsWith("/security/loss"));
  await page.getByRole("button", { name: "确认" }).click();
  await acceptConfirm(page, "确认挂失");
  await page.getByText(/挂失成功/).waitFor();
  assert.equal(nativeDialogs, 0, "no window.confirm");
});

journey(
  "offline: our 网络不可用 page instead of the browser's, never a cached money page",
  {},
  async ({
    page,
    context,
    server,
    shot,
  }) => {
    await signIn(page, server.url);
    await page.goto(server.url("/wallet"));
    await page.evaluate(() =>
      // deno-lint-ignore no-explicit-any
      (globalThis as any).navigator.serviceWorker.ready.then(() => true)
    );
    // The worker controls the next navigation.
    await page.goto(server.url("/wallet"));
    assert.ok(
      await page.evaluate(() =>
        // deno-lint-ignore no-explicit-any
        (globalThis as any).navigator.serviceWorker.controller !== null
      ),
    );
    await context.setOffline(true);
    for (const path of ["/wallet", "/pay/code", "/wallet/transactions"]) {
      await page.goto(server.url(path));
      await page.getByRole("heading", { name: "网络不可用" }).waitFor();
      assert.doesNotMatch(
        await page.textContent("body") ?? "",
        /¥|余额（元）/,
        `${path}: no money`,
      );
    }
    await assertAccessible(page, "网络不可用");
    await shot("offline-page");
    // Only the shell is cached: no page of the student's.
    const cached = await page.evaluate(async () => {
      // deno-lint-ignore no-explicit-any
      const caches = (globalThis as any).caches;
      const urls: string[] = [];
      for (const key of await caches.keys()) {
        for (const req of await (await caches.open(key)).keys()) {
          urls.push(new URL(req.url).pathname);
        }
      }
      return urls;
    });
    assert.ok(cached.includes("/offline"));
    for (const url of cached) assert.ok(url === "/offline" || url.startsWith("/static/"), url);
    // Back online, 重试 brings the page itself.
    await context.setOffline(false);
    await page.getByRole("link", { name: "重试" }).click();
    await page.getByText("交易记录", { exact: true }).first().waitFor();
    assert.ok(page.url().endsWith("/wallet/transactions"));
  },
);

journey("付款码 on Regular 3G: the QR is visible within 1.5 s of a cold load", {}, async ({
  page,
  context,
  server,
}) => {
  await signIn(page, server.url);
  // A cold cache and Chrome DevTools' "Regular 3G" (750 kb/s down, 250 kb/s up, 100 ms RTT).
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.clearBrowserCache");
  await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
  await cdp.send("Network.setBypassServiceWorker", { bypass: true });
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false,
    latency: 100,
    downloadThroughput: (750 * 1024) / 8,
    uploadThroughput: (250 * 1024) / 8,
  });
  const started = Date.now();
  await page.goto(server.url("/pay/code"), { waitUntil: "commit" });
  await page.getByRole("img", { name: "付款二维码" }).waitFor();
  // Shown as designed, not only in the DOM: the stylesheet has been applied.
  await page.waitForFunction(
    () => {
      // deno-lint-ignore no-explicit-any
      const g = globalThis as any;
      const card = g.document.getElementById("paycode-card");
      return card && g.getComputedStyle(card).borderTopLeftRadius === "12px";
    },
    undefined,
    { polling: 20 },
  );
  const ms = Date.now() - started;
  console.log(`付款码 QR visible after ${ms} ms on Regular 3G`);
  assert.ok(ms <= 1500, `the QR took ${ms} ms`);
});
