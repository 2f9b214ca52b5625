/**
 * Students' pages as good as WeChat Pay's own (issue 16), on a phone in WeChat:
 *
 * - every student page passes axe-core with no serious or critical violation, has one h1, tap
 *   targets of at least 44 px, and the bottom bar where it is not a one-off step; dark mode keeps
 *   the codes on white; /favicon.ico exists; a 320×568 phone shows home's main actions unscrolled;
 * - 付款码: a Code128 barcode above the QR, digits behind 查看数字, the payment source, and a code
 *   that greys out while the network is gone (on a phone without a 离线付款码 device) and comes
 *   back by itself;
 * - forms: the button is busy and disabled once submitted, 充值 shows its amount and the new
 *   balance, 挂失 asks in an in-page dialog.
 */
import assert from "node:assert/strict";
import { journey, type Page } from "./_support.ts";
import type { Locator } from "playwright-core";
import { acceptConfirm, assertAccessible, checkPage } from "./_ui.ts";

const PHONE = "13800000001";
const PASSWORD = "Demo12345";

async function signIn(page: Page, url: (p: string) => string): Promise<void> {
  await page.goto(url("/login"));
  await page.getByLabel("手机号").fill(PHONE);
  await page.getByLabel("登录密码").fill(PASSWORD);
  await page.getByRole("button", { name: "登录", exact: true }).click();
  await page.getByRole("heading", { name: "智校园" }).waitFor();
}

/** Holds every POST to `pattern` until `release()`; `posts()` counts them. */
async function holdPosts(
  page: Page,
  pattern: string,
): Promise<{ release(): void; posts(): number }> {
  let posts = 0;
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  await page.route(pattern, async (route) => {
    if (route.request().method() !== "POST") return route.continue();
    posts++;
    await held;
    await route.continue();
  });
  return { release: () => release(), posts: () => posts };
}

/**
 * Two taps on a submit button from inside the page while its post is held, and what the page
 * shows 350 ms after the first (playwright's own click and locators would wait for the held
 * navigation).
 */
