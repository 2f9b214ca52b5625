import assert from "node:assert/strict";
import { sql } from "kysely";
import { startSilentServer } from "../mail/mod.ts";
import { createApp } from "../../main.ts";
import { TestClient } from "../platform/testing.ts";
import { createMailer } from "../mail/mod.ts";
import {
  BAD_TEXT,
  codeIn,
  count,
  escaped,
  fieldError,
  registered,
  setup,
} from "./_test_support.ts";

const HX = { "hx-request": "true" };

Deno.test("binding an email: the code that arrives over SMTP binds the address", async () => {
  const ctx = await setup({ smtp: true });
  try {
    const c = await registered(ctx);
    const page = await c.page("/me/email");
    for (const label of ["邮箱", "发送验证码", "确定"]) assert.ok(page.includes(label), label);

    const sent = await c.post("/me/email/code", { email: "Student@QQ.com" });
    assert.equal(sent.status, 200);
    const html = await sent.text();
    assert.match(html, /验证码已发送至 student@qq\.com/);
    assert.match(html, /data-countdown-start="60"/, "resend countdown");
    assert.ok(html.includes('value="Student@QQ.com"'), "email kept in the form");
    const mail = await ctx.smtp!.nextMail("student@qq.com");
    assert.match(mail.subject, /绑定邮箱/);
    const code = codeIn(mail);

    const stored = await ctx.h.db.selectFrom("email_codes").select("code_hash")
      .executeTakeFirstOrThrow();
    assert.ok(!stored.code_hash.includes(code), "only a keyed hash is stored");

    const ok = await c.post("/me/email", { email: "student@qq.com", code });
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.get("location"), "/me/email?done=1");
    const done = await c.page("/me/email?done=1");
    assert.match(done, /邮箱绑定成功/);
    assert.match(await c.page("/me"), /student@qq\.com/);
    const row = await ctx.h.db.selectFrom("accounts").select(["email", "email_verified_at"])
      .executeTakeFirstOrThrow();
    assert.equal(row.email, "student@qq.com");
    assert.ok(row.email_verified_at);

    // Single use: the same code does not work twice.
    const again = await c.post("/me/email", { email: "student@qq.com", code });
    assert.equal(again.status, 422);
    assert.equal(fieldError(await again.text(), "code"), "请先获取验证码");
  } finally {
    await ctx.close();
  }
});

Deno.test("htmx [发送验证码] swaps only the form, with the countdown and errors in place", async () => {
  const ctx = await setup({ smtp: true });
  try {
    const c = await registered(ctx);
    const res = await c.post("/me/email/code", { email: "a@163.com" }, { headers: HX });
    assert.equal(res.status, 200);
    const html = await res.text();
    assert.ok(!html.includes("<html"), "a fragment, not a page");
    assert.match(html, /data-countdown-start="60" data-countdown-target="send-code"/);
    await ctx.smtp!.nextMail("a@163.com");
    const bad = await c.post("/me/email/code", { email: "not-an-email" }, { headers: HX });
    assert.equal(bad.status, 200, "htmx swaps 2xx only, so errors come back as 200 fragments");
    assert.match(fieldError(await bad.text(), "email")!, /邮箱格式不正确/);
  } finally {
    await ctx.close();
  }
});

Deno.test("a wrong code counts down and the code dies after five wrong tries", async () => {
  const ctx = await setup({ smtp: true });
  try {
    const c = await registered(ctx);
    await c.post("/me/email/code", { email: "b@qq.com" });
    const code = codeIn(await ctx.smtp!.nextMail("b@qq.com"));
    const wrong = code === "000000" ? "111111" : "000000";
    for (let left = 4; left >= 1; left--) {
      const res = await c.post("/me/email", { email: "b@qq.com", code: wrong });
      assert.equal(fieldError(await res.text(), "code"), `验证码错误，还可尝试${left}次`);
    }
    const fifth = await c.post("/me/email", { email: "b@qq.com", code: wrong });
    assert.equal(fieldError(await fifth.text(), "code"), "验证码错误次数过多，请重新获取");
    const right = await c.post("/me/email", { email: "b@qq.com", code });
    assert.equal(right.status, 422);
    assert.equal(fieldError(await right.text(), "code"), "验证码错误次数过多，请重新获取");
    const row = await ctx.h.db.selectFrom("accounts").select("email").executeTakeFirstOrThrow();
    assert.equal(row.email, null);
  } finally {
    await ctx.close();
  }
});

