import assert from "node:assert/strict";
import { sql } from "kysely";
import { BAD_TEXT, count, escaped, fieldError, registered, setup } from "./_test_support.ts";

Deno.test("registering signs the new user in and the home page greets them", async () => {
  const ctx = await setup();
  try {
    const c = ctx.client();
    const form = await c.page("/register");
    for (const label of ["手机号", "登录密码", "学校", "注册", "云南城市建设职业学院"]) {
      assert.ok(form.includes(label), label);
    }
    const res = await c.post("/register", {
      phone: "13800000005",
      password: "Abc12345",
      school_id: String(ctx.schoolId),
    });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get("location"), "/");
    const cookie = res.headers.getSetCookie().find((s) => s.startsWith("yxt_sid="))!;
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Lax/);
    const home = await c.page("/");
    assert.match(home, /付款码/);
    const row = await ctx.h.db.selectFrom("accounts").select([
      "phone",
      "password_hash",
      "school_id",
    ])
      .executeTakeFirstOrThrow();
    assert.equal(row.phone, "13800000005");
    assert.equal(row.school_id, ctx.schoolId);
    assert.match(row.password_hash, /^\$argon2id\$/);
  } finally {
    await ctx.close();
  }
});

Deno.test("a phone can register only once", async () => {
  const ctx = await setup();
  try {
    await registered(ctx, "13800000006");
    const c = ctx.client();
    const res = await c.post("/register", {
      phone: "13800000006",
      password: "Other1234",
      school_id: String(ctx.schoolId),
    });
    assert.equal(res.status, 422);
    const html = await res.text();
    assert.equal(fieldError(html, "phone"), "该手机号已注册，请直接登录");
    assert.equal(await count(ctx.h, "accounts"), 1);
  } finally {
    await ctx.close();
  }
});

Deno.test("registrations from one address are limited; the limit says when to try again", async () => {
  const ctx = await setup();
  try {
    await registered(ctx, "13800000007");
    const c = ctx.client("10.4.0.1");
    const attempt = (phone: string) =>
      c.post("/register", { phone, password: "Abc12345", school_id: String(ctx.schoolId) });
    // Phones already taken still count (each answer tells whether a phone is registered).
    for (let i = 0; i < 60; i++) {
      const res = await attempt("13800000007");
      assert.equal(res.status, 422, `attempt ${i + 1}`);
      await res.body?.cancel();
    }
    const refused = await attempt("13800000008");
    assert.equal(refused.status, 429);
    assert.match(await refused.text(), /注册过于频繁，请10分钟后再试/);
    assert.equal(await count(ctx.h, "accounts"), 1);
    const elsewhere = ctx.client("10.4.0.2");
    const res = await elsewhere.post("/register", {
      phone: "13800000008",
      password: "Abc12345",
      school_id: String(ctx.schoolId),
    });
    assert.equal(res.status, 303);
    assert.equal(await count(ctx.h, "accounts"), 2);
  } finally {
    await ctx.close();
  }
});

Deno.test("register refuses passwords without letters and digits, and an unknown school", async () => {
  const ctx = await setup();
  try {
    const c = ctx.client();
    const cases: Array<[Record<string, string>, string, RegExp]> = [
      [{ password: "12345678" }, "password", /字母和数字/],
      [{ password: "abcdefgh" }, "password", /字母和数字/],
      [{ password: "Ab1" }, "password", /8-64/],
      [{ password: "Abc1".repeat(17) }, "password", /8-64/],
      [{ password: "Abc 12345" }, "password", /空格/],
      [{ password: "Ａｂｃ１２３４５" }, "password", /字母和数字|半角/],
      [{ password: "Abc12345\u200b" }, "password", /半角/],
      [{ school_id: "999999" }, "school_id", /请选择学校/],
      [{ school_id: "" }, "school_id", /请选择学校/],
      [{ school_id: "1 OR 1=1" }, "school_id", /请选择学校/],
    ];
    for (const [override, field, message] of cases) {
      const res = await c.post("/register", {
        phone: "13800000007",
        password: "Abc12345",
        school_id: String(ctx.schoolId),
        ...override,
      });
      const html = await res.text();
      assert.equal(res.status, 422, JSON.stringify(override));
      assert.match(fieldError(html, field) ?? "", message, JSON.stringify(override));
      assert.ok(html.includes('value="13800000007"'), "phone kept");
      assert.ok(!html.includes("Abc12345"), "password never echoed");
    }
    assert.equal(await count(ctx.h, "accounts"), 0);
  } finally {
    await ctx.close();
  }
});