function tapTwice(button: Locator): Promise<Record<string, unknown>> {
  return button.evaluate((el) =>
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
}

journey("student pages: axe, one h1, 44 px targets, bottom bar, dark mode, favicon", {
  server: { env: { METER_SIM_DELAY_MS: "300" } },
}, async ({
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
    ["/offline", false],
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

  // The pages reached only by doing something: 测试支付 is a one-off step (no bottom bar); the
  // results of 充值, 电费充值 and 冷水充值 are not (the bar takes the student on).
  const reached: Array<[string, boolean]> = [];
  const reach = async (label: string, tabbar: boolean) => {
    await checkPage(page, label, tabbar);
    reached.push([new URL(page.url()).pathname, tabbar]);
  };
  await page.goto(url("/wallet/recharge"));
  await page.getByLabel("输入金额").fill("50");
  await page.getByRole("radio", { name: /测试支付/ }).check();
  await page.getByRole("button", { name: "充值", exact: true }).click();
  await page.getByText("测试支付 · 沙箱环境，不会真实扣款").waitFor();
  await reach("测试支付", false);
  await page.getByRole("button", { name: "确认支付" }).click();
  await page.getByRole("heading", { name: "充值成功" }).waitFor();
  await reach("充值结果", true);

  await page.goto(url("/billing/room?next=/billing/electricity"));
  await page.getByLabel("楼栋").selectOption({ label: "2号楼" });
  await page.getByLabel("房间").selectOption({ label: "203" });
  await page.getByRole("button", { name: "确认" }).click();
  await page.getByRole("heading", { name: "电费充值" }).waitFor();
  await reach("电费充值 with a room", true);
  await page.getByLabel("输入金额").fill("20");
  await page.getByRole("button", { name: "确认" }).click();
  await page.getByRole("heading", { name: "电费充值成功" }).waitFor();
  await reach("电费充值结果", true);
  await page.goto(url("/billing/water"));
  await page.getByLabel("输入金额").fill("7.50");
  await page.getByRole("button", { name: "确认" }).click();
  await page.getByRole("heading", { name: "冷水充值成功" }).waitFor();
  await reach("冷水充值结果", true);

  // 付款码 frozen by the student: its own page, with the bar; then unfrozen again.
  const setFrozen = async (frozen: boolean) => {
    await page.goto(url("/pay/settings"));
    await page.getByRole("checkbox", { name: "冻结付款码" }).setChecked(frozen);
    await page.getByRole("button", { name: "保存" }).click();
    await page.getByText("已保存").waitFor();
  };
  await setFrozen(true);
  await page.goto(url("/pay/code"));
  await page.getByRole("heading", { name: "付款码已冻结" }).waitFor();
  await checkPage(page, "付款码已冻结", true);
  await page.emulateMedia({ colorScheme: "dark" });
  await assertAccessible(page, "付款码已冻结 (dark)");
  await page.emulateMedia({ colorScheme: "light" });
  await setFrozen(false);

  // Dark mode: the pages stay readable; the codes stay on white.
  await page.emulateMedia({ colorScheme: "dark" });
  for (const [path] of [...pages, ...reached, ["/no-such-page"]]) {
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

  // A student without a card: 余额, 交易记录, 消费统计 and 付款码 say where to bind one, with the bar.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(url("/me"));
  await page.getByRole("button", { name: "退出登录" }).click();
  await page.getByRole("link", { name: "立即注册" }).click();
  await page.getByLabel("手机号").fill("13712345609");
  await page.getByLabel("登录密码").fill("Xue2025abc");
  await page.getByLabel("学校").selectOption({ index: 1 });
  await page.getByRole("button", { name: "注册", exact: true }).click();
  await page.getByRole("heading", { name: "智校园" }).waitFor();
  for (const path of ["/wallet", "/wallet/transactions", "/wallet/stats", "/pay/code"]) {
    await page.goto(url(path));
    await page.getByRole("heading", { name: "尚未绑定一卡通账号" }).waitFor();
    await checkPage(page, `${path} without a card`, true);
  }
  await page.emulateMedia({ colorScheme: "dark" });
  await assertAccessible(page, "no card (dark)");
  await shot("no-card-dark");
});

journey("付款码: barcode above the QR, 查看数字, payment source, offline and back", {}, async ({
  page,
  context,
  server,
  shot,
}) => {
  // A phone without a 离线付款码 device (its check-in fails): offline, the code greys out as it
  // always did (e2e/offline_code_test.ts has the phone with a device).
  await page.route("**/pay/devices", (route) => route.abort());
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

  // A tap anywhere on a field's row focuses its input, as in WeUI: on the row's left edge and on
  // its label, not only on the input itself.
  const amountRow = page.locator(".cell--field", { has: page.getByLabel("输入金额") });
  const row = (await amountRow.boundingBox())!;
  for (const x of [row.x + 4, row.x + 40]) {
    await page.locator("h1").click();
    await page.mouse.click(x, row.y + row.height / 2);
    assert.equal(
      await page.evaluate(() =>
        // deno-lint-ignore no-explicit-any
        ((globalThis as any).document.activeElement as { id?: string })?.id
      ),
      "f-amount",
      `a tap at x=${Math.round(x - row.x)} of the row focuses 输入金额`,
    );
  }

  await page.getByLabel("输入金额").fill("50");
  const button = page.getByRole("button", { name: "充值", exact: true });
  assert.equal((await button.textContent())?.trim(), "充值 ¥50.00");
  await page.getByRole("radio", { name: /测试支付/ }).check();

  // Hold the post: the button is busy and disabled, a 加载中 toast shows, a second tap is lost.
  const held = await holdPosts(page, "**/wallet/recharge");
  assert.deepEqual(await tapTwice(button), {
    disabled: true,
    busy: "true",
    loading: true,
    toast: "加载中",
  });
  held.release();
  await page.getByText("测试支付 · 沙箱环境，不会真实扣款").waitFor();
  assert.equal(held.posts(), 1, "one post for two taps");
  await page.getByRole("button", { name: "确认支付" }).click();
  await page.getByRole("heading", { name: "充值成功" }).waitFor();
  await page.getByText("充值后余额 ¥250.00").waitFor();
  await assertAccessible(page, "充值成功");
  await shot("topup-success");

  // 电费充值 is busy the same way: one payment for two taps.
  await page.goto(server.url("/billing/room?next=/billing/electricity"));
  await page.getByLabel("楼栋").selectOption({ label: "1号楼" });
  await page.getByLabel("房间").selectOption({ label: "101" });
  await page.getByRole("button", { name: "确认" }).click();
  await page.getByRole("heading", { name: "电费充值" }).waitFor();
  await page.getByLabel("输入金额").fill("20");
  const pay = await holdPosts(page, "**/billing/electricity");
  const seen = await tapTwice(page.getByRole("button", { name: "确认" }));
  assert.deepEqual(
    { disabled: seen.disabled, busy: seen.busy, toast: seen.toast },
    { disabled: true, busy: "true", toast: "加载中" },
  );
  pay.release();
  await page.getByRole("heading", { name: "电费充值成功" }).waitFor();
  assert.equal(pay.posts(), 1, "one payment for two taps");
  await page.goto(server.url("/wallet"));
  await page.locator(".hero__amount", { hasText: /^\s*230\.00\s*$/ }).waitFor();

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
    // Which worker script each page registers.
    await page.addInitScript(() => {
      // deno-lint-ignore no-explicit-any
      const g = globalThis as any;
      const sw = g.navigator.serviceWorker;
      if (!sw) return;
      const register = sw.register.bind(sw);
      g.__swScripts = [];
      sw.register = (script: string, options?: unknown) => {
        g.__swScripts.push(String(script));
        return register(script, options);
      };
    });
    const registered = async () => {
      await page.waitForFunction(() =>
        // deno-lint-ignore no-explicit-any
        (globalThis as any).__swScripts?.length > 0
      );
      // deno-lint-ignore no-explicit-any
      return await page.evaluate(() => (globalThis as any).__swScripts[0] as string);
    };
    await signIn(page, server.url);
    await page.goto(server.url("/wallet"));
    await page.evaluate(() =>
      // deno-lint-ignore no-explicit-any
      (globalThis as any).navigator.serviceWorker.ready.then(() => true)
    );
    // One worker version for every page: pages with scripts of their own (充值, 电费充值, 付款码)
    // register the same one. A version per page swapped workers on every other navigation, and a
    // navigation the old worker was answering could hang (the flaky 确认支付 in billing_test.ts).
    const version = await registered();
    assert.match(version, /^\/sw\.js\?v=\w+$/);
    for (const path of ["/wallet/recharge", "/pay/code", "/billing/electricity", "/"]) {
      await page.goto(server.url(path));
      assert.equal(await registered(), version, `${path} registers the shell's worker`);
    }
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
      // 付款码 comes back as the 离线付款码 shell (its code is the phone's own); the rest as 网络不可用.
      const heading = path === "/pay/code" ? "离线付款码" : "网络不可用";
      await page.getByRole("heading", { name: heading }).waitFor();
      assert.doesNotMatch(
        await page.textContent("body") ?? "",
        path === "/pay/code" ? /余额/ : /¥|余额（元）/,
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
    assert.ok(cached.includes("/pay/code/offline"));
    for (const url of cached) {
      assert.ok(
        url === "/offline" || url === "/pay/code/offline" || url.startsWith("/static/"),
        url,
      );
    }
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

journey("智校园, 交易记录 and 消费统计: tiles, reminder strip, months, charts, 充值 detail", {
  server: { env: { METER_SIM_DELAY_MS: "300" } },
}, async ({ page, server, shot }) => {
  const url = server.url;
  await signIn(page, url);

  // ---- 智校园: the wallet card on top, then six tiles in two rows of three.
  const tiles = page.getByRole("navigation", { name: "功能" }).getByRole("link");
  assert.equal(await tiles.count(), 6);
  const walletBottom = await page.locator(".wallet-card").evaluate((el) =>
    el.getBoundingClientRect().bottom
  );
  const boxes = [];
  for (let i = 0; i < 6; i++) boxes.push((await tiles.nth(i).boundingBox())!);
  for (const b of boxes) assert.ok(b.y >= walletBottom, "the tiles sit below the wallet card");
  assert.deepEqual(boxes.map((b) => Math.round(b.y)), [
    ...Array(3).fill(Math.round(boxes[0].y)),
    ...Array(3).fill(Math.round(boxes[3].y)),
  ], "two rows of three");
  assert.ok(boxes[3].y > boxes[0].y);
  const tileTargets: Array<[string, string]> = [
    ["电费充值", "电费充值"],
    ["冷水充值", "冷水充值"],
    ["交易记录", "交易记录"],
    ["消费统计", "消费统计"],
    ["一卡通安全中心", "一卡通安全中心"],
    ["付款码设置", "付款码设置"],
  ];
  for (const [i, [name, heading]] of tileTargets.entries()) {
    assert.equal(
      await tiles.nth(i).evaluate((el) => el.textContent?.replace(/^\s*\S/, "").trim()),
      name,
      `tile ${i + 1}`,
    );
    await tiles.nth(i).click();
    await page.getByRole("heading", { level: 1, name: heading, exact: true }).waitFor();
    await page.goBack();
    await page.getByRole("heading", { name: "智校园" }).waitFor();
  }

  // ---- The reminders in one strip; × closes it, and it stays closed for this session.
  const reminder = "绑定成功后请立即修改一卡通密码、绑定邮箱！";
  await page.getByRole("status").filter({ hasText: reminder }).waitFor();
  const strip = page.locator("[data-dismiss-key]", { hasText: reminder });
  await strip.getByText("一卡通密码仍为默认密码，去修改").waitFor();
  await strip.getByText("尚未绑定邮箱，去绑定").waitFor();
  await shot("home-strip");
  await strip.getByRole("button", { name: "关闭提醒" }).click();
  assert.equal(await strip.isVisible(), false);
  await page.goto(url("/wallet"));
  await page.getByRole("navigation", { name: "主导航" }).getByRole("link", { name: "智校园" })
    .click();
  await page.getByRole("heading", { name: "智校园" }).waitFor();
  assert.equal(await strip.count(), 1, "still on the page");
  assert.equal(await strip.isVisible(), false, "closed on the way back");
  await page.reload();
  assert.equal(await strip.isVisible(), false, "closed after a reload");
  // A reminder that changes is a new one: with the card password changed, the email one shows.
  await page.goto(url("/security/password"));
  await page.getByLabel("原密码").fill("15123X");
  await page.getByLabel("新密码").fill("258036");
  await page.getByRole("button", { name: "确认" }).click();
  await page.getByText("一卡通密码修改成功").waitFor();
  await page.goto(url("/"));
  await strip.getByText("尚未绑定邮箱，去绑定").waitFor();
  assert.equal(await strip.getByText("一卡通密码仍为默认密码，去修改").count(), 0);

  // ---- Money to look at: 充值 ¥50 (its order number noted), 电费 ¥20, 冷水 ¥7.50.
  await page.goto(url("/wallet/recharge"));
  await page.getByLabel("输入金额").fill("50");
  await page.getByRole("radio", { name: /测试支付/ }).check();
  await page.getByRole("button", { name: "充值", exact: true }).click();
  await page.getByRole("button", { name: "确认支付" }).click();
  await page.getByRole("heading", { name: "充值成功" }).waitFor();
  const orderNo = /订单号 (YXT\d+)/.exec(await page.textContent("body") ?? "")?.[1];
  assert.ok(orderNo, "the result shows the order number");
  await page.goto(url("/billing/room?next=/billing/electricity"));
  await page.getByLabel("楼栋").selectOption({ label: "2号楼" });
  await page.getByLabel("房间").selectOption({ label: "203" });
  await page.getByRole("button", { name: "确认" }).click();
  await page.getByLabel("输入金额").fill("20");
  await page.getByRole("button", { name: "确认" }).click();
  await page.getByRole("heading", { name: "电费充值成功" }).waitFor();
  await page.goto(url("/billing/water"));
  await page.getByLabel("输入金额").fill("7.50");
  await page.getByRole("button", { name: "确认" }).click();
  await page.getByRole("heading", { name: "冷水充值成功" }).waitFor();

  // ---- 交易记录: grouped by month, each with its 支出 and 收入; category icons.
  await page.goto(url("/wallet/transactions"));
  const groups = page.locator(".tx-month");
  assert.equal(await groups.count(), 1, "everything happened this month");
  const monthTitle = (await groups.getByRole("heading", { level: 2 }).textContent())!.trim();
  const m = /^(\d{4})年(\d{1,2})月$/.exec(monthTitle);
  assert.ok(m, monthTitle);
  const thisMonth = `${m[1]}-${m[2].padStart(2, "0")}`;
  // Demo cardholders open with ¥200.00 (调账); then +50 in, 20 + 7.50 out.
  assert.equal(
    (await groups.locator(".tx-month__sum").textContent())?.trim(),
    "支出 ¥27.50 · 收入 ¥250.00",
  );
  assert.equal(await page.locator(".tx").count(), 4);
  for (const [text, icon] of [["充值", "topup"], ["电费", "electricity"], ["冷水", "water"]]) {
    const row = page.locator(".tx", { hasText: text }).first();
    assert.equal(await row.locator(`.tx__icon--${icon}`).count(), 1, `${text}: its icon`);
  }
  await shot("transactions");

  // The month picker: another month shows its own (none), the chosen month comes back.
  const picker = page.getByLabel("月份");
  assert.equal(await picker.getAttribute("type"), "month");
  assert.equal(await picker.getAttribute("max"), thisMonth);
  const [y, mo] = thisMonth.split("-").map(Number);
  const lastMonth = mo === 1 ? `${y - 1}-12` : `${y}-${String(mo - 1).padStart(2, "0")}`;
  await picker.fill(lastMonth);
  await page.waitForURL((u) => u.searchParams.get("month") === lastMonth);
  await page.getByText("暂无交易记录").waitFor();
  assert.equal(await page.locator(".tx").count(), 0);
  await checkPage(page, "交易记录 of last month", true);
  await page.getByLabel("月份").fill(thisMonth);
  await page.waitForURL((u) => u.searchParams.get("month") === thisMonth);
  assert.equal(await page.locator(".tx").count(), 4);
  await page.getByRole("link", { name: "全部月份" }).click();
  await page.waitForURL((u) => !u.searchParams.has("month"));

  // ---- A 充值's detail: its channel and our order number, no 商户 — / 终端 —.
  await page.locator(".tx", { hasText: /充值[\s\S]*\+50\.00/ }).getByRole("link").click();
  await page.waitForURL(/\/wallet\/transactions\/\d+$/);
  const cell = (label: string) =>
    page.locator(".cell", { has: page.locator(".cell__label", { hasText: label }) })
      .locator(".cell__ft");
  assert.equal((await cell("支付渠道").textContent())?.trim(), "测试支付（沙箱）");
  assert.equal((await cell("订单号").textContent())?.trim(), orderNo);
  assert.equal(await cell("商户").count(), 0);
  assert.equal(await cell("终端").count(), 0);
  await checkPage(page, "充值 detail", true);
  await shot("topup-detail");

  // ---- 消费统计: two server-drawn SVG charts, each a picture of the table behind it.
  await page.goto(url("/wallet/stats"));
  const charts = page.locator("svg.chart");
  assert.equal(await charts.count(), 2, "by month and by category");
  for (let i = 0; i < 2; i++) {
    assert.equal(await charts.nth(i).getAttribute("aria-hidden"), "true");
  }
  // By month: six bars, this month's the only one with spending.
  const monthBars = charts.nth(0).locator("rect");
  assert.equal(await monthBars.count(), 6);
  const heights = await monthBars.evaluateAll((els) =>
    els.map((e) => Number(e.getAttribute("height")))
  );
  assert.deepEqual(heights.map((h) => h > 0), [false, false, false, false, false, true]);
  const monthTable = page.getByRole("table", { name: /每月消费/ });
  assert.equal(await monthTable.locator("tbody tr").count(), 6);
  await monthTable.getByRole("row", { name: /27\.50/ }).waitFor();
  // By category: one bar each, largest first and longest, with its amount.
  const catChart = charts.nth(1);
  const bars = catChart.locator("rect");
  assert.deepEqual(
    await bars.evaluateAll((els) => els.map((e) => e.getAttribute("class"))),
    ["chart__bar chart__bar--electricity", "chart__bar chart__bar--water"],
  );
  const widths = await bars.evaluateAll((els) => els.map((e) => Number(e.getAttribute("width"))));
  assert.ok(widths[0] > widths[1] && widths[1] > 0, `bar lengths ${widths}`);
  assert.equal(
    Math.round(widths[1] / widths[0] * 100),
    Math.round(750 / 2000 * 100),
    "lengths in proportion to the amounts",
  );
  assert.deepEqual(
    (await catChart.locator("text").allTextContents()).map((t) => t.trim()),
    ["电费", "20.00", "冷水", "7.50"],
  );
  const catTable = page.getByRole("table", { name: "按类别的消费" });
  await catTable.getByRole("row", { name: /电费\s*¥20\.00\s*73%/ }).waitFor();
  await catTable.getByRole("row", { name: /冷水\s*¥7\.50\s*27%/ }).waitFor();
  // No chart library: the page runs only the layout's own scripts.
  const scripts = await page.evaluate(() =>
    // deno-lint-ignore no-explicit-any
    [...(globalThis as any).document.scripts].map((s: { src: string }) => new URL(s.src).pathname)
  );
  assert.deepEqual(scripts, ["/static/vendor/htmx.min.js", "/static/app.js"]);
  await checkPage(page, "消费统计", true);
  await page.emulateMedia({ colorScheme: "dark" });
  await assertAccessible(page, "消费统计 (dark)");
  await shot("stats-dark");
  await page.emulateMedia({ colorScheme: "light" });
  await shot("stats");
});