Deno.test("a code expires after ten minutes and a newer code replaces an older one", async () => {
  const ctx = await setup({ smtp: true });
  try {
    const c = await registered(ctx);
    await c.post("/me/email/code", { email: "c@qq.com" });
    const first = codeIn(await ctx.smtp!.nextMail("c@qq.com"));
    const row = await ctx.h.db.selectFrom("email_codes").select(["created_at", "expires_at"])
      .executeTakeFirstOrThrow();
    assert.equal(row.expires_at.getTime() - row.created_at.getTime(), 600_000);

    await sql`update email_codes set expires_at = now() - interval '1 second'`.execute(ctx.h.db);
    const expired = await c.post("/me/email", { email: "c@qq.com", code: first });
    assert.equal(fieldError(await expired.text(), "code"), "验证码已过期，请重新获取");

    // Past the one-minute resend wait, a new code kills the old one.
    await sql`update email_codes set created_at = now() - interval '2 minutes'`.execute(ctx.h.db);
    await c.post("/me/email/code", { email: "c@qq.com" });
    const second = codeIn(await ctx.smtp!.nextMail("c@qq.com"));
    await sql`update email_codes set created_at = now() - interval '2 minutes'`.execute(ctx.h.db);
    await c.post("/me/email/code", { email: "c@qq.com" });
    const third = codeIn(await ctx.smtp!.nextMail("c@qq.com"));
    if (second !== third) {
      const old = await c.post("/me/email", { email: "c@qq.com", code: second });
      assert.equal(old.status, 422);
    }
    const ok = await c.post("/me/email", { email: "c@qq.com", code: third });
    assert.equal(ok.status, 303);
  } finally {
    await ctx.close();
  }
});

Deno.test("a code sent to one address does not bind another", async () => {
  const ctx = await setup({ smtp: true });
  try {
    const c = await registered(ctx);
    await c.post("/me/email/code", { email: "mine@qq.com" });
    const code = codeIn(await ctx.smtp!.nextMail("mine@qq.com"));
    const res = await c.post("/me/email", { email: "other@qq.com", code });
    assert.equal(res.status, 422);
    assert.match(fieldError(await res.text(), "email")!, /另一个邮箱/);
    const row = await ctx.h.db.selectFrom("accounts").select("email").executeTakeFirstOrThrow();
    assert.equal(row.email, null);
  } finally {
    await ctx.close();
  }
});

Deno.test("codes are re-sent at most once a minute and five times an hour per account", async () => {
  const ctx = await setup({ smtp: true });
  try {
    const c = await registered(ctx);
    assert.equal((await c.post("/me/email/code", { email: "d@qq.com" })).status, 200);
    const soon = await c.post("/me/email/code", { email: "d@qq.com" });
    assert.equal(soon.status, 429);
    const soonHtml = await soon.text();
    assert.match(fieldError(soonHtml, "email")!, /请\d+秒后再获取验证码/);
    assert.match(soonHtml, /data-countdown-start="\d+"/, "the countdown continues");
    for (let i = 2; i <= 5; i++) {
      await sql`update email_codes set created_at = now() - interval '2 minutes'`.execute(ctx.h.db);
      const res = await c.post("/me/email/code", { email: `d${i}@qq.com` });
      assert.equal(res.status, 200, `send ${i}`);
    }
    await sql`update email_codes set created_at = now() - interval '2 minutes'`.execute(ctx.h.db);
    const sixth = await c.post("/me/email/code", { email: "d6@qq.com" });
    assert.equal(sixth.status, 429);
    assert.match(fieldError(await sixth.text(), "email")!, /验证码发送过于频繁，请\d+分钟后再试/);
    assert.equal(ctx.smtp!.messages.length, 5);
  } finally {
    await ctx.close();
  }
});

Deno.test("one address gets at most five codes an hour, whoever asks", async () => {
  const ctx = await setup({ smtp: true });
  try {
    for (let i = 0; i < 5; i++) {
      const c = await registered(ctx, `1380000001${i}`, "Abc12345", `10.5.0.${i + 1}`);
      assert.equal((await c.post("/me/email/code", { email: "victim@qq.com" })).status, 200);
    }
    const c = await registered(ctx, "13800000020", "Abc12345", "10.5.0.9");
    const res = await c.post("/me/email/code", { email: "victim@qq.com" });
    assert.equal(res.status, 429);
    assert.equal(ctx.smtp!.messages.length, 5);
  } finally {
    await ctx.close();
  }
});

