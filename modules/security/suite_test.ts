/**
 * The security suite (issue 7): drives the whole application as `main.ts` composes it and checks
 * properties that must hold for every route, so a route added later is covered without editing
 * this file: CSRF on every state-changing route (enumerated from `app.routes`), sign-in and role
 * guards on every page, security headers and no inline script on every page, escaping of
 * markup entered into every form, redirects only to our own paths, session fixation, and the
 * brute-force lockouts.
 */
import assert from "node:assert/strict";
import { sql, TestClient } from "../platform/testing.ts";
import { ALL_ROLES, createStaff, type Role, ROLES } from "../staff/mod.ts";
import { ensureSchool, registerAccount } from "../account/mod.ts";
import { seedDemoData } from "../demo/mod.ts";
import { SIGN_IN_RULE } from "./mod.ts";
import {
  type App,
  assertOwnPath,
  assertSafeResponse,
  crawl,
  decodeEntities,
  isParameterised,
  PAYLOAD,
  type RouteInfo,
  routeOfUrl,
  routesOf,
  seededWorld,
  setup,
} from "../testkit/mod.ts";

/**
 * Paths that outside systems POST to without a browser session: the payment gateways' notify
 * callbacks. Everything else that changes state needs the CSRF token (README, ARCHITECTURE).
 */
