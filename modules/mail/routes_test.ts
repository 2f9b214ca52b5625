import assert from "node:assert/strict";
import { setupApp } from "../testkit/mod.ts";
import { createStaff, ROLES } from "../staff/mod.ts";
import { createMailer } from "./mod.ts";

Deno.test("the outbox page shows development mail, escaped, newest first, filtered by address", async () => {
  await using h = await setupApp({ smtpUrl: null });
  const { config } = h;
  const mailer = createMailer({ db: h.db, config });
  await mailer.send({ to: "a@qq.com", subject: "第一封", text: "验证码：111111" });
  await mailer.send({ to: "b@qq.com", subject: "<b>第二封</b>", text: "<script>x</script>" });
  await createStaff(h.db, {
    username: "info",
    name: "信息中心",
    password: "Info12345",
    roles: [ROLES.infoCentre],
  });
  const c = h.client("10.30.0.1");
  assert.equal(
    (await c.post("/admin/login", { username: "info", password: "Info12345" })).status,
    303,
  );
  const html = await c.page("/admin/outbox");
  assert.match(html, /未配置 SMTP_URL/);
  assert.ok(html.indexOf("第二封") < html.indexOf("第一封"), "newest first");
  assert.ok(html.includes("&lt;script&gt;x&lt;/script&gt;"));
  assert.ok(!html.includes("<script>x"));
  const filtered = await c.page("/admin/outbox?to=a%40qq.com");
  assert.match(filtered, /111111/);
  assert.ok(!filtered.includes("第二封"));
});
