/** Sign-in from the 服务号 menu without typing, the binding it needs, and every refusal. */
import assert from "node:assert/strict";
import { makeStaff, makeStudent, setupApp } from "../testkit/mod.ts";
import { testConfig } from "../platform/testing.ts";
import { startWechatStandIn, type WechatStandIn } from "../platform/wechat_standin.ts";
import { ROLES } from "../staff/mod.ts";
import { staffReportLoss } from "../card/mod.ts";
import type { TestClient } from "../platform/testing.ts";
import { checkState, pendingCookie, pendingOpenid, startState } from "./wechat_signin.ts";
import { wechatLoginOf } from "./mod.ts";

const WECHAT_UA =
  "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36 MicroMessenger/8.0.50.2600(0x28003237) NetType/WIFI Language/zh_CN";
const UA = { "user-agent": WECHAT_UA };

async function world() {
  const standin = startWechatStandIn();
  const w = await setupApp({
    env: { ...testConfig().env, ...standin.env, WECHAT_MP_TIMEOUT_MS: "300" },
  });
  return {
    ...w,
    standin,
    async [Symbol.asyncDispose]() {
      await standin.close();
      await w.close();
    },
  };
}

const pathOf = (location: string) => {
  const u = new URL(location);
  return u.pathname + u.search;
};

/** The browser opens `page` from the 服务号 menu: follows every redirect, WeChat's included. */
async function openFromMenu(client: TestClient, standin: WechatStandIn, page: string) {
  let res = await client.get(page, UA);
  const trail: string[] = [page];
  for (let i = 0; i < 8 && res.status >= 300 && res.status < 400; i++) {
    const location = res.headers.get("location")!;
    await res.body?.cancel();
    if (location.startsWith(standin.url)) {
      const wx = await fetch(location, { redirect: "manual" });
      await wx.body?.cancel();
      trail.push("WeChat");
      const back = wx.headers.get("location")!;
      trail.push(pathOf(back).split("?")[0]);
      res = await client.get(pathOf(back), UA);
    } else {
      trail.push(location.split("?")[0]);
      res = await client.get(location, UA);
    }
  }
  return { res, trail };
}

Deno.test("opened from the menu in WeChat, an unbound student signs in once; after that, never types again", async () => {
  await using w = await world();
  const s = await makeStudent(w);
  const phone = s.phone;
  w.standin.control.oauthUser = "oWechatUser_000001";
  const browser = w.client("10.3.0.1");
  let { res, trail } = await openFromMenu(browser, w.standin, "/wallet");
  assert.deepEqual(trail, [
    "/wallet",
    "/login",
    "/login/wechat",
    "WeChat",
    "/login/wechat/callback",
    "/login",
  ]);
  assert.equal(res.status, 200);
  const page = await res.text();
  assert.match(page, /name="bind_wechat" value="1" checked/);
  assert.match(page, /name="phone"/);
  res = await browser.post("/login", {
    phone,
    password: "Passw0rd1",
    next: "/wallet",
    bind_wechat: "1",
  }, { headers: UA });
  assert.equal(res.status, 303);
  assert.equal(res.headers.get("location"), "/wallet");
  assert.equal((await wechatLoginOf(w.db, s.accountId))?.openid, "oWechatUser_000001");
  const events = await w.db.selectFrom("account_events").select("kind")
    .where("account_id", "=", s.accountId).execute();
  assert.deepEqual(events.map((e) => e.kind), ["wechat_bound"]);
  // Another day, another browser session of the same WeChat user: no typing.
  const later = w.client("10.3.0.2");
  ({ res, trail } = await openFromMenu(later, w.standin, "/wallet/transactions"));
  assert.deepEqual(trail.slice(-2), ["/login/wechat/callback", "/wallet/transactions"]);
  assert.equal(res.status, 200);
  // 我的 shows it; 解除微信绑定 ends it.
  assert.match(await later.page("/me"), /微信登录<\/span><span class="cell__ft">已绑定/);
  assert.match(await later.page("/me/wechat"), /解除微信绑定/);
  res = await later.post("/me/wechat/unbind", {});
  assert.equal(res.status, 303);
  assert.equal(await wechatLoginOf(w.db, s.accountId), null);
  const third = w.client("10.3.0.3");
  ({ res } = await openFromMenu(third, w.standin, "/wallet"));
  assert.match(await res.text(), /name="password"/, "unbound: the password form again");
});