Deno.test("bad input in every register and login field gets a Chinese message, input kept, nothing stored", async () => {
  const ctx = await setup();
  try {
    await registered(ctx, "13800000002");
    const c = ctx.client("10.9.9.9");
    const forms: Array<{ path: string; base: Record<string, string>; fields: string[] }> = [
      {
        path: "/register",
        base: { phone: "13800000008", password: "Abc12345", school_id: String(ctx.schoolId) },
        fields: ["phone", "password", "school_id"],
      },
      {
        path: "/login",
        base: { phone: "13800000002", password: "Abc12345" },
        fields: ["phone", "password"],
      },
    ];
    for (const form of forms) {
      for (const field of form.fields) {
        for (const [kind, bad] of Object.entries(BAD_TEXT)) {
          // A too-long password at login is simply a wrong password; skip values that are valid there.
          if (
            form.path === "/login" && field === "password" && kind !== "empty" && kind !== "tooLong"
          ) continue;
          // "<script>alert(1)</script>" has letters and digits: a valid (if odd) new password.
          if (field === "password" && kind === "markup") continue;
          const res = await c.post(form.path, { ...form.base, [field]: bad });
          const html = await res.text();
          const what = `${form.path} ${field}=${kind}`;
          assert.ok(res.status === 422 || res.status === 400, `${what}: ${res.status}`);
          assert.notEqual(res.status, 500, what);
          const msg = fieldError(html, field);
          assert.ok(msg && /[\u4e00-\u9fff]/.test(msg), `${what}: message ${msg}`);
          assert.ok(!html.includes("<script>alert"), `${what}: markup escaped`);
          if (field !== "password" && field !== "school_id" && bad) {
            assert.ok(
              html.includes(`value="${escaped(bad.slice(0, 200))}"`),
              `${what}: input kept`,
            );
          }
          assert.equal(c.cookies.has("yxt_sid"), false, `${what}: not signed in`);
        }
      }
    }
    assert.equal(await count(ctx.h, "accounts"), 1);
  } finally {
    await ctx.close();
  }
});

Deno.test("login with the right password signs in with a new session id and follows a safe next", async () => {
  const ctx = await setup();
  try {
    const first = await registered(ctx, "13800000002", "Abc12345");
    const before = first.cookies.get("yxt_sid");
    await first.post("/logout");
    assert.equal(first.cookies.has("yxt_sid"), false);

    const c = ctx.client();
    const page = await c.page("/login?next=%2Fme");
    assert.match(page, /立即注册/);
    assert.match(page, /忘记密码/);
    assert.match(page, /name="next" value="\/me"/);
    const res = await c.post("/login", { phone: "13800000002", password: "Abc12345", next: "/me" });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get("location"), "/me");
    assert.notEqual(c.cookies.get("yxt_sid"), before);
    assert.match(await c.page("/me"), /138\*\*\*\*0002/);

    const evil = ctx.client();
    const r2 = await evil.post("/login", {
      phone: "13800000002",
      password: "Abc12345",
      next: "//evil.example/x",
    });
    assert.equal(r2.headers.get("location"), "/");
  } finally {
    await ctx.close();
  }
});

Deno.test("signed-out visitors of student pages are sent to the login page and brought back", async () => {
  const ctx = await setup();
  try {
    const c = ctx.client();
    for (const path of ["/", "/me", "/me/email", "/me/password"]) {
      const res = await c.get(path);
      assert.equal(res.status, 303, path);
      assert.equal(res.headers.get("location"), `/login?next=${encodeURIComponent(path)}`);
    }
  } finally {
    await ctx.close();
  }
});

Deno.test("sign-out is a POST that ends the session; a GET does nothing", async () => {
  const ctx = await setup();
  try {
    const c = await registered(ctx);
    const sid = c.cookies.get("yxt_sid")!;
    assert.equal((await c.get("/logout")).status, 404);
    const noToken = await c.post("/logout", {}, { csrf: false });
    assert.equal(noToken.status, 403);
    assert.equal((await c.get("/me")).status, 200);
    const res = await c.post("/logout");
    assert.equal(res.status, 303);
    assert.equal(res.headers.get("location"), "/login");
    const sessions = await ctx.h.db.selectFrom("sessions").select("id").execute();
    assert.equal(sessions.length, 0);
    // The old cookie no longer works anywhere.
    c.cookies.set("yxt_sid", sid);
    assert.equal((await c.get("/me")).status, 303);
  } finally {
    await ctx.close();
  }
});

