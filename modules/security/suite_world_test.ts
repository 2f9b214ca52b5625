/**
 * The security suite, part three (issue 7): a seeded world in which every stored human text
 * carries markup, crawled through its own links and forms, so every page with an id is opened with
 * a real id. Every page renders the markup escaped under the CSP; one student cannot open, pay,
 * cancel or watch anything of another's by putting its id into a URL. Routes come from the app
 * `main.ts` composes: a new page with an id is covered (or fails as unreachable) without editing
 * this file.
 */
import assert from "node:assert/strict";
import { sql } from "../platform/testing.ts";
import { getBalance } from "../wallet/mod.ts";
import {
  assertSafeResponse,
  crawl,
  type CrawledForm,
  type CrawledPage,
  isParameterised,
  PAYLOAD,
  type RouteInfo,
  routeOfUrl,
  routesOf,
  seededWorld,
  type World,
} from "../testkit/mod.ts";

/** Routes with a parameter that are not pages of ours: static files and gateway callbacks. */
const NOT_PAGES = [/^\/static\//, /^\/pay\/notify\//];

/**
 * Routes no link of the sandbox world can reach: they exist only with the WeChat gateway
 * configured (topup's wechat_test drives them). The cross-student test still tries B's ids there.
 */
const WECHAT_ONLY = [
  /^\/wallet\/recharge\/orders\/:orderNo\/pay$/,
  /^\/topup\/proxy\/orders\/:orderNo\/pay$/,
];

/**
 * Routes whose id is made to be passed on: a student's 代充 link opens 代充 for anyone who has it
 * (it shows only the masked 张*, school and 学号; the markers check still applies).
 */
const SHARED = [/^\/topup\/proxy\/c\/:token$/];

/** Escaped forms of the stored payload: the markup arrived in the page, as text. */
const ESCAPED = /&lt;script&gt;alert\(7\)|&lt;svg onload=alert\(7\)|&lt;img src=x onerror/;

const isAdmin = (path: string) => path === "/admin" || path.startsWith("/admin/");
const startsOf = (routes: RouteInfo[], admin: boolean) =>
  routes.filter((r) => r.method === "GET" && !isParameterised(r) && isAdmin(r.path) === admin)
    .map((r) => r.path);

async function crawlAdmin(w: World, c: World["admin"], routes: RouteInfo[]) {
  return await crawl(c, routes, [...w.adminVisited, ...startsOf(routes, true)], {
    include: isAdmin,
    check: assertSafeResponse,
  });
}

async function crawlStudent(who: World["a"], routes: RouteInfo[]) {
  return await crawl(who.c, routes, [...startsOf(routes, false), ...who.visited], {
    include: (p) => !isAdmin(p) && !NOT_PAGES.some((re) => re.test(p)),
    check: assertSafeResponse,
  });
}

/** Parameterised routes (method and pattern) that no crawled page or form reached. */
function unreached(
  routes: RouteInfo[],
  pages: CrawledPage[],
  forms: CrawledForm[],
  which: (r: RouteInfo) => boolean,
): string[] {
  const hit = new Set<string>();
  for (const p of pages) {
    const r = p.status === 200 ? routeOfUrl(routes, "GET", p.url) : null;
    if (r) hit.add(`GET ${r.path}`);
  }
  for (const f of forms) {
    const r = routeOfUrl(routes, "POST", f.action);
    if (r) hit.add(`POST ${r.path}`);
  }
  return routes.filter((r) => isParameterised(r) && which(r) && !hit.has(`${r.method} ${r.path}`))
    .filter((r) => ![...NOT_PAGES, ...WECHAT_ONLY].some((re) => re.test(r.path)))
    .map((r) => `${r.method} ${r.path}`);
}

Deno.test("every page of a seeded world, ids and all, shows stored markup escaped under the CSP", async () => {
  const w = await seededWorld();
  try {
    for (
      const column of [
        "card_accounts.name",
        "merchants.name",
        "terminals.name",
        "staff.name",
        "billing_buildings.name",
      ]
    ) {
      assert.ok(w.tainted.includes(column), `${column} carries no markup: ${w.tainted}`);
    }
    const routes = routesOf(w.app);
    const admin = await crawlAdmin(w, w.admin, routes);
    const b = await crawlStudent(w.b, routes);
    const pages = [...admin.pages, ...b.pages];
    // Each role alone sees other branches of the same pages (read-only views, fewer forms).
    for (const c of w.byRole.values()) await crawlAdmin(w, c, routes);
    assert.deepEqual(
      unreached(routes, pages, [], (r) => r.method === "GET"),
      [],
      "pages with an id that no link of the seeded world reaches (link them, or seed one)",
    );
    // The markup really reached the pages with ids (as text): the checks above saw it.
    const showing = new Set(
      pages.filter((p) => p.status === 200 && ESCAPED.test(p.text))
        .map((p) => routeOfUrl(routes, "GET", p.url)!.path),
    );
    for (
      const path of [
        "/admin/merchants/:id",
        "/admin/terminals/:id",
        "/admin/cards/:id{[0-9]+}",
        "/admin/accounts/:id",
        "/admin/billing/buildings/:id",
        "/admin/billing/rooms/:id",
        "/admin/cards/import/:id{[0-9]+}",
        "/admin/finance/reconcile/:id",
        "/wallet/transactions/:id",
      ]
    ) {
      assert.ok(showing.has(path), `${path} never showed the stored markup: ${[...showing]}`);
    }
  } finally {
    await w.h.close();
  }
});

Deno.test("a student cannot open, pay, cancel or watch another student's things by their ids", async () => {
  const w = await seededWorld();
  try {
    const routes = routesOf(w.app);
    const { pages, forms } = await crawlStudent(w.b, routes);
    assert.deepEqual(
      unreached(routes, pages, forms, (r) => !isAdmin(r.path)),
      [],
      "student routes with an id that B's own pages never reach (link them, or seed one)",
    );
    const code = /paycode__digits">([\d\s]+)</.exec(
      pages.find((p) => p.url === "/pay/code")?.text ?? "",
    )?.[1]?.replace(/\s+/g, "");
    assert.ok(code && /^\d{18}$/.test(code), "B's pages show no payment code");
    const markers = [...w.b.markers, code];
    // The markers are worth looking for: B's own pages show them.
    for (const m of markers) {
      assert.ok(pages.some((p) => p.text.includes(m)), `B's own pages never show ${m}`);
    }
    markers.push(w.b.phone, `${w.b.phone.slice(0, 3)}****${w.b.phone.slice(7)}`);
    // The payment code's long poll carries the code in its query: A tries it too.
    assert.ok(pages.some((p) => p.url.includes(code)), "no URL of B's carries the payment code");
    const before = await stateOfB(w);
    const leaks: string[] = [];
    const orderNo = w.b.markers.at(-1)!;
    const wechatOnly = [{ url: `/wallet/recharge/orders/${orderNo}/pay`, status: 200, text: "" }];
    for (const p of [...pages.filter((p) => p.status === 200), ...wechatOnly]) {
      const route = routeOfUrl(routes, "GET", p.url)!;
      const res = await w.a.c.get(p.url);
      const text = await res.text();
      const personal = (isParameterised(route) && !SHARED.some((re) => re.test(route.path))) ||
        markers.some((m) => p.url.includes(m));
      if (personal && res.status !== 404 && res.status !== 403) {
        leaks.push(`GET ${p.url}: ${res.status}, not 404`);
      }
      for (const m of markers) {
        if (text.includes(m)) leaks.push(`GET ${p.url}: A sees ${m}`);
      }
    }
    for (const f of forms) {
      const route = routeOfUrl(routes, "POST", f.action);
      const personal = route && isParameterised(route) ||
        markers.some((m) => f.action.includes(m));
      if (!personal) continue;
      const res = await w.a.c.post(f.action, f.fields);
      const text = await res.text();
      if (res.status !== 404 && res.status !== 403) {
        leaks.push(`POST ${f.action}: ${res.status}, not 404`);
      }
      for (const m of markers) {
        if (text.includes(m)) leaks.push(`POST ${f.action}: A sees ${m}`);
      }
    }
    assert.deepEqual(leaks, [], "A reached B's things");
    assert.deepEqual(await stateOfB(w), before, "A's requests changed B's money, room or orders");
  } finally {
    await w.h.close();
  }
});