const CSRF_EXEMPT = [/^\/pay\/notify\//];

/** Pages anyone may open without signing in. Adding a page here is a security decision. */
const PUBLIC_PAGES = [
  /^\/login$/,
  // Sign-in from the 服务号 menu: the OAuth round trip (its state is tied to this browser).
  /^\/login\/wechat(\/callback)?$/,
  // 代充: payers have no account here; a payer's order pages answer only that browser's payer.
  /^\/topup\/proxy(\/.*)?$/,
  /^\/register(\/.*)?$/,
  /^\/password\/forgot(\/.*)?$/,
  // Setting a new password after a staff reset: authorised by the signed ticket in the form.
  /^\/password\/new$/,
  /^\/healthz$/,
  // Readiness for load balancers: status words and pending migration names (not served by nginx).
  /^\/readyz$/,
  /^\/metrics$/,
  /^\/static\//,
  /^\/pay\/notify\//,
  /^\/pay\/sandbox(\/.*)?$/,
  // The browser's icon, and the service worker with its 网络不可用 page (no student data in any).
  /^\/favicon\.ico$/,
  /^\/sw\.js$/,
  /^\/offline$/,
  // What the service worker keeps for 付款码 offline: the page's frame, nothing of any student's
  // (the phone's own script fills in the code it derives).
  /^\/pay\/code\/offline$/,
];

/**
 * Who may use each staff route. Every /admin route must match an entry: a new staff page fails
 * this suite until someone decides which roles may use it.
 */
const ROLE_MATRIX: Array<{ path: RegExp; method?: "GET" | "POST"; roles: Role[] | "any" }> = [
  { path: /^\/admin\/?$/, roles: "any" },
  { path: /^\/admin\/password$/, roles: "any" },
  { path: /^\/admin\/audit$/, roles: ALL_ROLES },
  // 系统管理员: staff accounts, merchants, terminals, tariffs, the meter simulator.
  { path: /^\/admin\/staff(\/|$)/, roles: [ROLES.sysadmin] },
  { path: /^\/admin\/(merchants|terminals)(\/|$)/, roles: [ROLES.sysadmin] },
  { path: /^\/admin\/billing\/tariffs$/, method: "GET", roles: [ROLES.sysadmin, ROLES.finance] },
  { path: /^\/admin\/billing\/tariffs$/, method: "POST", roles: [ROLES.sysadmin] },
  { path: /^\/admin\/billing\/simulator(\/use|\/read)?$/, roles: [ROLES.sysadmin] },
  // 消息: the notifier's queue, its failures and retries.
  { path: /^\/admin\/notify(\/retry|\/:id\/retry)?$/, roles: [ROLES.sysadmin] },
  // 图文信息中心: login accounts and password resets, the development outbox.
  { path: /^\/admin\/accounts(\/|$)/, roles: [ROLES.infoCentre, ROLES.sysadmin] },
  { path: /^\/admin\/outbox$/, roles: [ROLES.infoCentre, ROLES.sysadmin] },
  // 一卡通中心: cards, counter operations, imports, dorm rooms and residents.
  {
    path: /^\/admin\/cards(\/:id[^/]*)?$/,
    method: "GET",
    roles: [ROLES.cardOffice, ROLES.sysadmin, ROLES.infoCentre],
  },
  {
    path:
      /^\/admin\/cards\/:id[^/]*\/(loss|unloss|reset-password|unlock|unbind|reissue|card-type)$/,
    roles: [ROLES.cardOffice],
  },
  { path: /^\/admin\/cards\/:id[^/]*\/unlock-login$/, roles: [ROLES.cardOffice, ROLES.infoCentre] },
  // 卡类别 and 餐次: the system administrator edits types, periods and price rules; finance looks.
  {
    path: /^\/admin\/(card-types|meal-periods)(\/:id[^/]*)?$/,
    method: "GET",
    roles: [ROLES.sysadmin, ROLES.finance],
  },
  { path: /^\/admin\/card-types\/new$/, roles: [ROLES.sysadmin] },
  {
    path: /^\/admin\/(card-types|meal-periods)\/:id[^/]*(\/delete)?$/,
    method: "POST",
    roles: [ROLES.sysadmin],
  },
  // 销户 pays the balance out in cash at the counter.
  { path: /^\/admin\/cards\/:id[^/]*\/close$/, roles: [ROLES.cardOffice] },
  { path: /^\/admin\/cards\/import(\/|$)/, roles: [ROLES.cardOffice, ROLES.sysadmin] },
  // The card page's money panel and the card's transactions: whoever answers for its money.
  {
    path: /^\/admin\/cards\/:id[^/]*\/(money|transactions)$/,
    method: "GET",
    roles: [ROLES.cardOffice, ROLES.finance, ROLES.sysadmin],
  },
  // 毕业离校: the card office makes, announces, confirms and cancels batches; finance and the
  // system administrator follow them.
  {
    path: /^\/admin\/closeout(\/:id(\/progress)?)?$/,
    method: "GET",
    roles: [ROLES.cardOffice, ROLES.finance, ROLES.sysadmin],
  },
  { path: /^\/admin\/closeout\/new$/, roles: [ROLES.cardOffice] },
  {
    path: /^\/admin\/closeout\/:id\/(notify|confirm|cancel|retry)$/,
    method: "POST",
    roles: [ROLES.cardOffice],
  },
  // 补助发放: finance prepares, approves (another member), withdraws and reverses; the system
  // administrator may look.
  {
    path: /^\/admin\/subsidy(\/:id|\/template\.(csv|xlsx))?$/,
    method: "GET",
    roles: [ROLES.finance, ROLES.sysadmin],
  },
  { path: /^\/admin\/subsidy\/new$/, roles: [ROLES.finance] },
  {
    path: /^\/admin\/subsidy\/:id\/(approve|withdraw|reverse)$/,
    method: "POST",
    roles: [ROLES.finance],
  },
  // 离线付款码限额: the card office sets them, the system administrator too.
  { path: /^\/admin\/offline-codes$/, roles: [ROLES.cardOffice, ROLES.sysadmin] },
  // The room page (who paid what) is read by whoever reads the utility balances.
  {
    path: /^\/admin\/billing\/rooms\/:id$/,
    method: "GET",
    roles: [ROLES.cardOffice, ROLES.finance, ROLES.sysadmin],
  },
  { path: /^\/admin\/billing\/(buildings|rooms)(\/|$)/, roles: [ROLES.cardOffice, ROLES.sysadmin] },
  { path: /^\/admin\/billing\/residents(\/|$)/, roles: [ROLES.cardOffice] },
  // 低余量提醒: the card office sets the thresholds, the system administrator sees them.
  { path: /^\/admin\/billing\/alerts$/, method: "GET", roles: [ROLES.cardOffice, ROLES.sysadmin] },
  { path: /^\/admin\/billing\/alerts$/, method: "POST", roles: [ROLES.cardOffice] },
  {
    path: /^\/admin\/billing\/balances$/,
    roles: [ROLES.cardOffice, ROLES.finance, ROLES.sysadmin],
  },
  // 财务处: money. Others may look (system administrator) but only finance moves it.
  { path: /^\/admin\/billing\/queue$/, roles: [ROLES.finance, ROLES.sysadmin] },
  { path: /^\/admin\/billing\/queue\/:id\/retry$/, roles: [ROLES.finance, ROLES.sysadmin] },
  { path: /^\/admin\/billing\/queue\/:id\/refund$/, roles: [ROLES.finance] },
  { path: /^\/admin\/billing\/reports(\.csv|\.xlsx)?$/, roles: [ROLES.finance] },
  { path: /^\/admin\/topup\/sandbox$/, roles: [ROLES.finance, ROLES.sysadmin] },
  { path: /^\/admin\/ledger(\/|$)/, roles: [ROLES.finance, ROLES.sysadmin] },
  // 商户结算: finance prepares, a second finance member approves, finance pays; the system
  // administrator reads the statements and 结算条件.
  {
    path: /^\/admin\/finance\/settlements(\/.*)?$/,
    method: "GET",
    roles: [ROLES.finance, ROLES.sysadmin],
  },
  {
    path: /^\/admin\/finance\/settlements\/(prepare|terms\/:merchant|:id\/(approve|reject|pay))$/,
    method: "POST",
    roles: [ROLES.finance],
  },
  // 本商户: a merchant operator's read-only page of its own merchant, nobody else's.
  { path: /^\/admin\/my-merchant(\/statement)?$/, roles: [ROLES.merchantOperator] },
  { path: /^\/admin\/finance(\/.*)?$/, method: "GET", roles: [ROLES.finance, ROLES.sysadmin] },
  { path: /^\/admin\/finance\/.*$/, method: "POST", roles: [ROLES.finance] },
];

/** Staff routes for everyone, signed in or not. */
const STAFF_OPEN = [/^\/admin\/login$/, /^\/admin\/logout$/];

const STAFF_PASSWORD = "Suite12345";
const STUDENT_PASSWORD = "Student123";
let phones = 0;

/** A concrete path for a route pattern: ids that exist nowhere, so no real record is touched. */
function concrete(path: string): string {
  return path.replace(/:[A-Za-z_]+(\{[^}]*\})?/g, "999999").replace(/\*$/, "x");
}