Deno.test("five wrong login passwords slow that address for the phone with a 请X分钟后再试 message; other addresses still sign in", async () => {
  const ctx = await setup();
  try {
    await registered(ctx, "13800000002", "Abc12345");
    const c = ctx.client("10.2.0.1");
    for (let i = 4; i >= 1; i--) {
      const res = await c.post("/login", { phone: "13800000002", password: "Wrong1234" });
      assert.equal(res.status, 422);
      assert.equal(
        fieldError(await res.text(), "password"),
        `手机号或登录密码错误，还可尝试${i}次`,
      );
    }
    const fifth = await c.post("/login", { phone: "13800000002", password: "Wrong1234" });
    assert.equal(fifth.status, 429);
    assert.match(await fifth.text(), /登录尝试过于频繁，请5分钟后再试/);
    // The right password waits at that address (nothing proves it is the owner there)...
    const same = await c.post("/login", { phone: "13800000002", password: "Abc12345" });
    assert.equal(same.status, 429);
    assert.equal(c.cookies.has("yxt_sid"), false);
    // ...but the phone is not locked for everyone: the owner signs in from elsewhere.
    const other = ctx.client("10.2.0.2");
    const ok = await other.post("/login", { phone: "13800000002", password: "Abc12345" });
    assert.equal(ok.status, 303);
    // After the wait, the right password works at the first address too.
    await sql`update throttles set locked_until = now() - interval '1 second'`.execute(ctx.h.db);
    assert.equal(
      (await c.post("/login", { phone: "13800000002", password: "Abc12345" })).status,
      303,
    );
  } finally {
    await ctx.close();
  }
});

Deno.test("many wrong logins from one address slow that address by seconds, never lock it", async () => {
  const ctx = await setup();
  try {
    await registered(ctx, "13800000002", "Abc12345");
    const c = ctx.client("10.3.0.1");
    let last: Response | null = null;
    for (let i = 0; i < 50; i++) {
      const phone = `139000${String(i).padStart(5, "0")}`;
      last = await c.post("/login", { phone, password: "Wrong1234" });
      await last.body?.cancel();
    }
    assert.equal(last!.status, 429);
    const res = await c.post("/login", { phone: "13800000002", password: "Abc12345" });
    assert.equal(res.status, 429);
    assert.match(await res.text(), /请2秒后再试/);
    const elsewhere = ctx.client("10.3.0.2");
    assert.equal(
      (await elsewhere.post("/login", { phone: "13800000002", password: "Abc12345" })).status,
      303,
    );
  } finally {
    await ctx.close();
  }
});

Deno.test("an unknown phone gets the same answer as a wrong password", async () => {
  const ctx = await setup();
  try {
    await registered(ctx, "13800000002", "Abc12345");
    const c = ctx.client();
    const known = await c.post("/login", { phone: "13800000002", password: "Wrong1234" });
    const unknown = await c.post("/login", { phone: "13800000003", password: "Wrong1234" });
    assert.equal(fieldError(await known.text(), "password"), "手机号或登录密码错误，还可尝试4次");
    assert.equal(fieldError(await unknown.text(), "password"), "手机号或登录密码错误，还可尝试4次");
  } finally {
    await ctx.close();
  }
});

