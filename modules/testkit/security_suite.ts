/**
 * Support for the security suite (modules/security/suite_*_test.ts, issue 7): the app's routes as `main.ts` composes them, the checks
 * every HTML answer must pass, a seeded world whose stored texts all carry markup, and a crawler
 * that finds real ids for every route by following the links and forms of the pages themselves.
 */
import assert from "node:assert/strict";
import type { Hono } from "hono";
import { createApp } from "../../main.ts";
import type { AppEnv } from "../platform/mod.ts";
import { loadAssets } from "../platform/assets.ts";
import { createTestDatabase, csrfFor, sql, TestClient, testConfig } from "../platform/testing.ts";
import { ALL_ROLES, createStaff, type Role, ROLES } from "../staff/mod.ts";
import { ensureSchool, registerAccount } from "../account/mod.ts";
import {
  bindCardForTest,
  CARD_PASSWORD_RULE,
  checkCardPassword,
  createCardAccountForTest,
  DEMO_SCHOOL,
} from "../card/mod.ts";
import { creditTopUp, seedDemoTakings } from "../wallet/mod.ts";
import { createMerchant } from "../merchant/mod.ts";
import { seedDemoData } from "../demo/mod.ts";
import { fileOfflineReview } from "../finance/mod.ts";
import { SIGN_IN_RULE } from "../security/mod.ts";

/** A markup payload that must come back escaped wherever it is shown. */
export const PAYLOAD = `"><script>alert(7)</script><img src=x onerror=alert(7)>'`;

/**
 * What the world stores in its texts: a script element, a double-quoted and a single-quoted
 * attribute breakout. The short form is for columns too narrow for the long one.
 */
export const STORED_PAYLOAD =
  `<script>alert(7)</script>"><svg onload=alert(7)>'><img src=x onerror=alert(7)>`;
export const SHORT_PAYLOAD = `"><svg onload=alert(7)>`;

/** Any of these in a page means a payload was rendered as markup. */
export const PAYLOAD_RAW = [/<script>alert\(7\)/i, /<img src=x onerror/i, /<svg onload/i];

export type App = Hono<AppEnv>;
export interface RouteInfo {
  method: string;
  path: string;
}

export async function setup() {
  await loadAssets();
  const h = await createTestDatabase();
  const config = testConfig();
  const app = createApp({ db: h.db, config, onShutdown: () => {} });
  return { h, db: h.db, config, app };
}
export type Setup = Awaited<ReturnType<typeof setup>>;

/** The app's own routes (not middleware), one entry per method and path. */
export function routesOf(app: App): RouteInfo[] {
  const seen = new Set<string>();
  const out: RouteInfo[] = [];
  for (const r of app.routes) {
    // app.use() registers middleware as method ALL; handlers carry their method.
    if (r.method === "ALL") continue;
    const key = `${r.method} ${r.path}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ method: r.method, path: r.path });
  }
  return out;
}

export const isParameterised = (r: RouteInfo) => /[:*]/.test(r.path);

/** A regular expression matching the concrete paths of a Hono route pattern. */
export function routeRegex(path: string): RegExp {
  let out = "";
  for (const part of path.split(/(:[A-Za-z_]+(?:\{[^}]*\})?|\*)/)) {
    if (part === "*") out += ".*";
    else if (part.startsWith(":")) {
      const custom = /\{([^}]*)\}/.exec(part)?.[1];
      out += custom ? `(?:${custom})` : "[^/]+";
    } else out += part.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${out}$`);
}