Deno.test("markup put into every query value and every id of a URL comes back escaped", async () => {
  const w = await seededWorld();
  try {
    const routes = routesOf(w.app);
    const crawls: Array<[World["admin"], CrawledPage[]]> = [
      [w.admin, (await crawlAdmin(w, w.admin, routes)).pages],
      [w.b.c, (await crawlStudent(w.b, routes)).pages],
    ];
    let tried = 0;
    for (const [c, pages] of crawls) {
      const urls = new Set<string>();
      for (const p of pages) {
        const [path, query] = p.url.split("?");
        // Each query value in turn (search boxes, filters, next, dates, ids in queries).
        const params = new URLSearchParams(query ?? "");
        for (const key of new Set(params.keys())) {
          const q = new URLSearchParams(params);
          q.set(key, PAYLOAD);
          urls.add(`${path}?${q}`);
        }
      }
      for (const r of routes.filter((r) => r.method === "GET" && isParameterised(r))) {
        if (NOT_PAGES.some((re) => re.test(r.path)) || isAdmin(r.path) !== (c === w.admin)) {
          continue;
        }
        urls.add(r.path.replace(/:[A-Za-z_]+(\{[^}]*\})?/g, encodeURIComponent(PAYLOAD)));
      }
      for (const url of urls) {
        await assertSafeResponse(`GET ${url}`, await c.get(url));
        tried++;
      }
    }
    assert.ok(tried >= 20, `only ${tried} URLs with markup tried`);
  } finally {
    await w.h.close();
  }
});