const isStateChanging = (r: RouteInfo) => !["GET", "HEAD", "OPTIONS"].includes(r.method);

async function staffClient(s: Awaited<ReturnType<typeof setup>>, roles: Role[], ip: string) {
  const username = `s${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}`;
  await createStaff(s.db, { username, name: `员工${username}`, password: STAFF_PASSWORD, roles });
  const c = new TestClient(s.app, s.config, ip);
  const res = await c.post("/admin/login", { username, password: STAFF_PASSWORD });
  assert.equal(res.status, 303, `staff ${roles.join(",")} could not sign in`);
  return c;
}

/** Registers a student account and signs it in through the login form. */
async function studentClient(s: Awaited<ReturnType<typeof setup>>, ip: string) {
  const school = await ensureSchool(s.db, "安全测试大学", "SUITE");
  const phone = `139${String(++phones).padStart(8, "0")}`;
  const accountId = await registerAccount(s.db, {
    phone,
    password: STUDENT_PASSWORD,
    schoolId: school.id,
  });
  const c = new TestClient(s.app, s.config, ip);
  const res = await c.post("/login", { phone, password: STUDENT_PASSWORD });
  assert.equal(res.status, 303, `student ${phone} could not sign in: ${await res.text()}`);
  return { c, phone, accountId };
}