/** Checks the headers and markup rules every HTML response must follow; returns the body. */
export async function assertSafeResponse(path: string, res: Response): Promise<string> {
  const text = await res.text();
  const csp = res.headers.get("content-security-policy") ?? "";
  assert.match(csp, /script-src 'self'(;|$)/, `${path}: CSP must allow only our own scripts`);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, `${path}: CSP allows inline code`);
  assert.match(csp, /frame-ancestors 'none'/, `${path}: CSP must forbid framing`);
  assert.equal(res.headers.get("x-frame-options"), "DENY", `${path}: X-Frame-Options`);
  assert.equal(res.headers.get("x-content-type-options"), "nosniff", `${path}: nosniff`);
  const location = res.headers.get("location");
  if (location !== null) assertOwnPath(path, location);
  if ((res.headers.get("content-type") ?? "").includes("text/html")) {
    for (const m of text.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)) {
      assert.match(
        m[1],
        /\bsrc="\/static\//,
        `${path}: a script not loaded from /static/: ${m[0].slice(0, 120)}`,
      );
      assert.equal(m[2].trim(), "", `${path}: inline script: ${m[0].slice(0, 120)}`);
    }
    for (const tag of tagsOf(text)) {
      for (const name of tag.attributes) {
        assert.ok(
          !/^on/i.test(name),
          `${path}: inline event handler in ${tag.source.slice(0, 120)}`,
        );
        assert.notEqual(
          name,
          "style",
          `${path}: inline style (blocked by the CSP): ${tag.source.slice(0, 120)}`,
        );
      }
      assert.ok(!/^(iframe|object|embed)$/i.test(tag.name), `${path}: <${tag.name}> element`);
    }
    for (const re of PAYLOAD_RAW) {
      assert.doesNotMatch(text, re, `${path}: markup payload rendered unescaped`);
    }
  }
  return text;
}

