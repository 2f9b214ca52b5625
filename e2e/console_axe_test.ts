/**
 * axe-core on every console page (issue 19): no serious or critical violation anywhere a staff
 * member can go.
 *
 * The list of pages is not kept by hand: it is every GET route under /admin that `main.ts`
 * composes (a new page is in it the day it is added). The demo admin (every role) crawls the
 * console from its home, following every link of every page, after making the records the detail
 * pages show (a settlement statement, a graduation batch, a card import's preview, a
 * reconciliation); the test then fails on any route the crawl did not reach, besides the few
 * named below with their reason. Each single role then signs in and checks the pages of its own
 * sidebar (what a member of that office sees, with that office's controls). Every problem is
 * reported at the end with the rule, the page and the node.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createApp } from "../main.ts";
import type { Db } from "../modules/platform/database.ts";
import { testConfig } from "../modules/platform/testing.ts";
import { routeRegex, routesOf } from "../modules/testkit/security_suite.ts";
import { ALL_ROLES, type Role, ROLE_LABELS } from "../modules/staff/mod.ts";
import { axeProblems } from "./_ui.ts";
import {
  DESK,
  journey,
  type Page,
  type RunningServer,
  signInDemoAdmin,
  signInFirstTime,
  staffMember,
} from "./_support.ts";

/** GET routes under /admin that are not pages of their own, and why. */
const NOT_PAGES: Array<[RegExp, string]> = [
  [/\.(csv|xlsx)$/, "a file download"],
  [/^\/admin\/login$/, "checked signed out, at the end"],
  [/^\/admin\/closeout\/:id\/progress$/, "the batch page's live fragment, checked inside it"],
  [
    /^\/admin\/cards\/:id[^/]*\/money$/,
    "the card page's money panel, loaded into it, checked there",
  ],
  [
    /^\/admin\/my-merchant\/statement$/,
    "a merchant operator's print of a statement: finance's print view (settlements/:id/print)",
  ],
];

/** The console's pages: every GET route under /admin, as a pattern and its matcher. */
function consolePages(): Array<{ path: string; re: RegExp }> {
  // Only the routes are read: composing the app touches no database.
  const app = createApp({ db: {} as Db, config: testConfig(), onShutdown: () => {} });
  return routesOf(app)
    .filter((r) => r.method === "GET" && r.path.startsWith("/admin"))
    .filter((r) => !NOT_PAGES.some(([re]) => re.test(r.path)))
    .map((r) => ({ path: r.path, re: routeRegex(r.path) }));
}

/** Links to follow: the console's own pages, not downloads. */
function followable(href: string): boolean {
  return href.startsWith("/admin") && !/\.(csv|xlsx)(\?|$)|[?&]export=/.test(href) &&
    href !== "/admin/logout";
}

/** Same-origin links of the page, as paths with their query (no fragment). */
async function linksOf(page: Page): Promise<string[]> {
  // deno-lint-ignore no-explicit-any
  return await page.locator("a[href]:not([download])").evaluateAll((as: any[]) =>
    as.map((a) => {
      const u = new URL(a.href);
      return u.origin === a.ownerDocument.location.origin ? u.pathname + u.search : "";
    })
  );
}

/** A crawl of the console that runs axe on each page once, collecting every problem. */
class Crawl {
  readonly problems: string[] = [];
  readonly reached = new Set<string>();
  private readonly seen = new Set<string>();
  get checked(): number {
    return this.seen.size;
  }
  private readonly perShape = new Map<string, number>();

  constructor(
    private readonly page: Page,
    private readonly server: RunningServer,
    private readonly pages: Array<{ path: string; re: RegExp }>,
    private readonly who: string,
  ) {}