Deno.test("every state-changing route refuses a request without the CSRF token", async () => {
  const s = await setup();
  try {
    const posts = routesOf(s.app).filter(isStateChanging);
    assert.ok(
      posts.some((r) => r.path === "/admin/login"),
      "route enumeration found no /admin/login",
    );
    const student = new TestClient(s.app, s.config, "10.1.0.1");
    const staff = await staffClient(s, [...ALL_ROLES], "10.1.0.2");
    const stranger = new TestClient(s.app, s.config, "10.1.0.3");
    await stranger.get("/healthz");
    const accepted: string[] = [];
    for (const r of posts) {
      const path = concrete(r.path);
      const exempt = CSRF_EXEMPT.some((re) => re.test(path));
      const client = path.startsWith("/admin") ? staff : student;
      const attempts: Array<[string, Record<string, string>, Record<string, string>]> = [
        ["no token", {}, {}],
        ["another browser's token", { _csrf: await tokenOf(stranger, path) }, {}],
        ["wrong header token", {}, { "x-csrf-token": "0".repeat(40) }],
      ];
      for (const [label, fields, headers] of attempts) {
        const res = await client.post(path, fields, { csrf: false, headers });
        const text = await res.text();
        const refused = res.status === 403 && /页面已过期|请求来源无效/.test(text);
        if (!refused && !exempt) accepted.push(`${r.method} ${r.path} (${label}): ${res.status}`);
      }
      // The right token but a foreign Origin: a cross-site form post.
      if (!exempt) {
        const res = await client.post(path, {}, { headers: { origin: "https://evil.example" } });
        if (res.status !== 403) {
          accepted.push(`${r.method} ${r.path} (cross-origin): ${res.status}`);
        }
        await res.body?.cancel();
      }
    }
    assert.deepEqual(accepted, [], "state-changing routes that accepted a forged request");
    // The check above is only meaningful if the right token passes the CSRF guard.
    const ok = await new TestClient(s.app, s.config, "10.1.0.4").post("/admin/login", {
      username: "nobody",
      password: "x",
    });
    assert.notEqual(ok.status, 403);
  } finally {
    await s.h.close();
  }
});

/** The `_csrf` value of the first form in a page. */
function csrfInPage(html: string): string {
  const m = /name="_csrf" value="([^"]+)"/.exec(html);
  assert.ok(m, "no CSRF token in the page");
  return m[1];
}

/** A token that is valid, but for another browser than the one sending it. */
async function tokenOf(c: TestClient, path: string): Promise<string> {
  const { csrfFor } = await import("../platform/testing.ts");
  return csrfFor(c.config, c.cookies, path.startsWith("/admin"));
}

Deno.test("every student page sends a signed-out visitor to the login page", async () => {
  const s = await setup();
  try {
    const anon = new TestClient(s.app, s.config, "10.2.0.1");
    const open: string[] = [];
    for (const r of routesOf(s.app)) {
      if (r.path.startsWith("/admin")) continue;
      const path = concrete(r.path);
      if (PUBLIC_PAGES.some((re) => re.test(path))) continue;
      const res = r.method === "GET" ? await anon.get(path) : await anon.post(path, {});
      await res.body?.cancel();
      const to = res.headers.get("location") ?? res.headers.get("hx-redirect") ?? "";
      if (!(res.status === 303 && to.startsWith("/login"))) {
        open.push(`${r.method} ${r.path}: ${res.status} ${to}`);
      }
    }
    assert.deepEqual(
      open,
      [],
      "pages that answered a signed-out visitor (add to PUBLIC_PAGES only if meant)",
    );
  } finally {
    await s.h.close();
  }
});