const TAG =
  /<([a-zA-Z][a-zA-Z0-9-]*)((?:\s+[^\s"'>\/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'>]+))?)*)\s*\/?>/g;
const ATTRIBUTE = /\s+([^\s"'>\/=]+)(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'>]+))?/g;

/** The start tags of a page with their attribute names (quoted values are skipped whole). */
export function tagsOf(
  html: string,
): Array<{ name: string; attributes: string[]; source: string }> {
  return [...html.matchAll(TAG)].map((m) => ({
    name: m[1],
    attributes: [...m[2].matchAll(ATTRIBUTE)].map((a) => a[1]),
    source: m[0],
  }));
}

/**
 * A redirect target must be one of our own paths: no scheme, no host, no `//` or `/\` (browsers
 * read a backslash as a slash), also after dropping the tabs and newlines browsers strip.
 */
export function assertOwnPath(from: string, location: string): void {
  const seen = location.replace(/[\t\n\r]/g, "");
  assert.ok(
    seen.startsWith("/") && !/^\/[\/\\]/.test(seen),
    `${from} redirects off site: ${location}`,
  );
  // Resolved as a browser would (backslashes, dot segments): still on our host.
  const resolved = new URL(location, "https://yxt.invalid/a/b");
  assert.equal(resolved.origin, "https://yxt.invalid", `${from} redirects off site: ${location}`);
}

export function decodeEntities(s: string): string {
  return s.replaceAll("&amp;", "&").replaceAll("&#x2F;", "/").replaceAll("&#47;", "/")
    .replaceAll("&#39;", "'").replaceAll("&#x27;", "'").replaceAll("&quot;", '"')
    .replaceAll("&#61;", "=").replaceAll("&#x3D;", "=");
}

// ---- the seeded world ----

export const STAFF_PASSWORD = "Suite12345";
/** The staff sign-in the demo seed creates (every role). */
const DEMO_ADMIN = { username: "admin", password: "Admin12345" };
const STUDENT_PASSWORD = "Student123";

/**
 * Signs a staff member in and, when the console asks for a new password first (a seeded or reset
 * one, like the demo admin's), sets `newPassword`. Returns the password that now works.
 */
export async function signInStaffSettingPassword(
  client: TestClient,
  input: { username: string; password: string; newPassword?: string },
): Promise<string> {
  const res = await client.post("/admin/login", {
    username: input.username,
    password: input.password,
  });
  await res.body?.cancel();
  if (res.status !== 303) {
    throw new Error(`staff sign-in of ${input.username} answered ${res.status}`);
  }
  const home = await client.get("/admin");
  await home.body?.cancel();
  if (home.headers.get("location") !== "/admin/password") return input.password;
  const newPassword = input.newPassword ?? `${input.password}New1`;
  const changed = await client.post("/admin/password", {
    old_password: input.password,
    new_password: newPassword,
  });
  await changed.body?.cancel();
  if (changed.status !== 303) {
    throw new Error(`new password for ${input.username} answered ${changed.status}`);
  }
  return newPassword;
}

/** A student of the world: a signed-in browser and what identifies them in a page. */
export interface WorldStudent {
  c: TestClient;
  accountId: number;
  cardAccountId: number;
  phone: string;
  /** Texts only this student's pages may show (name, 学号, order numbers). */
  markers: string[];
  /** Where the student's own actions redirected: order pages not linked from elsewhere. */
  visited: string[];
}

/** A staff member signed in with every role, and one signed-in staff member per role. */
export interface World extends Setup {
  admin: TestClient;
  byRole: Map<Role, TestClient>;
  a: WorldStudent;
  b: WorldStudent;
  /** Pages the admin's own actions redirected to (an import preview, a reconciliation). */
  adminVisited: string[];
  /** The stored columns that now carry markup. */
  tainted: string[];
}

function withCheck(body17: string): string {
  const weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const sum = body17.split("").reduce((a, d, i) => a + Number(d) * weights[i], 0);
  return body17 + "10X98765432"[sum % 11];
}

async function worldStudent(
  s: Setup,
  n: number,
  name: string,
  roomIndex: number,
): Promise<WorldStudent> {
  const school = await ensureSchool(s.db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  const phone = `1367700${String(n).padStart(4, "0")}`;
  const accountId = await registerAccount(s.db, {
    phone,
    password: STUDENT_PASSWORD,
    schoolId: school.id,
  });
  const studentNumber = `77${String(n).padStart(8, "0")}`;
  const card = await createCardAccountForTest(s.db, { config: s.config }, {
    schoolId: school.id,
    studentNumber,
    idNumber: withCheck(`5301022005031${String(n).padStart(4, "0")}`),
    chipNumber: `77${String(n).padStart(8, "0")}`,
    name,
  });
  await bindCardForTest(s.db, card.cardAccountId, accountId);
  await creditTopUp(s.db, {
    cardAccountId: card.cardAccountId,
    amount: 50_000,
    method: "suite",
    reference: `suite-world-${n}`,
  });
  const c = new TestClient(s.app, s.config, `10.77.${n % 250}.1`);
  const login = await c.post("/login", { phone, password: STUDENT_PASSWORD });
  assert.equal(login.status, 303, `student ${phone} could not sign in`);
  const visited: string[] = [];
  const markers = [name, studentNumber];
  // A phone checked in for 离线付款码: 付款码设置 lists it with its 移除 form.
  const device = await c.post("/pay/devices", {});
  assert.equal(device.status, 200, `离线付款码 check-in: ${device.status}`);
  await device.body?.cancel();

  // A room of its own (A and B are not roommates: roommates rightly see each other's payments).
  const rooms = await sql<{ id: number; building_id: number }>`
    select id, building_id from billing_rooms order by id`.execute(s.db);
  const room = rooms.rows[roomIndex];
  assert.ok(room, "the demo world has no dormitory rooms");
  const chose = await c.post("/billing/room", {
    building: String(room.building_id),
    room: String(room.id),
  });
  assert.equal(chose.status, 303, `choosing a room: ${chose.status}`);
  await chose.body?.cancel();
  for (const utility of ["electricity", "water"]) {
    const page = await c.page(`/billing/${utility}`);
    const token = /name="token" value="([^"]+)"/.exec(page)?.[1];
    assert.ok(token, `no purchase token on /billing/${utility}`);
    const paid = await c.post(`/billing/${utility}`, { amount: "12.34", token });
    const to = paid.headers.get("location") ?? "";
    assert.match(to, /^\/billing\/orders\/[A-Z]{2}\d{20}$/, `${utility}: ${paid.status} ${to}`);
    await paid.body?.cancel();
    visited.push(to);
    markers.push(to.split("/").pop()!);
  }
  // 代充 from this browser for its own card: a payer's pages, known only to the browser that paid.
  const found = await c.post("/topup/proxy", {
    school_id: String(school.id),
    student_number: studentNumber,
    name,
  });
  const ticket = new URL(found.headers.get("location") ?? "/", "http://x").searchParams.get("t");
  await found.body?.cancel();
  const proxy = await c.post("/topup/proxy/pay", {
    ticket: ticket ?? "",
    amount: "5",
    method: "sandbox",
  });
  const sandboxPage = proxy.headers.get("location") ?? "";
  assert.match(sandboxPage, /^\/topup\/proxy\/orders\/YXT\d+\/sandbox$/, `代充: ${proxy.status}`);
  await proxy.body?.cancel();
  visited.push(sandboxPage, sandboxPage.replace(/\/sandbox$/, ""));
  markers.push(sandboxPage.split("/")[4]);
  const order = await c.post("/wallet/recharge", { amount: "10", quick: "", method: "sandbox" });
  const to = order.headers.get("location") ?? "";
  const orderNo = (/\/pay\/sandbox\/([^/?]+)/.exec(to) ?? /\/orders\/([^/?]+)/.exec(to))?.[1];
  assert.ok(orderNo, `no top-up order: ${order.status} ${to}`);
  await order.body?.cancel();
  visited.push(to, `/wallet/recharge/orders/${orderNo}`);
  markers.push(orderNo);
  return { c, accountId, cardAccountId: card.cardAccountId, phone, markers, visited };
}

/** Posts a multipart form with a file, as a browser's upload form does. */
async function upload(
  c: TestClient,
  path: string,
  fields: Record<string, string>,
  file: { field: string; name: string; text: string },
): Promise<Response> {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.set(k, v);
  form.set("_csrf", await csrfFor(c.config, c.cookies, path.startsWith("/admin")));
  form.set(file.field, new File([file.text], file.name, { type: "text/csv" }));
  return await c.app.request(`http://localhost:8000${path}`, {
    method: "POST",
    headers: { cookie: [...c.cookies].map(([k, v]) => `${k}=${v}`).join("; ") },
    body: form,
  }, { remoteAddr: { transport: "tcp", hostname: c.ip, port: 50000 } });
}

/**
 * The demo world plus one of everything a page with an id shows (two students with rooms, utility
 * orders and top-up orders, a pending adjustment, a flagged notify, an offline record for review, a
 * reconciliation, an import preview, a spare staff member), then markup appended to every stored
 * human text: names, merchant, terminal, building and room names, notes, reasons, emails, file names.
 */
export async function seededWorld(): Promise<World> {
  const s = await setup();
  await seedDemoData(s);
  const byRole = new Map<Role, TestClient>();
  for (const [i, role] of ALL_ROLES.entries()) {
    const username = `role${i}`;
    await createStaff(s.db, {
      username,
      name: `角色${i}`,
      password: STAFF_PASSWORD,
      roles: [role],
    });
    const c = new TestClient(s.app, s.config, `10.78.1.${i}`);
    const res = await c.post("/admin/login", { username, password: STAFF_PASSWORD });
    assert.equal(res.status, 303, `staff ${role} could not sign in`);
    byRole.set(role, c);
  }
  await createStaff(s.db, {
    username: "spare",
    name: "备用员工",
    password: STAFF_PASSWORD,
    roles: [ALL_ROLES[0]],
  });
  const admin = new TestClient(s.app, s.config, "10.78.0.1");
  // The demo admin's published password must be changed at the first sign-in.
  const adminPassword = await signInStaffSettingPassword(admin, {
    ...DEMO_ADMIN,
    newPassword: STAFF_PASSWORD,
  });
  assert.equal(adminPassword, STAFF_PASSWORD, "the console never asked for a new password");

  const a = await worldStudent(s, 1, "甲同学", 0);
  const b = await worldStudent(s, 2, "卞乙乙", 1);
  // The searches a clerk types: card and account pages are reached from their results.
  const adminVisited = [
    "/admin/cards?q=2024010001",
    "/admin/cards?q=7700000002",
    "/admin/accounts?phone=13677000002",
  ];
  // 张三 (2024010001, bound to the demo student): reported lost, card password and login locked,
  // so the card page offers every counter action (解挂, 解除锁定, 解除登录锁定).
  const zhang = await sql<{ id: number }>`
    select id from card_accounts where student_number = '2024010001'`.execute(s.db);
  const zhangId = zhang.rows[0]?.id;
  assert.ok(zhangId, "the demo world has no 2024010001");
  const loss = await admin.post(`/admin/cards/${zhangId}/loss`, {});
  assert.equal(loss.status, 303, `loss: ${loss.status}`);
  await loss.body?.cancel();
  for (let i = 0; i < CARD_PASSWORD_RULE.limit; i++) {
    await checkCardPassword(s.db, { config: s.config }, zhangId, "000000");
  }
  // Guesses from many addresses spend the phone's hourly sign-in budget (one address alone is
  // only slowed).
  for (let i = 0; i < SIGN_IN_RULE.budget.limit; i++) {
    const guesser = new TestClient(s.app, s.config, `10.78.2.${i + 1}`);
    const res = await guesser.post("/login", { phone: "13800000001", password: `Wrong${i}x123` });
    await res.body?.cancel();
  }

  // 调账 awaiting a second finance clerk (approve / reject forms).
  await createStaff(s.db, {
    username: "maker",
    name: "经办人",
    password: STAFF_PASSWORD,
    roles: [ROLES.finance],
  });
  const maker = new TestClient(s.app, s.config, "10.78.0.2");
  const makerIn = await maker.post("/admin/login", { username: "maker", password: STAFF_PASSWORD });
  assert.equal(makerIn.status, 303, "the maker could not sign in");
  const adj = await maker.post("/admin/finance/adjustments", {
    student_number: "7700000002",
    amount: "1.00",
    reason: PAYLOAD,
  });
  assert.equal(adj.status, 303, `adjustment: ${adj.status}`);
  await adj.body?.cancel();
  // A notify with a forged signature is flagged for finance (resolve form).
  const forged = await s.app.request("http://localhost:8000/pay/notify/sandbox", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-sandbox-timestamp": String(Math.floor(Date.now() / 1000)),
      "x-sandbox-signature": "0".repeat(64),
    },
    body: JSON.stringify({ order_no: PAYLOAD, txn_id: PAYLOAD, amount: 100, state: "SUCCESS" }),
  });
  assert.equal(forged.status, 401);
  // A message WeChat refused for good (消息's retry form), its values and error carrying markup;
  // the student's 消息通知 lists it too.
  await sql`insert into notify_messages
      (account_id, kind, source, data, event_at, state, next_attempt_at, error_code, last_error)
    select id, 'spend', 'suite:failed', ${
    JSON.stringify({ amount: "¥1.00", merchant: STORED_PAYLOAD, time: "2026-12-16 12:00" })
  }::jsonb, now(), 'failed', now(), ${SHORT_PAYLOAD}, ${STORED_PAYLOAD}
    from accounts where phone = '13800000001'`.execute(s.db);
  // An offline record the reader server did not charge (脱机复核 accept / reject forms).
  const pos = await sql<{ id: number; name: string; merchant_id: number; merchant: string }>`
    select t.id, t.name, t.merchant_id, m.name as merchant from terminals t
    join merchants m on m.id = t.merchant_id where t.kind = 'canteen_pos' order by t.id limit 1`
    .execute(s.db);
  assert.ok(pos.rows[0], "the demo world has no canteen POS");
  await fileOfflineReview(s.db, {
    reference: `T${pos.rows[0].id}:O1`,
    terminalId: pos.rows[0].id,
    terminalName: pos.rows[0].name,
    merchantId: pos.rows[0].merchant_id,
    merchantName: pos.rows[0].merchant,
    offlineSequence: 1,
    chip: "7700000002",
    cardAccountId: null,
    amount: 500000,
    occurredAt: new Date(),
    reason: "over_payment_limit",
  });
  // A reconciliation of the sandbox statement, uploaded under a markup file name.
  const today = new Date().toISOString().slice(0, 10);
  const statement = await admin.page(
    `/admin/finance/reconcile/sandbox-statement.csv?date=${today}`,
  );
  const rec = await upload(admin, "/admin/finance/reconcile", {
    method: "sandbox",
    from: today,
    to: today,
  }, {
    field: "statement",
    name: `${SHORT_PAYLOAD}.csv`,
    text: statement,
  });
  assert.equal(rec.status, 303, `reconcile: ${rec.status} ${await rec.text()}`);
  adminVisited.push(rec.headers.get("location")!);
  // A card import preview (not committed): one good row, one row whose name is markup.
  const school = await ensureSchool(s.db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  const csv = "学号,姓名,身份证号,芯片卡号,类型\n" +
    `7700000091,导入生,${withCheck("53010220050315091")},7700000091,学生\n` +
    `7700000092,"${PAYLOAD.replaceAll('"', '""')}",${
      withCheck("53010220050315092")
    },7700000092,学生\n`;
  const imp = await upload(admin, "/admin/cards/import", { school_id: String(school.id) }, {
    field: "file",
    name: `${SHORT_PAYLOAD}.csv`,
    text: csv,
  });
  assert.equal(imp.status, 303, `import: ${imp.status} ${await imp.text()}`);
  adminVisited.push(imp.headers.get("location")!);
  // 商户结算: a second outsourced window (its 结算条件 set through the page) with last month's
  // takings; the maker prepares both windows' statements, the admin approves one (付款 form) and
  // leaves the other for review (复核通过 / 退回 forms).
  const window2 = await createMerchant(s.db, {
    code: "OUT-2",
    name: "外包窗口二",
    category: "canteen",
  });
  const terms = await admin.post(`/admin/finance/settlements/terms/${window2.id}`, {
    settles: "1",
    period: "monthly",
    fee_rate: "3.5",
    payee_name: PAYLOAD.slice(0, 60),
  });
  assert.equal(terms.status, 303, `settlement terms: ${terms.status}`);
  await terms.body?.cancel();
  await seedDemoTakings(s.db, {
    merchantId: window2.id,
    chipNumbers: ["7700000002"],
    amounts: [990],
  });
  const prepared = await maker.post("/admin/finance/settlements/prepare", { merchant: "all" });
  assert.equal(prepared.status, 303, `settlement prepare: ${prepared.status}`);
  await prepared.body?.cancel();
  const statements = await sql<{ id: number }>`
    select id from settlement_statements order by id`.execute(s.db);
  assert.equal(statements.rows.length, 2, "the maker prepared two statements");
  const approved = await admin.post(
    `/admin/finance/settlements/${statements.rows[0].id}/approve`,
    {},
  );
  assert.equal(approved.status, 303, `settlement approve: ${approved.status}`);
  await approved.body?.cancel();

  // 毕业离校: a draft batch from a 学号 list (notice, confirm, cancel forms; its preview) and a
  // confirmed one of the world's two students, due tomorrow (its live progress), one of its cards
  // failed (重试 form).
  const tomorrow = new Date(Date.now() + 32 * 3_600_000).toISOString().slice(0, 10);
  const todayChina = new Date(Date.now() + 8 * 3_600_000).toISOString().slice(0, 10);
  const batches: number[] = [];
  for (
    const [list, closeOn] of [
      ["学号\n2024010001\n2024010002\n2024010003\n", todayChina],
      ["学号\n7700000001\n7700000002\n", tomorrow],
    ]
  ) {
    const made = await upload(admin, "/admin/closeout/new", {
      name: PAYLOAD.slice(0, 60),
      school_id: String(school.id),
      kind: "",
      close_on: closeOn,
      refund_rule: "origin_first",
      payout_method: "bank",
      threshold: "0",
    }, { field: "file", name: `${SHORT_PAYLOAD}.csv`, text: list });
    assert.equal(made.status, 303, `closeout batch: ${made.status} ${await made.text()}`);
    batches.push(Number(/\/admin\/closeout\/(\d+)/.exec(made.headers.get("location")!)![1]));
  }
  const confirmed = await admin.post(`/admin/closeout/${batches[1]}/confirm`, {});
  assert.equal(confirmed.status, 303, `closeout confirm: ${confirmed.status}`);
  await confirmed.body?.cancel();
  await sql`update closeout_cards set state = 'failed', last_error = ${STORED_PAYLOAD}
    where id = (select min(id) from closeout_cards where batch_id = ${batches[1]})`.execute(s.db);
  adminVisited.push("/admin/closeout");

  // 补助发放: two batches the maker prepared from a list (one row refused): a draft (审核发放,
  // 撤回 forms, its preview) and one the administrator approved (冲回 form, its report).
  const subsidies: number[] = [];
  for (let i = 0; i < 2; i++) {
    const made = await upload(maker, "/admin/subsidy/new", {
      name: PAYLOAD.slice(0, 60),
      purpose: PAYLOAD,
      school_id: String(school.id),
      source: "list",
      valid_from: todayChina,
      valid_until: tomorrow,
      categories: "canteen",
    }, {
      field: "file",
      name: `${SHORT_PAYLOAD}.csv`,
      text: `学号,金额\n7700000001,5\n7700000002,3\n"${SHORT_PAYLOAD.replaceAll('"', '""')}",1\n`,
    });
    assert.equal(made.status, 303, `subsidy batch: ${made.status} ${await made.text()}`);
    subsidies.push(Number(/\/admin\/subsidy\/(\d+)/.exec(made.headers.get("location")!)![1]));
  }
  const granted = await admin.post(`/admin/subsidy/${subsidies[1]}/approve`, {});
  assert.equal(granted.status, 303, `subsidy approve: ${granted.status}`);
  await granted.body?.cancel();
  adminVisited.push("/admin/subsidy");

  const tainted = await taintStoredTexts(s);
  return { ...s, admin, byRole, a, b, adminVisited, tainted };
}

/** Column names that hold text a person typed or imported, shown back in pages. */
const HUMAN_TEXT =
  /(^|_)(name|names|note|notes|reason|remark|description|label|title|memo|comment|resolution|message|error|filename|file_name|email|address|detail|username|subject|body_text|user_agent)$/;

/** Codes and numbers typed by staff and only shown (no code looks a record up by them). */
const TYPED_CODES = ["billing_rooms.number", "billing_buildings.code", "merchants.code"];

/** JSON written from typed text and shown back (audit before/after, transfer labels, events). */
const JSON_TEXTS = [
  "audit_log.before",
  "audit_log.after",
  "ledger_transfers.details",
  "card_events.details",
];

/**
 * Appends markup to every stored human text. Columns whose constraints refuse it keep their
 * values (a narrow column gets the short payload); returns the columns changed.
 */
async function taintStoredTexts(s: Setup): Promise<string[]> {
  const { rows } = await sql<{ table_name: string; column_name: string }>`
    select c.table_name, c.column_name from information_schema.columns c
    join information_schema.tables t on t.table_schema = c.table_schema
      and t.table_name = c.table_name and t.table_type = 'BASE TABLE'
    where c.table_schema = 'public' and c.data_type in ('text', 'character varying')
    order by c.table_name, c.column_name`.execute(s.db);
  const done: string[] = [];
  for (const { table_name: table, column_name: column } of rows) {
    const typed = HUMAN_TEXT.test(column) || TYPED_CODES.includes(`${table}.${column}`);
    if (!typed || /migration/.test(table)) continue;
    for (const payload of [STORED_PAYLOAD, SHORT_PAYLOAD]) {
      try {
        await sql`update ${sql.table(table)} set ${sql.ref(column)} = ${sql.ref(column)} || ${
          sql.lit(payload)
        } where ${sql.ref(column)} is not null`.execute(s.db);
        done.push(`${table}.${column}`);
        break;
      } catch {
        // A check or length constraint refused it; try the short payload, then leave it.
      }
    }
  }
  for (const entry of JSON_TEXTS) {
    const [table, column] = entry.split(".");
    // Every string member of a JSON object gets the payload appended.
    await sql`update ${sql.table(table)} set ${sql.ref(column)} = (
      select jsonb_object_agg(e.key, case when jsonb_typeof(e.value) = 'string'
        then to_jsonb((e.value #>> '{}') || ${sql.lit(STORED_PAYLOAD)}) else e.value end)
      from jsonb_each(${sql.ref(`${table}.${column}`)}) e)
    where jsonb_typeof(${sql.ref(column)}) = 'object'
      and ${sql.ref(column)} <> '{}'::jsonb`.execute(s.db);
    done.push(entry);
  }
  return done;
}

// ---- the crawler ----

export interface CrawledPage {
  url: string;
  status: number;
  text: string;
}
export interface CrawledForm {
  page: string;
  action: string;
  fields: Record<string, string>;
  /** The fields a person types into (text inputs and text areas), not hidden values or choices. */
  typed: string[];
}

/** The route pattern a concrete URL belongs to (its path only), or null. */
export function routeOfUrl(routes: RouteInfo[], method: string, url: string): RouteInfo | null {
  const path = url.split("?")[0];
  const matching = routes.filter((r) => r.method === method && routeRegex(r.path).test(path));
  // A literal route wins over a parameterised one (/admin/cards/import before /admin/cards/:id).
  return matching.find((r) => !isParameterised(r)) ?? matching[0] ?? null;
}

/**
 * Follows every link, htmx URL and redirect of the pages from `starts` (our own paths for which
 * `include` holds), at most `perRoute` URLs per route pattern, checking each answer with `check`.
 * Long polls are cut off after two seconds. Returns the pages fetched and the POST forms seen.
 */
export async function crawl(
  c: TestClient,
  routes: RouteInfo[],
  starts: string[],
  options: {
    include: (path: string) => boolean;
    check: (url: string, res: Response) => Promise<string>;
    perRoute?: number;
  },
): Promise<{ pages: CrawledPage[]; forms: CrawledForm[] }> {
  const perRoute = options.perRoute ?? 3;
  const queue = [...starts];
  const seen = new Set<string>();
  const counts = new Map<string, number>();
  const pages: CrawledPage[] = [];
  const forms: CrawledForm[] = [];
  const formSeen = new Set<string>();
  while (queue.length) {
    const url = queue.shift()!;
    if (seen.has(url) || !options.include(url.split("?")[0])) continue;
    seen.add(url);
    const route = routeOfUrl(routes, "GET", url);
    if (!route) continue;
    const key = `${route.path}?${[...new URLSearchParams(url.split("?")[1] ?? "").keys()]}`;
    if ((counts.get(key) ?? 0) >= perRoute) continue;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    const res = await getWithin(c, url, 2_000);
    if (!res) continue;
    const text = await options.check(url, res);
    pages.push({ url, status: res.status, text });
    const location = res.headers.get("location");
    if (location?.startsWith("/") && res.status >= 300 && res.status < 400) queue.push(location);
    if (res.status !== 200) continue;
    for (const m of text.matchAll(/\b(?:href|hx-get|src)="(\/[^"/][^"]*|\/)"/g)) {
      const link = decodeEntities(m[1]).split("#")[0];
      if (!link.startsWith("/static/") && !/logout/.test(link)) queue.push(link);
    }
    for (const m of text.matchAll(/\bhx-post="(\/[^"]*)"/g)) {
      addForm({ page: url, action: decodeEntities(m[1]), fields: {}, typed: [] });
    }
    for (const form of text.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)) {
      const action = decodeEntities(/action="([^"]*)"/i.exec(form[1])?.[1] ?? url);
      const { fields, typed } = formFields(form[2]);
      if (!/method="post"/i.test(form[1])) {
        const q = new URLSearchParams(fields).toString();
        queue.push(q ? `${action.split("?")[0]}?${q}` : action);
      } else if (!/logout/.test(action)) addForm({ page: url, action, fields, typed });
    }
  }
  return { pages, forms };

  function addForm(f: CrawledForm) {
    const key = `${f.action} ${Object.keys(f.fields).sort()}`;
    if (formSeen.has(key)) return;
    formSeen.add(key);
    const route = `POST ${routeOfUrl(routes, "POST", f.action)?.path ?? f.action}`;
    if ((counts.get(route) ?? 0) >= perRoute) return;
    counts.set(route, (counts.get(route) ?? 0) + 1);
    forms.push(f);
  }
}

