import assert from "node:assert/strict";
import { createTestDatabase, testConfig } from "../platform/testing.ts";
import {
  createMailer,
  listOutbox,
  MailDeliveryError,
  startSilentServer,
  startTestSmtpServer,
} from "./mod.ts";

Deno.test("without SMTP_URL mail goes to the development outbox", async () => {
  await using h = await createTestDatabase();
  const mailer = createMailer({ db: h.db, config: testConfig({ smtpUrl: null }) });
  assert.equal(mailer.kind, "outbox");
  await mailer.send({ to: "a@example.com", subject: "验证码", text: "您的验证码是 123456" });
  const [m] = await listOutbox(h.db);
  assert.equal(m.toAddress, "a@example.com");
  assert.equal(m.subject, "验证码");
  assert.equal(m.bodyText, "您的验证码是 123456");
  assert.equal((await listOutbox(h.db, { to: "b@example.com" })).length, 0);
});

Deno.test("with SMTP_URL mail arrives at the SMTP server with subject and text intact", async () => {
  const smtp = await startTestSmtpServer();
  await using h = await createTestDatabase();
  try {
    const mailer = createMailer({ db: h.db, config: testConfig({ smtpUrl: smtp.url }) });
    assert.equal(mailer.kind, "smtp");
    const text = "您好，验证码是 654321，10分钟内有效。";
    await mailer.send({ to: "Student@Example.com", subject: "校园一信通验证码", text });
    const mail = await smtp.nextMail("student@example.com");
    assert.equal(mail.subject, "校园一信通验证码");
    assert.equal(mail.text.trim(), text);
    assert.equal((await listOutbox(h.db)).length, 0, "SMTP mail is not kept in the outbox");
  } finally {
    await smtp.close();
  }
});

Deno.test("a mail server that refuses the recipient gives a MailDeliveryError in Chinese", async () => {
  const smtp = await startTestSmtpServer();
  await using h = await createTestDatabase();
  try {
    smtp.refuse = true;
    const mailer = createMailer({ db: h.db, config: testConfig({ smtpUrl: smtp.url }) });
    const err = await mailer.send({ to: "x@example.com", subject: "s", text: "t" }).then(
      () => null,
      (e) => e,
    );
    assert.ok(err instanceof MailDeliveryError, String(err));
    assert.match(err.userMessage, /邮件发送失败/);
    assert.equal(smtp.messages.length, 0);
  } finally {
    await smtp.close();
  }
});

Deno.test("a silent mail server fails the send within the deadline instead of hanging", async () => {
  const silent = startSilentServer();
  await using h = await createTestDatabase();
  try {
    const mailer = createMailer({ db: h.db, config: testConfig({ smtpUrl: silent.url }) }, {
      timeouts: { connectMs: 300, totalMs: 800 },
    });
    const started = performance.now();
    await assert.rejects(
      mailer.send({ to: "x@example.com", subject: "s", text: "t" }),
      MailDeliveryError,
    );
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 3000, `took ${elapsed} ms`);
  } finally {
    silent.close();
  }
});

Deno.test("an unreachable mail server gives a MailDeliveryError", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  await using h = await createTestDatabase();
  const mailer = createMailer({
    db: h.db,
    config: testConfig({ smtpUrl: `smtp://127.0.0.1:${port}` }),
  }, { timeouts: { connectMs: 500, totalMs: 1000 } });
  await assert.rejects(
    mailer.send({ to: "x@example.com", subject: "s", text: "t" }),
    MailDeliveryError,
  );
});