Deno.test("every staff route, with real ids, is refused to the signed-out, to students and to each role it is not meant for", async () => {
  const w = await seededWorld();
  try {
    const all = routesOf(w.app);
    const routes = all.filter((r) => r.path.startsWith("/admin"))
      .filter((r) => !STAFF_OPEN.some((re) => re.test(r.path)));
    const entry = (r: RouteInfo) =>
      ROLE_MATRIX.find((m) => m.path.test(r.path) && (!m.method || m.method === r.method));
    const unlisted = routes.filter((r) => !entry(r));
    assert.deepEqual(
      unlisted.map((r) => `${r.method} ${r.path}`),
      [],
      "staff routes missing from the suite's ROLE_MATRIX",
    );
    const real = await realStaffIds(w, all);
    assert.deepEqual(
      routes.filter((r) => isParameterised(r) && !real.has(`${r.method} ${r.path}`))
        .map((r) => `${r.method} ${r.path}`),
      [],
      "staff routes with an id that no page of the seeded world links or posts to",
    );
    const anon = new TestClient(w.app, w.config, "10.3.0.1");
    const problems: string[] = [];
    const toLogin = (res: Response) =>
      res.status === 303 && /^\/(admin\/)?login(\?|$)/.test(res.headers.get("location") ?? "");
    // A refusal must not be a missing record, a sign-in page or a crash.
    const used = (res: Response) =>
      res.status !== 403 && res.status !== 404 && res.status < 500 && !toLogin(res);
    const allowedPosts: Array<[Role, TestClient, RouteInfo, string]> = [];
    for (const r of routes) {
      const path = real.get(`${r.method} ${r.path}`) ?? r.path;
      const send = (c: TestClient) => r.method === "GET" ? c.get(path) : c.post(path, {});
      // The signed-out, and a signed-in student (nobody on the staff side).
      for (const [who, c] of [["signed out", anon], ["student", w.a.c]] as const) {
        const res = await send(c);
        await res.body?.cancel();
        if (
          !(res.status === 303 && (res.headers.get("location") ?? "").startsWith("/admin/login"))
        ) {
          problems.push(`${who}: ${r.method} ${path} answered ${res.status}`);
        }
      }
      const allowed = entry(r)!.roles;
      for (const [role, c] of w.byRole) {
        const mayUse = allowed === "any" || allowed.includes(role);
        if (mayUse && r.method !== "GET") {
          allowedPosts.push([role, c, r, path]);
          continue;
        }
        const res = await send(c);
        await res.body?.cancel();
        if (!mayUse && res.status !== 403) {
          problems.push(`${role}: ${r.method} ${path} answered ${res.status}, not 403`);
        }
        if (mayUse && !used(res)) {
          problems.push(`${role}: ${r.method} ${path} answered ${res.status} though allowed`);
        }
      }
    }
    // Last, so that what they change (an empty form at most) cannot hide a refusal above.
    for (const [role, c, r, path] of allowedPosts) {
      const res = await c.post(path, {});
      await res.body?.cancel();
      if (!used(res)) {
        problems.push(`${role}: ${r.method} ${path} answered ${res.status} though allowed`);
      }
    }
    assert.deepEqual(problems, []);
  } finally {
    await w.h.close();
  }
});

/**
 * A real id for every staff route with one: the URLs the pages link to and the actions of their
 * forms, as the all-roles administrator sees them. Forms acting on the suite's own role accounts
 * (disable) are left out: the suite signs in with them.
 */
async function realStaffIds(
  w: Awaited<ReturnType<typeof seededWorld>>,
  all: RouteInfo[],
): Promise<Map<string, string>> {
  const starts = all.filter((r) =>
    r.method === "GET" && !isParameterised(r) && r.path.startsWith("/admin")
  ).map((r) => r.path);
  const { pages, forms } = await crawl(w.admin, all, [...w.adminVisited, ...starts], {
    include: (p) => p.startsWith("/admin"),
    check: (_url, res) => res.text(),
    // Enough forms per route that some act on others than the suite's own accounts.
    perRoute: 10,
  });
  const own = (await w.db.selectFrom("staff").select("id").where("username", "like", "role%")
    .execute()).map((r) => `/admin/staff/${r.id}/`);
  const real = new Map<string, string>();
  for (const p of pages.filter((p) => p.status === 200)) {
    const r = routeOfUrl(all, "GET", p.url);
    const key = `GET ${r?.path}`;
    if (r && isParameterised(r) && !real.has(key)) real.set(key, p.url);
  }
  for (const f of forms) {
    const r = routeOfUrl(all, "POST", f.action);
    const key = `POST ${r?.path}`;
    if (own.some((prefix) => f.action.startsWith(prefix))) continue;
    if (r && isParameterised(r) && !real.has(key)) real.set(key, f.action);
  }
  return real;
}

Deno.test("every page reachable without parameters sets the security headers and has no inline script", async () => {
  const s = await setup();
  try {
    const anon = new TestClient(s.app, s.config, "10.4.0.1");
    const staff = await staffClient(s, [...ALL_ROLES], "10.4.0.2");
    const { c: student } = await studentClient(s, "10.4.0.3");
    const pages = routesOf(s.app).filter((r) => r.method === "GET" && !isParameterised(r));
    assert.ok(pages.length >= 5, `only ${pages.length} pages enumerated`);
    for (const r of pages) {
      for (const c of [anon, staff, student]) {
        await assertSafeResponse(r.path, await c.get(r.path));
      }
    }
    await assertSafeResponse("/no-such-page", await anon.get("/no-such-page"));
  } finally {
    await s.h.close();
  }
});

