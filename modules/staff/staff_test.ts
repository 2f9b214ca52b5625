import assert from "node:assert/strict";
import { createApp } from "../../main.ts";
import { createTestDatabase, TestClient, testConfig } from "../platform/testing.ts";
import { loadAssets } from "../platform/assets.ts";
import { createStaff, listAudit, ROLES } from "./mod.ts";

async function setup() {
  await loadAssets();
  const h = await createTestDatabase();
  const config = testConfig();
  const app = createApp({ db: h.db, config, onShutdown: () => {} });
  await createStaff(h.db, {
    username: "boss",
    name: "管理员",
    password: "Boss12345",
    roles: [ROLES.sysadmin],
  });
  await createStaff(h.db, {
    username: "clerk",
    name: "财务",
    password: "Clerk12345",
    roles: [ROLES.finance],
  });
  return { h, config, app, client: (ip = "10.0.0.1") => new TestClient(app, config, ip) };
}

Deno.test("staff sign in with the right password, get a new session cookie, and sign out", async () => {
  const { h, app, client } = await setup();
  try {
    const c = client();
    const res = await c.post("/admin/login", { username: "boss", password: "Boss12345" });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get("location"), "/admin");
    const cookie = res.headers.getSetCookie().find((s) => s.startsWith("yxt_staff="))!;
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Lax/);
    assert.match(cookie, /Path=\/admin/);
    const home = await c.page("/admin");
    assert.match(home, /管理后台/);
    assert.match(home, /员工账号/);
    const out = await c.post("/admin/logout");
    assert.equal(out.status, 303);
    const after = await c.get("/admin");
    assert.equal(after.status, 303);
    assert.match(after.headers.get("location")!, /^\/admin\/login/);
    void app;
  } finally {
    await h.close();
  }
});

Deno.test("a wrong staff password is refused with a message and slows that address after five tries", async () => {
  const { h, client } = await setup();
  try {
    const c = client();
    for (let i = 0; i < 4; i++) {
      const res = await c.post("/admin/login", { username: "boss", password: "wrong-pass1" });
      assert.equal(res.status, 400);
      assert.match(await res.text(), /用户名或密码错误/);
    }
    const fifth = await c.post("/admin/login", { username: "boss", password: "wrong-pass1" });
    assert.equal(fifth.status, 429);
    assert.match(await fifth.text(), /登录尝试过于频繁，请5分钟后再试/);
    // Even the right password waits at that address (nothing there proves it is boss)...
    const right = await c.post("/admin/login", { username: "boss", password: "Boss12345" });
    assert.equal(right.status, 429);
    // ...while boss signs in from the office.
    const office = await client("10.0.9.1").post("/admin/login", {
      username: "boss",
      password: "Boss12345",
    });
    assert.equal(office.status, 303);
  } finally {
    await h.close();
  }
});

Deno.test("an unknown username gets the same answer as a wrong password", async () => {
  const { h, client } = await setup();
  try {
    const res = await client().post("/admin/login", {
      username: "nobody",
      password: "Whatever123",
    });
    assert.equal(res.status, 400);
    assert.match(await res.text(), /用户名或密码错误/);
  } finally {
    await h.close();
  }
});

Deno.test("staff login form refuses empty and oversized input without a 500", async () => {
  const { h, client } = await setup();
  try {
    const c = client();
    for (
      const form of [{}, { username: "", password: "" }, {
        username: "x".repeat(500),
        password: "y",
      }, {
        username: "<script>alert(1)</script>",
        password: "' or 1=1 --",
      }]
    ) {
      const res = await c.post("/admin/login", form as Record<string, string>);
      assert.ok(res.status === 422 || res.status === 400, `status ${res.status}`);
      const html = await res.text();
      assert.doesNotMatch(html, /<script>alert/);
    }
  } finally {
    await h.close();
  }
});

Deno.test("a staff member without the role gets 403; signed-out visitors go to the sign-in", async () => {
  const { h, client } = await setup();
  try {
    const anon = await client().get("/admin/staff");
    assert.equal(anon.status, 303);
    assert.equal(anon.headers.get("location"), "/admin/login?next=%2Fadmin%2Fstaff");
    const c = client();
    await c.post("/admin/login", { username: "clerk", password: "Clerk12345" });
    const res = await c.get("/admin/staff");
    assert.equal(res.status, 403);
    assert.match(await res.text(), /您没有权限/);
    const post = await c.post("/admin/staff", {
      username: "evil",
      name: "x",
      password: "Evil12345",
      roles: "sysadmin",
    });
    assert.equal(post.status, 403);
    const n = await h.db.selectFrom("staff").select("id").where("username", "=", "evil").execute();
    assert.equal(n.length, 0);
  } finally {
    await h.close();
  }
});