Deno.test("bad input in the bind-email form: Chinese message, input kept, nothing sent or stored", async () => {
  const ctx = await setup({ smtp: true });
  try {
    const c = await registered(ctx);
    const emails = {
      ...BAD_TEXT,
      noAt: "student.qq.com",
      fullWidthAt: "a＠qq.com",
      idn: "学生@qq.com",
    };
    for (const path of ["/me/email/code", "/me/email"]) {
      for (const [kind, bad] of Object.entries(emails)) {
        const res = await c.post(path, { email: bad, code: "123456" });
        const html = await res.text();
        assert.equal(res.status, 422, `${path} ${kind}`);
        assert.ok(/[\u4e00-\u9fff]/.test(fieldError(html, "email") ?? ""), `${path} ${kind}`);
        if (bad) {
          assert.ok(html.includes(`value="${escaped(bad.slice(0, 200))}"`), `${path} ${kind} kept`);
        }
      }
    }
    for (
      const [kind, bad] of Object.entries({ ...BAD_TEXT, fiveDigits: "12345", letters: "12345a" })
    ) {
      const res = await c.post("/me/email", { email: "ok@qq.com", code: bad });
      const html = await res.text();
      assert.equal(res.status, 422, `code ${kind}`);
      assert.ok(/[\u4e00-\u9fff]/.test(fieldError(html, "code") ?? ""), `code ${kind}`);
      assert.ok(html.includes('value="ok@qq.com"'), "email kept");
    }
    assert.equal(await count(ctx.h, "email_codes"), 0);
    assert.equal(ctx.smtp!.messages.length, 0);
    const row = await ctx.h.db.selectFrom("accounts").select("email").executeTakeFirstOrThrow();
    assert.equal(row.email, null);
  } finally {
    await ctx.close();
  }
});

Deno.test("forgotten password: the emailed code resets it and ends every session", async () => {
  const ctx = await setup({ smtp: true });
  try {
    const c = await registered(ctx, "13800000002", "Abc12345");
    await c.post("/me/email/code", { email: "e@qq.com" });
    await c.post("/me/email", {
      email: "e@qq.com",
      code: codeIn(await ctx.smtp!.nextMail("e@qq.com")),
    });

    const anon = ctx.client("10.6.0.1");
    const page = await anon.page("/password/forgot");
    for (
      const label of [
        "手机号",
        "邮箱验证码",
        "发送验证码",
        "新密码",
        "确认",
        "教学楼 503 图文信息中心",
      ]
    ) {
      assert.ok(page.includes(label), label);
    }
    const sent = await anon.post("/password/forgot/code", { phone: "13800000002" });
    assert.equal(sent.status, 200);
    assert.match(await sent.text(), /验证码已发送至绑定邮箱 e\*\*\*@qq\.com/);
    const mail = await ctx.smtp!.nextMail("e@qq.com");
    assert.match(mail.subject, /找回登录密码/);

    const weak = await anon.post("/password/forgot", {
      phone: "13800000002",
      code: codeIn(mail),
      new_password: "short",
    });
    assert.equal(weak.status, 422);
    assert.match(fieldError(await weak.text(), "new_password")!, /8-64/);

    const res = await anon.post("/password/forgot", {
      phone: "13800000002",
      code: codeIn(mail),
      new_password: "Reset1234",
    });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get("location"), "/login?reset=1");
    assert.match(await anon.page("/login?reset=1"), /登录密码已重置/);
    assert.equal((await c.get("/me")).status, 303, "the old session ended");
    assert.equal(
      (await anon.post("/login", { phone: "13800000002", password: "Abc12345" })).status,
      422,
    );
    assert.equal(
      (await anon.post("/login", { phone: "13800000002", password: "Reset1234" })).status,
      303,
    );
    // The code was single use.
    const again = await ctx.client("10.6.0.2").post("/password/forgot", {
      phone: "13800000002",
      code: codeIn(mail),
      new_password: "Again1234",
    });
    assert.equal(again.status, 422);
  } finally {
    await ctx.close();
  }
});

Deno.test("forgotten password without a bound email, or for an unknown phone, points to 503 alike", async () => {
  const ctx = await setup({ smtp: true });
  try {
    await registered(ctx, "13800000002");
    const anon = ctx.client("10.7.0.1");
    const noEmail = await anon.post("/password/forgot/code", { phone: "13800000002" });
    const unknown = await anon.post("/password/forgot/code", { phone: "13800000003" });
    const a = fieldError(await noEmail.text(), "phone");
    const b = fieldError(await unknown.text(), "phone");
    assert.match(a!, /教学楼 503 图文信息中心/);
    assert.equal(a, b, "the same answer: registration is not revealed");
    assert.equal(noEmail.status, unknown.status);
    assert.equal(ctx.smtp!.messages.length, 0);
    const reset = await anon.post("/password/forgot", {
      phone: "13800000003",
      code: "123456",
      new_password: "Reset1234",
    });
    assert.equal(fieldError(await reset.text(), "code"), "请先获取验证码");
  } finally {
    await ctx.close();
  }
});