Deno.test("markup typed into every staff form comes back escaped, on the form and on every page", async () => {
  const s = await setup();
  try {
    const staff = await staffClient(s, [...ALL_ROLES], "10.5.0.1");
    const submitted = await submitPayloadIntoEveryForm(
      s.app,
      staff,
      (r) => r.path.startsWith("/admin"),
    );
    assert.ok(submitted.length > 0, "no staff form found to submit");
    for (const r of routesOf(s.app).filter((r) => r.method === "GET" && !isParameterised(r))) {
      await assertSafeResponse(r.path, await staff.get(r.path));
    }
  } finally {
    await s.h.close();
  }
});

Deno.test("markup typed into every student form comes back escaped, on the form and on every page", async () => {
  const s = await setup();
  try {
    const { c } = await studentClient(s, "10.5.1.1");
    const submitted = await submitPayloadIntoEveryForm(
      s.app,
      c,
      (r) => !r.path.startsWith("/admin") && !/logout/.test(r.path),
    );
    assert.ok(submitted.length > 0, "no student form found to submit");
    const anon = new TestClient(s.app, s.config, "10.5.1.2");
    await submitPayloadIntoEveryForm(
      s.app,
      anon,
      (r) => PUBLIC_PAGES.some((re) => re.test(r.path)),
    );
    for (const r of routesOf(s.app).filter((r) => r.method === "GET" && !isParameterised(r))) {
      await assertSafeResponse(r.path, await c.get(r.path));
    }
  } finally {
    await s.h.close();
  }
});

/**
 * Opens every parameterless page, finds its POST forms, fills every text field with the payload
 * (keeping the CSRF token and choice fields as given) and checks the answer. Returns the forms
 * submitted, as "page -> action".
 */
async function submitPayloadIntoEveryForm(
  app: App,
  c: TestClient,
  include: (r: RouteInfo) => boolean,
): Promise<string[]> {
  const done: string[] = [];
  for (
    const r of routesOf(app).filter((r) => r.method === "GET" && !isParameterised(r) && include(r))
  ) {
    const res = await c.get(r.path);
    if (res.status !== 200) {
      await res.body?.cancel();
      continue;
    }
    const html = await res.text();
    for (const form of html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
      if (!/method="post"/i.test(form[1])) continue;
      const action = /action="([^"]*)"/i.exec(form[1])?.[1] ?? r.path;
      if (/logout/.test(action)) continue;
      const fields: Record<string, string> = {};
      for (const input of form[2].matchAll(/<(input|textarea|select)\b([^>]*)>/gi)) {
        const name = /\bname="([^"]+)"/.exec(input[2])?.[1];
        if (!name || name === "_csrf") continue;
        const type = /\btype="([^"]+)"/.exec(input[2])?.[1] ?? "text";
        const value = /\bvalue="([^"]*)"/.exec(input[2])?.[1] ?? "";
        if (["hidden", "checkbox", "radio", "submit"].includes(type) || input[1] === "select") {
          if (value && !(name in fields)) fields[name] = value;
        } else {
          fields[name] = PAYLOAD;
        }
      }
      const answer = await c.post(decodeEntities(action), fields);
      await assertSafeResponse(`POST ${action} (from ${r.path})`, answer);
      done.push(`${r.path} -> ${action}`);
    }
  }
  return done;
}