/** The values a browser would send for a form as shown (text fields as filled, choices as set). */
function formFields(inner: string): { fields: Record<string, string>; typed: string[] } {
  const fields: Record<string, string> = {};
  const typed: string[] = [];
  for (const input of inner.matchAll(/<(input|textarea|select)\b([^>]*)>/gi)) {
    const name = /\bname="([^"]+)"/.exec(input[2])?.[1];
    if (!name || name === "_csrf") continue;
    const type = /\btype="([^"]+)"/.exec(input[2])?.[1] ?? "text";
    const choice = input[1].toLowerCase() === "select" ||
      ["hidden", "checkbox", "radio", "submit", "file"].includes(type);
    if (!choice) typed.push(name);
    const value = decodeEntities(/\bvalue="([^"]*)"/.exec(input[2])?.[1] ?? "");
    if (["checkbox", "radio"].includes(type) && !/\bchecked\b/.test(input[2])) {
      if (!(name in fields)) fields[name] = value;
      continue;
    }
    if (type === "submit" && !value) continue;
    fields[name] = value;
  }
  return { fields, typed };
}

/** GET with the client's cookies, giving up on a long poll after `ms` (null then). */
async function getWithin(c: TestClient, url: string, ms: number): Promise<Response | null> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), ms);
  try {
    const res = await c.app.request(`http://localhost:8000${url}`, {
      headers: { cookie: [...c.cookies].map(([k, v]) => `${k}=${v}`).join("; ") },
      signal: abort.signal,
    }, { remoteAddr: { transport: "tcp", hostname: c.ip, port: 50000 } });
    return res;
  } catch (err) {
    if (abort.signal.aborted) return null;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