Deno.test("bad input in every forgotten-password field: message, input kept, password unchanged", async () => {
  const ctx = await setup({ smtp: true });
  try {
    await registered(ctx, "13800000002", "Abc12345");
    const before = await ctx.h.db.selectFrom("accounts").select("password_hash")
      .executeTakeFirstOrThrow();
    const anon = ctx.client("10.8.0.1");
    const base = { phone: "13800000002", code: "123456", new_password: "Reset1234" };
    for (const field of ["phone", "code", "new_password"]) {
      for (const [kind, bad] of Object.entries(BAD_TEXT)) {
        if (field === "new_password" && kind === "markup") continue; // letters and digits: valid
        const res = await anon.post("/password/forgot", { ...base, [field]: bad });
        const html = await res.text();
        assert.equal(res.status, 422, `${field}=${kind}`);
        assert.ok(/[\u4e00-\u9fff]/.test(fieldError(html, field) ?? ""), `${field}=${kind}`);
        if (field !== "new_password" && bad) {
          assert.ok(
            html.includes(`value="${escaped(bad.slice(0, 200))}"`),
            `${field}=${kind} kept`,
          );
        }
        assert.ok(!html.includes("Reset1234"), "password never echoed");
      }
    }
    for (const [kind, bad] of Object.entries(BAD_TEXT)) {
      const res = await anon.post("/password/forgot/code", { phone: bad });
      assert.equal(res.status, 422, `send phone=${kind}`);
      assert.ok(/[\u4e00-\u9fff]/.test(fieldError(await res.text(), "phone") ?? ""));
    }
    const after = await ctx.h.db.selectFrom("accounts").select("password_hash")
      .executeTakeFirstOrThrow();
    assert.equal(after.password_hash, before.password_hash);
    assert.equal(ctx.smtp!.messages.length, 0);
  } finally {
    await ctx.close();
  }
});

Deno.test("a failing mail server gives a clear message and leaves no usable code", async () => {
  const ctx = await setup({ smtp: true });
  try {
    const c = await registered(ctx);
    ctx.smtp!.refuse = true;
    const res = await c.post("/me/email/code", { email: "f@qq.com" });
    assert.equal(res.status, 503);
    const html = await res.text();
    assert.match(fieldError(html, "email")!, /邮件发送失败/);
    assert.ok(html.includes('value="f@qq.com"'));
    const live = await ctx.h.db.selectFrom("email_codes").select("id").where("used_at", "is", null)
      .execute();
    assert.equal(live.length, 0);
  } finally {
    await ctx.close();
  }
});

Deno.test("a silent mail server answers the page within seconds with a clear message", async () => {
  const ctx = await setup();
  const silent = startSilentServer();
  try {
    const config = { ...ctx.config, smtpUrl: silent.url };
    const mailer = createMailer({ db: ctx.h.db, config }, {
      timeouts: { connectMs: 300, totalMs: 1000 },
    });
    const app = createApp({ db: ctx.h.db, config, onShutdown: () => {}, mailer });
    const c = new TestClient(app, config, "10.9.0.1");
    const reg = await c.post("/register", {
      phone: "13800000002",
      password: "Abc12345",
      school_id: String(ctx.schoolId),
    });
    assert.equal(reg.status, 303);
    const started = performance.now();
    const res = await c.post("/me/email/code", { email: "g@qq.com" });
    assert.ok(performance.now() - started < 5000);
    assert.equal(res.status, 503);
    assert.match(fieldError(await res.text(), "email")!, /邮件发送失败/);
  } finally {
    silent.close();
    await ctx.close();
  }
});

Deno.test("without SMTP the code lands in the development outbox that 图文信息中心 can read", async () => {
  const ctx = await setup();
  try {
    const c = await registered(ctx);
    assert.equal((await c.post("/me/email/code", { email: "h@qq.com" })).status, 200);
    const row = await ctx.h.db.selectFrom("mail_outbox").select(["to_address", "body_text"])
      .executeTakeFirstOrThrow();
    assert.equal(row.to_address, "h@qq.com");
    const code = /验证码：(\d{6})/.exec(row.body_text)![1];
    assert.equal((await c.post("/me/email", { email: "h@qq.com", code })).status, 303);
  } finally {
    await ctx.close();
  }
});