Deno.test("sign-in, registration and room choice redirect only to our own paths, whatever `next` says", async () => {
  const s = await setup();
  try {
    // Dormitory rooms to choose from (the demo seed runs only on a database without staff).
    await seedDemoData(s);
    await createStaff(s.db, {
      username: "redir",
      name: "跳转",
      password: STAFF_PASSWORD,
      roles: [ROLES.sysadmin],
    });
    const hostile = [
      "//evil.example/",
      "https://evil.example/",
      "/\\evil.example",
      "javascript:alert(1)",
      "/%2F%2Fevil.example",
      "\t//evil.example",
      "/admin/../\\evil.example",
      "https:evil.example",
      "http:/evil.example",
      "%2F%2Fevil.example",
      "/%5Cevil.example",
      "\\\\evil.example",
      "///evil.example",
      "/\t/evil.example",
      "/\n/evil.example",
      " //evil.example",
      "/admin\\..\\..\\/evil.example",
    ];
    const { phone } = await studentClient(s, "10.6.0.9");
    const rooms = await sql<{ id: number; building_id: number }>`
      select id, building_id from billing_rooms order by id`.execute(s.db);
    const school = await ensureSchool(s.db, "安全测试大学", "SUITE");
    for (const [i, next] of hostile.entries()) {
      const c = new TestClient(s.app, s.config, "10.6.0.1");
      const res = await c.post("/admin/login", {
        username: "redir",
        password: STAFF_PASSWORD,
        next,
      });
      assert.equal(res.status, 303, next);
      const to = res.headers.get("location")!;
      assertOwnPath(`next=${next}`, to);
      const st = new TestClient(s.app, s.config, "10.6.0.2");
      const login = await st.post("/login", { phone, password: STUDENT_PASSWORD, next });
      assert.equal(login.status, 303, `student login with next=${next}`);
      assertOwnPath(`student next=${next}`, login.headers.get("location")!);
      // Already signed in: GET /login?next=… redirects at once.
      const again = await st.get(`/login?next=${encodeURIComponent(next)}`);
      assert.equal(again.status, 303);
      assertOwnPath(`GET /login?next=${next}`, again.headers.get("location")!);
      // Registering, and choosing a dorm room, also continue to `next`.
      const newcomer = new TestClient(s.app, s.config, "10.6.0.3");
      const joined = await newcomer.post("/register", {
        phone: `1376600${String(i).padStart(4, "0")}`,
        password: STUDENT_PASSWORD,
        school_id: String(school.id),
        next,
      });
      assert.equal(joined.status, 303, `register with next=${next}: ${await joined.text()}`);
      assertOwnPath(`register next=${next}`, joined.headers.get("location")!);
      const room = rooms.rows[i % rooms.rows.length];
      const chose = await newcomer.post("/billing/room", {
        building: String(room.building_id),
        room: String(room.id),
        next,
      });
      assert.equal(chose.status, 303, `room with next=${next}: ${await chose.text()}`);
      assertOwnPath(`room next=${next}`, chose.headers.get("location")!);
      const form = await newcomer.page(`/billing/room?next=${encodeURIComponent(next)}`);
      for (const m of form.matchAll(/name="next" value="([^"]*)"/g)) {
        assertOwnPath(`GET /billing/room?next=${next}`, decodeEntities(m[1]));
      }
    }
  } finally {
    await s.h.close();
  }
});

Deno.test("staff sign-in issues a new session id: a planted cookie is never adopted", async () => {
  const s = await setup();
  try {
    await createStaff(s.db, {
      username: "fixate",
      name: "固定",
      password: STAFF_PASSWORD,
      roles: [ROLES.finance],
    });
    const planted = "A".repeat(43);
    const victim = new TestClient(s.app, s.config, "10.7.0.1");
    victim.cookies.set("yxt_staff", planted);
    // Like a browser: the token comes from the sign-in form the victim was shown.
    const form = await victim.page("/admin/login");
    const res = await victim.post(
      "/admin/login",
      { username: "fixate", password: STAFF_PASSWORD, _csrf: csrfInPage(form) },
      { csrf: false },
    );
    assert.equal(res.status, 303);
    const issued = victim.cookies.get("yxt_staff");
    assert.ok(issued && issued !== planted, "the session cookie was not replaced at sign-in");
    // The attacker holding the planted value is not signed in.
    const attacker = new TestClient(s.app, s.config, "10.7.0.2");
    attacker.cookies.set("yxt_staff", planted);
    const a = await attacker.get("/admin/audit");
    assert.equal(a.status, 303);
    // A second sign-in in the same browser replaces the session again and ends the first.
    const first = issued;
    await victim.post("/admin/login", { username: "fixate", password: STAFF_PASSWORD });
    assert.notEqual(victim.cookies.get("yxt_staff"), first);
    const old = new TestClient(s.app, s.config, "10.7.0.3");
    old.cookies.set("yxt_staff", first);
    assert.equal((await old.get("/admin/audit")).status, 303);
  } finally {
    await s.h.close();
  }
});