Deno.test("markup typed into every form of every page with an id comes back escaped, then everywhere", async () => {
  const w = await seededWorld();
  try {
    const routes = routesOf(w.app);
    let submitted = 0;
    // The student first: the counter's forms include closing B's card.
    for (
      const [c, crawled] of [
        [w.b.c, await crawlStudent(w.b, routes)],
        [w.admin, await crawlAdmin(w, w.admin, routes)],
      ] as const
    ) {
      for (const f of crawled.forms) {
        const route = routeOfUrl(routes, "POST", f.action);
        if (!route || !isParameterised(route)) continue;
        const fields = { ...f.fields };
        for (const name of f.typed) fields[name] = PAYLOAD;
        const res = await c.post(f.action, fields);
        const to = res.headers.get("location");
        await assertSafeResponse(`POST ${f.action} (from ${f.page})`, res);
        if (to && res.status === 303) await assertSafeResponse(`GET ${to}`, await c.get(to));
        submitted++;
      }
    }
    assert.ok(submitted >= 10, `only ${submitted} forms with an id submitted`);
    // What the forms stored shows escaped on every page.
    await crawlAdmin(w, w.admin, routes);
    await crawlStudent(w.b, routes);
  } finally {
    await w.h.close();
  }
});

/** B's balance, room and the states of B's orders. */
async function stateOfB(w: World) {
  const balance = await getBalance(w.db, w.b.cardAccountId);
  const room = await sql<{ room_id: number }>`
    select room_id from billing_residents where account_id = ${w.b.accountId}`.execute(w.db);
  const topups = await sql<{ order_no: string; state: string }>`
    select order_no, state from topup_orders where account_id = ${w.b.accountId}
    order by order_no`.execute(w.db);
  const utility = await sql<{ order_no: string; status: string }>`
    select order_no, status from billing_purchases where account_id = ${w.b.accountId}
    order by order_no`.execute(w.db);
  return { balance, room: room.rows, topups: topups.rows, utility: utility.rows };
}