Deno.test("changing the login password needs the old one and ends the other sessions", async () => {
  const ctx = await setup();
  try {
    const phone = await registered(ctx, "13800000002", "Abc12345");
    const laptop = ctx.client("10.4.0.2");
    assert.equal(
      (await laptop.post("/login", { phone: "13800000002", password: "Abc12345" })).status,
      303,
    );

    const page = await phone.page("/me/password");
    assert.match(page, /原密码/);
    assert.match(page, /新密码/);
    const wrong = await phone.post("/me/password", {
      old_password: "Nope12345",
      new_password: "New12345a",
    });
    assert.equal(wrong.status, 422);
    assert.match(fieldError(await wrong.text(), "old_password")!, /原密码错误/);
    const weak = await phone.post("/me/password", {
      old_password: "Abc12345",
      new_password: "onlyletters",
    });
    assert.equal(weak.status, 422);
    assert.match(fieldError(await weak.text(), "new_password")!, /字母和数字/);
    const same = await phone.post("/me/password", {
      old_password: "Abc12345",
      new_password: "Abc12345",
    });
    assert.equal(fieldError(await same.text(), "new_password"), "新密码不能与原密码相同");

    const ok = await phone.post("/me/password", {
      old_password: "Abc12345",
      new_password: "New12345a",
    });
    assert.equal(ok.status, 303);
    assert.match(await phone.page("/me/password?done=1"), /登录密码已修改/);
    assert.equal((await laptop.get("/me")).status, 303, "other session ended");
    assert.equal((await phone.get("/me")).status, 200, "this session kept");

    const c = ctx.client("10.4.0.3");
    assert.equal(
      (await c.post("/login", { phone: "13800000002", password: "Abc12345" })).status,
      422,
    );
    assert.equal(
      (await c.post("/login", { phone: "13800000002", password: "New12345a" })).status,
      303,
    );
  } finally {
    await ctx.close();
  }
});

Deno.test("bad input in the change-password form never changes the password", async () => {
  const ctx = await setup();
  try {
    const c = await registered(ctx, "13800000002", "Abc12345");
    const before = await ctx.h.db.selectFrom("accounts").select("password_hash")
      .executeTakeFirstOrThrow();
    for (const field of ["old_password", "new_password"]) {
      for (const [kind, bad] of Object.entries(BAD_TEXT)) {
        if (field === "new_password" && kind === "markup") continue; // valid: letters and digits
        const res = await c.post("/me/password", {
          old_password: "Abc12345",
          new_password: "New12345a",
          [field]: bad,
        });
        const html = await res.text();
        assert.equal(res.status, 422, `${field}=${kind}`);
        assert.ok(/[\u4e00-\u9fff]/.test(fieldError(html, field) ?? ""), `${field}=${kind}`);
      }
    }
    const after = await ctx.h.db.selectFrom("accounts").select("password_hash")
      .executeTakeFirstOrThrow();
    assert.equal(after.password_hash, before.password_hash);
  } finally {
    await ctx.close();
  }
});

Deno.test("a cold load of /login with all its assets stays under 40 KB compressed", async () => {
  const ctx = await setup();
  try {
    const c = ctx.client();
    const gz = { "accept-encoding": "gzip" };
    const res = await c.get("/login", gz);
    let total = (await res.arrayBuffer()).byteLength;
    const html = await (await c.get("/login")).text();
    const assets = [...html.matchAll(/(?:href|src)="(\/static\/[^"]+)"/g)].map((m) => m[1]);
    assert.ok(assets.length >= 2, "css and scripts referenced");
    for (const path of assets) {
      const a = await c.get(path.replace(/&amp;/g, "&"), gz);
      assert.equal(a.status, 200, path);
      total += (await a.arrayBuffer()).byteLength;
    }
    assert.ok(total <= 40 * 1024, `login weighs ${total} bytes compressed`);
  } finally {
    await ctx.close();
  }
});

Deno.test("odd tickets on the new-password form get a message, never a 500 or a password change", async () => {
  const ctx = await setup();
  try {
    await registered(ctx, "13800000002", "Abc12345");
    const before = await ctx.h.db.selectFrom("accounts").select("password_hash")
      .executeTakeFirstOrThrow();
    const c = ctx.client();
    const tickets = [
      "",
      "<script>",
      "1.2.3",
      `1.${"9".repeat(12)}.${"a".repeat(43)}`,
      "x".repeat(400),
    ];
    for (const ticket of tickets) {
      const res = await c.post("/password/new", { ticket, new_password: "Mine12345" });
      assert.ok(res.status === 422 || res.status === 400, `${ticket.slice(0, 20)}: ${res.status}`);
      assert.match(await res.text(), /页面已过期，请重新登录/);
    }
    const after = await ctx.h.db.selectFrom("accounts").select("password_hash")
      .executeTakeFirstOrThrow();
    assert.equal(after.password_hash, before.password_hash);
    assert.equal(c.cookies.has("yxt_sid"), false);
  } finally {
    await ctx.close();
  }
});