Deno.test("creating a staff member is audited and forces a password change at first sign-in", async () => {
  const { h, client } = await setup();
  try {
    const admin = client();
    await admin.post("/admin/login", { username: "boss", password: "Boss12345" });
    const res = await admin.post("/admin/staff", {
      username: "wang",
      name: "王老师",
      password: "Wang12345",
      roles: [ROLES.cardOffice, ROLES.infoCentre],
    });
    assert.equal(res.status, 303);
    const audit = await listAudit(h.db, { action: "staff.created" });
    assert.equal(audit.length, 1);
    assert.equal(audit[0].username, "boss");
    assert.deepEqual((audit[0].after as { roles: string[] }).roles, ["card_office", "info_centre"]);

    const wang = client("10.0.0.2");
    await wang.post("/admin/login", { username: "wang", password: "Wang12345" });
    const home = await wang.get("/admin");
    assert.equal(home.status, 303);
    assert.equal(home.headers.get("location"), "/admin/password");
    const changed = await wang.post("/admin/password", {
      old_password: "Wang12345",
      new_password: "Wang67890a",
    });
    assert.equal(changed.status, 303);
    assert.equal((await wang.get("/admin")).status, 200);
  } finally {
    await h.close();
  }
});

Deno.test("state-changing requests without the CSRF token or from another origin are refused", async () => {
  const { h, client } = await setup();
  try {
    const c = client();
    const noToken = await c.post("/admin/login", { username: "boss", password: "Boss12345" }, {
      csrf: false,
    });
    assert.equal(noToken.status, 403);
    assert.match(await noToken.text(), /页面已过期/);
    const wrongToken = await c.post("/admin/login", {
      username: "boss",
      password: "Boss12345",
      _csrf: "x",
    }, {
      csrf: false,
    });
    assert.equal(wrongToken.status, 403);
    const cross = await c.post("/admin/login", { username: "boss", password: "Boss12345" }, {
      headers: { origin: "https://evil.example" },
    });
    assert.equal(cross.status, 403);
    assert.equal(await h.db.selectFrom("sessions").select("id").executeTakeFirst(), undefined);
  } finally {
    await h.close();
  }
});

Deno.test("every page carries the security headers, stylesheets and scripts nosniff only; static assets are cached and gzipped", async () => {
  const { h, client } = await setup();
  try {
    const c = client();
    const res = await c.get("/admin/login");
    const csp = res.headers.get("content-security-policy")!;
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    assert.equal(res.headers.get("x-frame-options"), "DENY");
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    const html = await res.text();
    assert.doesNotMatch(html, /<script>(?!<\/script>)/, "no inline script");
    const href = /href="(\/static\/app\.css\?v=[0-9a-f]+)"/.exec(html)![1];
    const css = await c.get(href, { "accept-encoding": "gzip" });
    assert.equal(css.status, 200);
    assert.equal(css.headers.get("content-encoding"), "gzip");
    assert.match(css.headers.get("cache-control")!, /immutable/);
    // A stylesheet or script has no document of its own: nosniff, and no policy to carry.
    assert.equal(css.headers.get("x-content-type-options"), "nosniff");
    assert.equal(css.headers.get("content-security-policy"), null);
    await css.body?.cancel();
    const htmx = await c.get("/static/vendor/htmx.min.js", { "accept-encoding": "gzip" });
    assert.equal(htmx.status, 200);
    assert.equal(htmx.headers.get("x-content-type-options"), "nosniff");
    assert.equal(htmx.headers.get("x-frame-options"), null);
    await htmx.body?.cancel();
    // The service worker's script is its worker's document: it keeps the policy.
    const sw = await c.get("/sw.js");
    assert.match(sw.headers.get("content-security-policy") ?? "", /script-src 'self'/);
    await sw.body?.cancel();
    assert.equal((await c.get("/static/../deno.json")).status, 404);
  } finally {
    await h.close();
  }
});

Deno.test("healthz reports the database and metrics count requests", async () => {
  const { h, client } = await setup();
  try {
    const c = client();
    const health = await c.get("/healthz");
    assert.equal(health.status, 200);
    assert.deepEqual(await health.json(), { status: "ok", database: "reachable" });
    await c.get("/no-such-page");
    // The scraper runs on this host (/metrics answers loopback only without METRICS_TOKEN).
    const metrics = await (await client("127.0.0.1").get("/metrics")).text();
    assert.match(
      metrics,
      /yxt_http_requests_total\{method="GET",route="\/healthz",status="200"\} \d+/,
    );
    assert.match(metrics, /yxt_http_request_duration_seconds_bucket/);
  } finally {
    await h.close();
  }
});

Deno.test("the audit log page lists records and filters them", async () => {
  const { h, client } = await setup();
  try {
    const c = client();
    await c.post("/admin/login", { username: "boss", password: "Boss12345" });
    const created = await c.post("/admin/staff", {
      username: "lihua",
      name: "李华",
      password: "Qx1234567",
      roles: ROLES.finance,
    });
    assert.equal(created.status, 303);
    const page = await c.page("/admin/audit?action=staff.created");
    assert.match(page, /<small class="code">staff\.created<\/small>/);
    const none = await c.page("/admin/audit?action=nothing-like-this");
    assert.doesNotMatch(none, /<small class="code">staff\.created<\/small>/);
    assert.match(none, /没有符合筛选条件的记录/);
    const bad = await c.get("/admin/audit?before=abc");
    assert.equal(bad.status, 200);
  } finally {
    await h.close();
  }
});