  /** Runs axe on `path` unless seen; returns the page's links. */
  async check(path: string): Promise<string[]> {
    if (this.seen.has(path)) return [];
    this.seen.add(path);
    const res = await this.page.goto(this.server.url(path));
    // htmx has begun the page's own loads by then (hx-trigger="load"): wait for them to land.
    await this.page.waitForFunction(() =>
      !(globalThis as unknown as { document: { querySelector(s: string): unknown } }).document
        .querySelector(".htmx-request, .htmx-swapping, .htmx-settling")
    );
    const landed = new URL(this.page.url());
    if (!res || res.status() >= 400) {
      this.problems.push(`${this.who} ${path}: answered ${res?.status()}`);
      return [];
    }
    const route = this.pages.find((p) => p.re.test(landed.pathname));
    if (route) this.reached.add(route.path);
    for (const p of await axeProblems(this.page)) {
      this.problems.push(`${this.who} ${landed.pathname}${landed.search}: ${p}`);
    }
    return await linksOf(this.page);
  }

  /**
   * Follows links from `start`: a route's pages are visited up to three times per set of query
   * keys (the first rows of a list, a filter, a second page), so a long list is not walked whole.
   */
  async from(start: string[]): Promise<void> {
    const queue = [...start];
    while (queue.length) {
      const path = queue.shift()!;
      if (!followable(path) || this.seen.has(path)) continue;
      const u = new URL(path, "http://x");
      const route = this.pages.find((p) => p.re.test(u.pathname))?.path ?? u.pathname;
      const shape = `${route}?${[...u.searchParams.keys()].sort().join("&")}`;
      const n = this.perShape.get(shape) ?? 0;
      if (n >= 1) continue;
      this.perShape.set(shape, n + 1);
      queue.push(...await this.check(path));
    }
  }
}

/** Makes a staff member with one role (as the admin) and signs them in on a page of their own. */
function memberOf(admin: Page, server: RunningServer, role: Role): Promise<Page> {
  const label = ROLE_LABELS[role];
  return staffMember(admin, server, { username: `axe_${role}`, name: `${label}职员`, role: label });
}

/** Opens a sign-in for the demo outsourced window's operator (as the admin) and signs it in. */
async function operatorOf(admin: Page, server: RunningServer): Promise<Page> {
  await admin.goto(server.url("/admin/merchants"));
  await admin.getByRole("row", { name: /二食堂风味窗口（外包）/ })
    .getByRole("link", { name: "编辑 / 终端" }).click();
  await admin.getByLabel("经营者用户名").fill("axe_operator");
  await admin.getByLabel("经营者姓名").fill("外包经营者");
  await admin.getByLabel("初始密码").fill("Start12345");
  await admin.getByRole("button", { name: "开设经营者账号" }).click();
  await admin.getByRole("cell", { name: "axe_operator", exact: true }).waitFor();
  return await signInFirstTime(admin, server, "axe_operator");
}