Deno.test("unticked 绑定此微信 binds nothing; outside WeChat /login is the form at once", async () => {
  await using w = await world();
  const s = await makeStudent(w);
  w.standin.control.oauthUser = "oWechatUser_000002";
  const browser = w.client("10.3.1.1");
  await openFromMenu(browser, w.standin, "/");
  const res = await browser.post("/login", { phone: s.phone, password: "Passw0rd1", next: "/" }, {
    headers: UA,
  });
  assert.equal(res.status, 303);
  assert.equal(await wechatLoginOf(w.db, s.accountId), null);
  const desktop = await w.client("10.3.1.2").get("/login");
  assert.equal(desktop.status, 200);
  assert.doesNotMatch(await desktop.text(), /bind_wechat/);
});

Deno.test("the callback refuses another browser's state, a replayed code and every WeChat refusal", async () => {
  await using w = await world();
  const s = await makeStudent(w);
  const { bindWechatLogin } = await import("./mod.ts");
  await bindWechatLogin(w.db, s.accountId, "oBoundUser_00003");
  const start = async (client: TestClient) => {
    const res = await client.get("/login/wechat?next=/wallet", UA);
    await res.body?.cancel();
    return new URL(res.headers.get("location")!).searchParams.get("state")!;
  };
  const signedIn = async (client: TestClient) => (await client.get("/me")).status === 200;

  // A code of the attacker's own, brought to the victim's browser without its state cookie.
  const victim = w.client("10.3.2.1");
  const forged = w.standin.issueCode("oBoundUser_00003");
  let res = await victim.get(`/login/wechat/callback?code=${forged}&state=abc`, UA);
  assert.equal(res.status, 400);
  assert.match(await res.text(), /微信授权已过期/);
  assert.equal(await signedIn(victim), false);
  // This browser's cookie, another state.
  const other = w.client("10.3.2.2");
  await start(other);
  res = await other.get(`/login/wechat/callback?code=${forged}&state=not-it`, UA);
  assert.equal(res.status, 400);
  assert.equal(await signedIn(other), false);
  assert.ok(!w.standin.log.includes("oauth"), "WeChat was never asked");

  // The right state and code: signed in. The same code again (a new state): refused here.
  const owner = w.client("10.3.2.3");
  let state = await start(owner);
  const code = w.standin.issueCode("oBoundUser_00003");
  res = await owner.get(`/login/wechat/callback?code=${code}&state=${state}`, UA);
  assert.equal(res.status, 303);
  assert.equal(res.headers.get("location"), "/wallet");
  assert.equal(await signedIn(owner), true);
  const again = w.client("10.3.2.4");
  state = await start(again);
  const calls = w.standin.log.filter((l) => l.startsWith("oauth")).length;
  res = await again.get(`/login/wechat/callback?code=${code}&state=${state}`, UA);
  assert.equal(res.status, 400);
  assert.match(await res.text(), /微信授权已失效/);
  assert.equal(w.standin.log.filter((l) => l.startsWith("oauth")).length, calls);
  // The state is single use too.
  res = await again.get(`/login/wechat/callback?code=${code}&state=${state}`, UA);
  assert.match(await res.text(), /微信授权已过期/);

  const refusals: Array<[string, () => void, RegExp, string]> = [
    ["unknown code", () => {}, /微信授权已失效/, "oauth 40029"],
    ["busy", () => (w.standin.control.oauthBusy = 1), /暂时不可用/, "oauth -1"],
    ["timeout", () => (w.standin.control.oauthHang = 1), /暂时不可用/, "oauth timeout"],
  ];
  for (const [name, arrange, message, logged] of refusals) {
    const c = w.client(`10.3.3.${refusals.findIndex((r) => r[0] === name) + 1}`);
    const st = await start(c);
    arrange();
    const bad = name === "unknown code" ? "NOSUCHCODE" : w.standin.issueCode("oBoundUser_00003");
    res = await c.get(`/login/wechat/callback?code=${bad}&state=${st}`, UA);
    assert.equal(res.status, 400, name);
    assert.match(await res.text(), message, name);
    assert.ok(w.standin.log.includes(logged), name);
    assert.equal(await signedIn(c), false, name);
    // No loop: /login is the password form now.
    const form = await c.get("/login", UA);
    assert.equal(form.status, 200, `${name}: /login shows the form`);
    await form.body?.cancel();
  }
  // A code WeChat already took (40163) and a junk code that never reaches WeChat.
  const used = w.client("10.3.4.1");
  let st = await start(used);
  const taken = w.standin.issueCode("oBoundUser_00003");
  await fetch(
    `${w.standin.url}/sns/oauth2/access_token?appid=${w.standin.appId}&secret=${w.standin.appSecret}&code=${taken}&grant_type=authorization_code`,
  ).then((r) => r.body?.cancel());
  res = await used.get(`/login/wechat/callback?code=${taken}&state=${st}`, UA);
  assert.match(await res.text(), /微信授权已失效/);
  assert.ok(w.standin.log.includes("oauth 40163"));
  st = await start(used);
  res = await used.get(`/login/wechat/callback?code=${encodeURIComponent("<x>")}&state=${st}`, UA);
  assert.equal(res.status, 400);
});

