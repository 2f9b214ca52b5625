import assert from "node:assert/strict";
import { createStaff, listAudit, ROLES } from "../staff/mod.ts";
import type { TestClient } from "../platform/testing.ts";
import { type Ctx, fieldError, registered, setup } from "./_test_support.ts";
import { makeAccount, makeStaff, setupApp } from "../testkit/mod.ts";
import { ensureSchool } from "./mod.ts";

async function staff(ctx: Ctx, role: string, ip = "10.20.0.1"): Promise<TestClient> {
  const username = `u_${role.replace(/_/g, "")}`;
  await createStaff(ctx.h.db, {
    username,
    name: `员工${role}`,
    password: "Staff12345",
    roles: [role as typeof ROLES.infoCentre],
  });
  const c = ctx.client(ip);
  const res = await c.post("/admin/login", { username, password: "Staff12345" });
  assert.equal(res.status, 303);
  return c;
}

async function accountIdOf(ctx: Ctx, phone: string): Promise<number> {
  return (await ctx.h.db.selectFrom("accounts").select("id").where("phone", "=", phone)
    .executeTakeFirstOrThrow()).id;
}

Deno.test("图文信息中心 resets a login password: shown once, sessions end, audited, new password forced", async () => {
  const ctx = await setup();
  try {
    const student = await registered(ctx, "13800000002", "Abc12345");
    const id = await accountIdOf(ctx, "13800000002");
    const info = await staff(ctx, ROLES.infoCentre);

    const list = await info.page("/admin/accounts?phone=0000002");
    assert.match(list, /13800000002/);
    assert.match(list, new RegExp(`/admin/accounts/${id}`));
    const detail = await info.page(`/admin/accounts/${id}`);
    assert.match(detail, /重置登录密码/);
    assert.match(detail, /云南城市建设职业学院/);

    const res = await info.post(`/admin/accounts/${id}/reset-password`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("cache-control"), "no-store");
    const html = await res.text();
    const temp = /data-testid="temp-password">([^<]+)</.exec(html)![1];
    assert.match(temp, /^[A-Za-z0-9]{10}$/);
    assert.ok(/[A-Za-z]/.test(temp) && /\d/.test(temp));
    // Shown once: the detail page never shows it again, and only a hash is stored.
    assert.ok(!(await info.page(`/admin/accounts/${id}`)).includes(temp));
    const row = await ctx.h.db.selectFrom("accounts").select([
      "password_hash",
      "must_change_password",
    ])
      .where("id", "=", id).executeTakeFirstOrThrow();
    assert.ok(!row.password_hash.includes(temp));
    assert.equal(row.must_change_password, true);

    assert.equal((await student.get("/me")).status, 303, "the student's session ended");

    const [audit] = await listAudit(ctx.h.db, { action: "account.password_reset" });
    assert.equal(audit.target_id, String(id));
    assert.equal(audit.username, "u_infocentre");
    assert.ok(!JSON.stringify(audit).includes(temp), "the audit never holds the password");

    // The old password no longer works; the temporary one leads to 设置新登录密码 before anything else.
    const c = ctx.client("10.21.0.1");
    assert.equal(
      (await c.post("/login", { phone: "13800000002", password: "Abc12345" })).status,
      422,
    );
    const login = await c.post("/login", { phone: "13800000002", password: temp, next: "/me" });
    assert.equal(login.status, 200);
    const form = await login.text();
    assert.match(form, /设置新登录密码/);
    assert.equal(c.cookies.has("yxt_sid"), false, "no session until a new password is set");
    assert.equal((await c.get("/")).status, 303);
    const ticket = /name="ticket" value="([^"]+)"/.exec(form)![1];

    const sameAsTemp = await c.post("/password/new", { ticket, new_password: temp });
    assert.equal(fieldError(await sameAsTemp.text(), "new_password"), "新密码不能与临时密码相同");
    const weak = await c.post("/password/new", { ticket, new_password: "lettersonly" });
    assert.equal(weak.status, 422);
    const forged = await c.post("/password/new", {
      // Change the last character (to one it is not), so the signature no longer matches.
      ticket: ticket.slice(0, -1) + (ticket.endsWith("0") ? "1" : "0"),
      new_password: "Mine12345",
    });
    assert.match(await forged.text(), /页面已过期，请重新登录/);

    const ok = await c.post("/password/new", { ticket, new_password: "Mine12345", next: "/me" });
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.get("location"), "/me");
    assert.equal((await c.get("/me")).status, 200);
    // The ticket died with the temporary password.
    const replay = await ctx.client("10.21.0.2").post("/password/new", {
      ticket,
      new_password: "Evil12345",
    });
    assert.match(await replay.text(), /页面已过期/);
    const fresh = ctx.client("10.21.0.3");
    assert.equal(
      (await fresh.post("/login", { phone: "13800000002", password: "Mine12345" })).status,
      303,
    );
  } finally {
    await ctx.close();
  }
});