Deno.test("student sign-in issues a new session id: a planted cookie is never adopted", async () => {
  const s = await setup();
  try {
    const { phone } = await studentClient(s, "10.7.1.9");
    const planted = "B".repeat(43);
    const victim = new TestClient(s.app, s.config, "10.7.1.1");
    victim.cookies.set("yxt_sid", planted);
    const form = await victim.page("/login");
    const res = await victim.post(
      "/login",
      { phone, password: STUDENT_PASSWORD, _csrf: csrfInPage(form) },
      { csrf: false },
    );
    assert.equal(res.status, 303);
    const issued = victim.cookies.get("yxt_sid");
    assert.ok(issued && issued !== planted, "the session cookie was not replaced at sign-in");
    const attacker = new TestClient(s.app, s.config, "10.7.1.2");
    attacker.cookies.set("yxt_sid", planted);
    assert.equal((await attacker.get("/me")).status, 303);
    assert.equal((await victim.get("/me")).status, 200);
    // Signing in again replaces the session and the old id stops working.
    await victim.post("/logout");
    const again = await victim.post("/login", { phone, password: STUDENT_PASSWORD });
    assert.equal(again.status, 303);
    assert.notEqual(victim.cookies.get("yxt_sid"), issued);
    const old = new TestClient(s.app, s.config, "10.7.1.3");
    old.cookies.set("yxt_sid", issued!);
    assert.equal((await old.get("/me")).status, 303);
  } finally {
    await s.h.close();
  }
});

Deno.test("guessing a login password hits the lockout, and the right password waits it out", async () => {
  const s = await setup();
  try {
    const { phone } = await studentClient(s, "10.8.1.9");
    const c = new TestClient(s.app, s.config, "10.8.1.1");
    const statuses: number[] = [];
    for (let i = 0; i < 12 && statuses.at(-1) !== 429; i++) {
      const res = await c.post("/login", { phone, password: `Guess${i}x1234` });
      statuses.push(res.status);
      await res.body?.cancel();
    }
    assert.equal(statuses.at(-1), 429, `login never locked: ${statuses}`);
    assert.ok(statuses.length <= 10, `took ${statuses.length} guesses to lock`);
    const right = await c.post("/login", { phone, password: STUDENT_PASSWORD });
    assert.equal(right.status, 429, "the right password must not pass during the lockout");
    // Guessing from many addresses is capped per phone (suite_lockout_test.ts has the rest).
    const refused: number[] = [];
    for (let i = 0; i < SIGN_IN_RULE.budget.limit; i++) {
      const res = await new TestClient(s.app, s.config, `10.8.2.${i + 1}`).post("/login", {
        phone,
        password: `Spread${i}x1234`,
      });
      refused.push(res.status);
      await res.body?.cancel();
    }
    assert.equal(refused.at(-1), 429, `guesses from many addresses never capped: ${refused}`);
  } finally {
    await s.h.close();
  }
});

Deno.test("guessing a staff password hits the lockout, also across usernames from one address (slowed)", async () => {
  const s = await setup();
  try {
    await createStaff(s.db, {
      username: "target",
      name: "目标",
      password: STAFF_PASSWORD,
      roles: [ROLES.finance],
    });
    const c = new TestClient(s.app, s.config, "10.8.0.1");
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await c.post("/admin/login", { username: "target", password: `Guess${i}x1234` });
      statuses.push(res.status);
      await res.body?.cancel();
    }
    assert.equal(statuses.at(-1), 429, `statuses ${statuses}`);
    const right = await c.post("/admin/login", { username: "target", password: STAFF_PASSWORD });
    assert.equal(right.status, 429, "the right password must not pass during the lockout");
    // Spraying many usernames from one address locks the address.
    const sprayer = new TestClient(s.app, s.config, "10.8.0.2");
    let locked = false;
    for (let i = 0; i < SIGN_IN_RULE.address.free + 5 && !locked; i++) {
      const res = await sprayer.post("/admin/login", {
        username: `user${i}`,
        password: "Guess1234x",
      });
      locked = res.status === 429;
      await res.body?.cancel();
    }
    assert.ok(locked, "an address spraying usernames was never slowed");
  } finally {
    await s.h.close();
  }
});