Deno.test("a wrong AppSecret is a refusal with the password form, and a reset password is never skipped", async () => {
  await using w = await world();
  const s = await makeStudent(w);
  const { bindWechatLogin } = await import("./mod.ts");
  await bindWechatLogin(w.db, s.accountId, "oBoundUser_00004");
  await w.db.updateTable("accounts").set({ must_change_password: true })
    .where("id", "=", s.accountId).execute();
  w.standin.control.oauthUser = "oBoundUser_00004";
  const c = w.client("10.3.5.1");
  const { res, trail } = await openFromMenu(c, w.standin, "/wallet");
  assert.equal(trail.at(-1), "/login", "not signed in: staff reset the password");
  assert.equal(res.status, 200);
  await res.body?.cancel();

  await using bad = await (async () => {
    const standin = startWechatStandIn();
    const b = await setupApp({
      env: { ...testConfig().env, ...standin.env, WECHAT_APP_SECRET: "wrong-secret" },
    });
    return {
      ...b,
      standin,
      [Symbol.asyncDispose]: async () => (await standin.close(), await b.close()),
    };
  })();
  bad.standin.control.oauthUser = "oBoundUser_00004";
  const d = bad.client("10.3.5.2");
  const r2 = await openFromMenu(d, bad.standin, "/wallet");
  assert.equal(r2.res.status, 400);
  assert.match(await r2.res.text(), /暂时不可用/);
  assert.ok(bad.standin.log.includes("oauth 40125"));
});

Deno.test("a password change ends the WeChat sign-in unless switched off; 挂失 ends it when chosen", async () => {
  await using w = await world();
  const s = await makeStudent(w);
  const { bindWechatLogin } = await import("./mod.ts");
  await bindWechatLogin(w.db, s.accountId, "oBoundUser_00005");
  let res = await s.client.post("/me/wechat", { on_password_change: "", on_loss: "1" });
  assert.equal(res.status, 303);
  res = await s.client.post("/me/password", {
    old_password: "Passw0rd1",
    new_password: "Another2pass",
  });
  assert.equal(res.status, 303);
  assert.ok(await wechatLoginOf(w.db, s.accountId), "kept: the student switched it off");
  const office = await makeStaff(w, "office9", [ROLES.cardOffice]);
  await staffReportLoss(w.db, { staffId: office.id }, s.cardAccountId);
  assert.equal(await wechatLoginOf(w.db, s.accountId), null, "ended by the loss, as chosen");
  const events = await w.db.selectFrom("account_events").select(["kind", "details"])
    .where("account_id", "=", s.accountId).orderBy("id").execute();
  assert.deepEqual(events.map((e) => e.kind), [
    "wechat_bound",
    "password_changed",
    "wechat_unbound",
  ]);
  assert.deepEqual(events[2].details, { why: "loss" });
  // Nothing bound: the endings cannot be saved.
  res = await s.client.post("/me/wechat", { on_password_change: "1" });
  assert.equal(res.status, 200);
  assert.match(await res.text(), /未绑定微信/);
});

Deno.test("the state and pending cookies are signed, tied to this browser and expire", async () => {
  const config = testConfig();
  const t0 = Date.now();
  const { state, cookie } = await startState(config, "/wallet", t0);
  assert.deepEqual(await checkState(config, cookie, state, t0 + 1000), { next: "/wallet" });
  assert.equal(await checkState(config, cookie, state, t0 + 601_000), null, "ten minutes");
  assert.equal(await checkState(config, cookie, "other", t0), null);
  const tampered = cookie.replace(/\.[^.]+\.([^.]+)$/, (_, mac) => `.${btoa("/evil")}.${mac}`);
  assert.equal(await checkState(config, tampered, state, t0), null);
  const pending = await pendingCookie(config, "oSomeone_0001", t0);
  assert.equal(await pendingOpenid(config, pending, t0 + 1000), "oSomeone_0001");
  assert.equal(await pendingOpenid(config, pending, t0 + 601_000), null);
  assert.equal(
    await pendingOpenid(config, pending.replace("oSomeone_0001", "oSomeone_0002"), t0),
    null,
  );
});