Deno.test("the reset also lifts a login lockout of that phone", async () => {
  const ctx = await setup();
  try {
    await registered(ctx, "13800000002", "Abc12345");
    const id = await accountIdOf(ctx, "13800000002");
    // Five from one address slow it; five more from elsewhere spend the phone's hourly budget.
    const c = ctx.client("10.22.0.1");
    for (let i = 0; i < 10; i++) {
      const from = i < 5 ? c : ctx.client(`10.22.1.${i}`);
      await (await from.post("/login", { phone: "13800000002", password: "Bad12345" })).body
        ?.cancel();
    }
    assert.equal(
      (await ctx.client("10.22.2.1").post("/login", { phone: "13800000002", password: "Abc12345" }))
        .status,
      429,
    );
    const info = await staff(ctx, ROLES.infoCentre);
    assert.match(await info.page(`/admin/accounts/${id}`), /登录已锁定/);
    const html = await (await info.post(`/admin/accounts/${id}/reset-password`)).text();
    const temp = /data-testid="temp-password">([^<]+)</.exec(html)![1];
    assert.equal((await c.post("/login", { phone: "13800000002", password: temp })).status, 200);
  } finally {
    await ctx.close();
  }
});

Deno.test("only 图文信息中心 and system admins reach the account pages and the outbox", async () => {
  const ctx = await setup();
  try {
    await registered(ctx, "13800000002");
    const id = await accountIdOf(ctx, "13800000002");
    const paths = ["/admin/accounts", `/admin/accounts/${id}`, "/admin/outbox"];
    for (const role of [ROLES.infoCentre, ROLES.sysadmin]) {
      const c = await staff(ctx, role);
      for (const p of paths) assert.equal((await c.get(p)).status, 200, `${role} ${p}`);
    }
    for (const role of [ROLES.cardOffice, ROLES.finance]) {
      const c = await staff(ctx, role);
      for (const p of paths) assert.equal((await c.get(p)).status, 403, `${role} ${p}`);
      const res = await c.post(`/admin/accounts/${id}/reset-password`);
      assert.equal(res.status, 403, `${role} reset`);
    }
    const anon = ctx.client();
    for (const p of paths) {
      const res = await anon.get(p);
      assert.equal(res.status, 303);
      assert.match(res.headers.get("location")!, /^\/admin\/login/);
    }
    // A student session is not a staff session.
    const student = await registered(ctx, "13800000003");
    assert.equal((await student.get("/admin/accounts")).status, 303);
    const row = await ctx.h.db.selectFrom("accounts").select("must_change_password").where(
      "id",
      "=",
      id,
    )
      .executeTakeFirstOrThrow();
    assert.equal(row.must_change_password, false, "refused resets changed nothing");
    assert.equal((await listAudit(ctx.h.db, { action: "account.password_reset" })).length, 0);
  } finally {
    await ctx.close();
  }
});

Deno.test("account search refuses odd input and unknown ids with a message, never a 500", async () => {
  const ctx = await setup();
  try {
    const info = await staff(ctx, ROLES.infoCentre);
    for (const q of ["<script>", "' OR 1=1 --", "１３８", "13\u200b8", "1".repeat(300), "%", "_"]) {
      const res = await info.get(`/admin/accounts?phone=${encodeURIComponent(q)}`);
      assert.equal(res.status, 422, q);
      assert.match(await res.text(), /请输入3-11位数字/);
    }
    for (const bad of ["0", "abc", "99999999", "1e3", "-1"]) {
      assert.equal((await info.get(`/admin/accounts/${bad}`)).status, 404, bad);
      assert.equal((await info.post(`/admin/accounts/${bad}/reset-password`)).status, 404, bad);
    }
  } finally {
    await ctx.close();
  }
});

Deno.test("一信通账号 search pages, counts and exports the accounts a phone fragment finds", async () => {
  await using w = await setupApp();
  const school = await ensureSchool(w.db, "云南城市建设职业学院", "YNCJ");
  for (let i = 0; i < 55; i++) {
    await makeAccount(w.db, school.id, `1371234${String(i).padStart(4, "0")}`);
  }
  const info = await makeStaff(w, "info2", [ROLES.infoCentre]);
  const first = await info.client.page("/admin/accounts?phone=1371234");
  assert.match(first, /共 <strong>55<\/strong> 条，第 1–50 条/);
  assert.match(await info.client.page("/admin/accounts?phone=1371234&page=2"), /第 51–55 条/);
  const csv = await (await info.client.get("/admin/accounts?phone=1371234&export=csv")).text();
  const lines = csv.trim().split("\r\n");
  assert.equal(lines.length, 56);
  assert.match(lines[1], /^13712340000,云南城市建设职业学院,未绑定,/);
  // A bad fragment exports nothing: the page says why.
  const bad = await info.client.get("/admin/accounts?phone=abc&export=csv");
  assert.equal(bad.status, 422);
  assert.match(await bad.text(), /请输入3-11位数字/);
});