/** The records the detail pages show, made through the console as a clerk would. */
async function makeRecords(page: Page, server: RunningServer): Promise<string[]> {
  const made: string[] = [];
  const here = () => made.push(new URL(page.url()).pathname);
  // A settlement statement: the demo's outsourced window has last month's takings.
  await page.goto(server.url("/admin/finance/settlements"));
  await page.getByRole("button", { name: "编制已结束周期的结算单" }).click();
  await page.getByText(/已编制 \d+ 张结算单/).waitFor();
  here();

  // A graduation batch, left as a draft (its preview).
  await page.goto(server.url("/admin/closeout/new"));
  await page.getByLabel("批次名称").fill("无障碍检查批次");
  await page.getByLabel(/学号前缀/).fill("202401");
  const today = await page.getByLabel(/离校日期/).getAttribute("min");
  await page.getByLabel(/离校日期/).fill(today!);
  await page.getByRole("button", { name: "建立批次并预览" }).click();
  await page.waitForURL(/\/admin\/closeout\/\d+\?done=created$/);
  here();

  // A card import's preview, with one good row and one refused.
  const template = await page.request.get(server.url("/admin/cards/import/template.csv"));
  const header = (await template.text()).replace(/^\uFEFF/, "").split(/\r?\n/)[0];
  const csv = `${header}\r\n2026200001,无障碍,530111200608084519,9500000001,学生\r\n` +
    `2026200002,核对,53011120060808451X,9500000002,学生\r\n`;
  await page.goto(server.url("/admin/cards/import"));
  await page.locator('input[type="file"]').setInputFiles({
    name: "名单.csv",
    mimeType: "text/csv",
    buffer: Buffer.from(csv),
  });
  await page.getByRole("button", { name: "上传并预览" }).click();
  await page.waitForURL(/\/admin\/cards\/import\/\d+$/);
  here();

  // A reconciliation of today's test payments.
  await page.goto(server.url("/admin/finance/reconcile"));
  const href = await page.getByRole("link", { name: "下载今日测试支付对账单" }).getAttribute(
    "href",
  );
  const statement = await page.request.get(server.url(href!));
  await page.locator('input[type="file"]').setInputFiles({
    name: "对账单.csv",
    mimeType: "text/csv",
    buffer: Buffer.from(await statement.body()),
  });
  // No test payment today: the day is named.
  const day = new URL(href!, server.baseUrl).searchParams.get("date")!;
  await page.getByLabel(/对账起始日期/).fill(day);
  await page.getByLabel(/对账截止日期/).fill(day);
  await page.getByRole("button", { name: "开始对账" }).click();
  await page.waitForURL(/\/admin\/finance\/reconcile\/\d+$/);
  here();
  return made;
}

journey(
  "console: axe finds no serious or critical problem on any console page, for every role",
  {},
  async ({ page, server }) => {
    const pages = consolePages();
    assert.ok(pages.length >= 40, `the console's routes (${pages.length})`);
    await page.setViewportSize(DESK);
    await signInDemoAdmin(page, server);
    const made = await makeRecords(page, server);

    const admin = new Crawl(page, server, pages, "管理员（全部角色）");
    // The crawl starts at the home and its sidebar; a few filtered views no link leads to are
    // added (a search's results, a report by terminal).
    await admin.from([
      "/admin",
      "/admin/cards?q=2024",
      "/admin/accounts?phone=138",
      "/admin/finance/reports?from=2026-11-01&to=2026-11-30&by=terminal",
      ...made,
    ]);
    console.log(`axe: ${admin.checked} pages as the admin`);
    // 本商户 is the merchant operator's alone: it signs in and crawls its console.
    const operator = await operatorOf(page, server);
    const portal = new Crawl(operator, server, pages, "商户经营者");
    await portal.from(["/admin"]);
    for (const p of portal.reached) admin.reached.add(p);
    await operator.context().close();
    const missed = pages.filter((p) => !admin.reached.has(p.path)).map((p) => p.path);

    const problems = [...admin.problems, ...portal.problems];
    for (const role of ALL_ROLES) {
      const own = await memberOf(page, server, role);
      const crawl = new Crawl(own, server, pages, ROLE_LABELS[role]);
      const sidebar = await crawl.check("/admin");
      const nav = await own.getByRole("navigation", { name: "管理后台导航" }).getByRole("link")
        // deno-lint-ignore no-explicit-any
        .evaluateAll((as: any[]) => as.map((a) => a.getAttribute("href") as string));
      assert.ok(nav.length > 0 && sidebar.length > 0, `${role}: a sidebar`);
      for (const href of nav) if (followable(href)) await crawl.check(href);
      problems.push(...crawl.problems);
      await own.context().close();
    }

    await page.context().clearCookies();
    const signIn = new Crawl(page, server, pages, "未登录");
    await signIn.check("/admin/login");
    problems.push(...signIn.problems);

    assert.deepEqual(missed, [], "console pages the crawl never reached (link them, or seed one)");
    assert.deepEqual(problems, [], `axe on the console:\n${problems.join("\n")}`);
  },
);
