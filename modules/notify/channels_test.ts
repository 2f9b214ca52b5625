/** Every way WeChat refuses, and what the notifier does: retry, fall back to email, or give up. */
import assert from "node:assert/strict";
import { makeStudent } from "../testkit/mod.ts";
import { creditTopUp } from "../wallet/mod.ts";
import { NOON, type NotifyWorld, notifyWorld } from "./_testing.ts";
import { deliverDue } from "./deliver.ts";

async function student(w: NotifyWorld, options: { email?: boolean; wechat?: boolean } = {}) {
  const s = await makeStudent(w, { balance: 100_00 });
  const email = `s${s.accountId}@example.edu.cn`;
  if (options.email !== false) {
    await w.db.updateTable("accounts").set({ email }).where("id", "=", s.accountId).execute();
  }
  const openid = options.wechat === false ? null : await w.bindWechat(s.accountId);
  await w.settle(NOON);
  return { ...s, email, openid };
}

async function spendOf(w: NotifyWorld, accountId: number) {
  return await w.db.selectFrom("notify_messages")
    .select(["state", "channel", "error_code", "attempts", "next_attempt_at"])
    .where("account_id", "=", accountId).where("kind", "=", "spend").executeTakeFirstOrThrow();
}

const at = (ms: number) => new Date(NOON.getTime() + ms);

Deno.test("40001: the token is fetched again and the message sent at once, in the same attempt", async () => {
  await using w = await notifyWorld();
  const s = await student(w);
  const tokens = w.standin.tokensIssued();
  w.standin.expireTokens();
  await w.pay(s.cardAccountId, 1_00);
  await w.settle(NOON);
  const m = await spendOf(w, s.accountId);
  assert.deepEqual([m.state, m.channel, m.error_code, m.attempts], ["sent", "wechat", null, 1]);
  assert.equal(w.standin.tokensIssued(), tokens + 1);
  assert.ok(w.standin.log.includes("send 40001"));
});

Deno.test("43004 (not following the 服务号): the message goes by email at once", async () => {
  await using w = await notifyWorld();
  const s = await student(w);
  w.standin.control.unsubscribed.add(s.openid!);
  await w.pay(s.cardAccountId, 2_00);
  await w.settle(NOON);
  const m = await spendOf(w, s.accountId);
  assert.deepEqual([m.state, m.channel, m.error_code], ["sent", "email", "43004"]);
  const [mail] = await w.outbox(s.email);
  assert.equal(mail.subject, "【校园一信通】消费提醒");
  assert.match(mail.bodyText, /消费金额：¥2\.00/);
  assert.match(mail.bodyText, /消费商户：第一食堂/);
  assert.match(mail.bodyText, /账户余额：¥98\.00/);
});

Deno.test("43004 without an email: the message fails with its cause for staff", async () => {
  await using w = await notifyWorld();
  const s = await student(w, { email: false });
  w.standin.control.unsubscribed.add(s.openid!);
  await w.pay(s.cardAccountId, 2_00);
  await w.settle(NOON);
  const m = await spendOf(w, s.accountId);
  assert.deepEqual([m.state, m.channel, m.error_code], ["failed", null, "43004"]);
});

Deno.test("45009 (rate limit): retried later with backoff, then sent on WeChat", async () => {
  await using w = await notifyWorld();
  const s = await student(w);
  w.standin.control.rateLimited = 2;
  await w.pay(s.cardAccountId, 3_00);
  await w.settle(NOON);
  let m = await spendOf(w, s.accountId);
  assert.deepEqual([m.state, m.error_code, m.attempts], ["queued", "45009", 1]);
  assert.equal(m.next_attempt_at.getTime(), at(15_000).getTime());
  assert.equal(await deliverDue({ ...w.ctx, now: () => at(14_999) }), 0, "not before its backoff");
  await deliverDue({ ...w.ctx, now: () => at(15_000) });
  m = await spendOf(w, s.accountId);
  assert.deepEqual([m.state, m.error_code, m.attempts], ["queued", "45009", 2]);
  assert.equal(m.next_attempt_at.getTime(), at(45_000).getTime(), "twice as long");
  await deliverDue({ ...w.ctx, now: () => at(45_000) });
  m = await spendOf(w, s.accountId);
  assert.deepEqual([m.state, m.channel, m.attempts], ["sent", "wechat", 3]);
});

Deno.test("a timeout is retried with the same client_msg_id: WeChat shows it once", async () => {
  await using w = await notifyWorld();
  const s = await student(w);
  const before = w.standin.messages.length;
  w.standin.control.lostReplies = 1;
  await w.pay(s.cardAccountId, 4_00);
  await w.settle(NOON);
  let m = await spendOf(w, s.accountId);
  assert.deepEqual([m.state, m.error_code], ["queued", "timeout"]);
  await deliverDue({ ...w.ctx, now: () => at(15_000) });
  m = await spendOf(w, s.accountId);
  assert.deepEqual([m.state, m.channel], ["sent", "wechat"]);
  assert.equal(w.standin.messages.length, before + 1);
  assert.match(w.standin.messages.at(-1)!.client_msg_id!, /^yxt\d+$/);
  assert.ok(w.standin.log.includes("send 0 duplicate"));
});

Deno.test("a timeout that never ends: after the last attempt the message goes by email", async () => {
  await using w = await notifyWorld();
  const s = await student(w);
  w.standin.control.hang = 5;
  await w.pay(s.cardAccountId, 5_00);
  await w.settle(NOON);
  let t = 0;
  for (let attempt = 1; attempt < 5; attempt++) {
    t += Math.min(300_000, 15_000 * 2 ** (attempt - 1));
    await deliverDue({ ...w.ctx, now: () => at(t) });
  }
  const m = await spendOf(w, s.accountId);
  assert.deepEqual([m.state, m.channel, m.error_code, m.attempts], ["sent", "email", "timeout", 5]);
  assert.equal(w.standin.log.filter((l) => l === "send timeout").length, 5);
});

Deno.test("-1 (busy) is retried; 40003 (bad openid) and 40037 (bad template) go by email", async () => {
  await using w = await notifyWorld({ env: { WECHAT_TEMPLATE_TOPUP: "TPL_UNKNOWN" } });
  const a = await student(w);
  w.standin.control.busy = 1;
  await w.pay(a.cardAccountId, 1_00);
  await w.settle(NOON);
  assert.equal((await spendOf(w, a.accountId)).error_code, "-1");
  await deliverDue({ ...w.ctx, now: () => at(15_000) });
  assert.equal((await spendOf(w, a.accountId)).channel, "wechat");

  const b = await student(w, { wechat: false });
  await w.db.insertInto("account_wechat").values({ account_id: b.accountId, openid: "bad openid" })
    .execute();
  await w.pay(b.cardAccountId, 1_00);
  await w.settle(NOON);
  const mb = await spendOf(w, b.accountId);
  assert.deepEqual([mb.state, mb.channel, mb.error_code], ["sent", "email", "40003"]);

  await creditTopUp(w.db, {
    cardAccountId: a.cardAccountId,
    amount: 10_00,
    method: "wechat",
    reference: "topup:40037",
  });
  await w.settle(NOON);
  const topup = await w.db.selectFrom("notify_messages").select(["state", "channel", "error_code"])
    .where("account_id", "=", a.accountId).where("kind", "=", "topup").executeTakeFirstOrThrow();
  assert.deepEqual(topup, { state: "sent", channel: "email", error_code: "40037" });
});

Deno.test("the token endpoint refusing (40125, a wrong secret) sends by email, the cause kept for staff", async () => {
  await using w = await notifyWorld();
  const s = await student(w);
  await w.db.deleteFrom("notify_wechat_tokens").execute();
  // A fresh messenger: nothing cached in this process either.
  const { buildMessenger } = await import("./loop.ts");
  w.standin.control.tokenRefusals = 1;
  await w.pay(s.cardAccountId, 1_00);
  const ctx = { ...w.ctx, wechat: buildMessenger(w) };
  const { deriveMessages } = await import("./derive.ts");
  await w.caughtUp();
  await deriveMessages(w.db, NOON);
  await deliverDue({ ...ctx, now: () => NOON });
  const m = await spendOf(w, s.accountId);
  assert.deepEqual([m.state, m.channel, m.error_code], ["sent", "email", "40125"]);
  // Once the secret is right again, WeChat is used.
  await w.pay(s.cardAccountId, 1_00);
  await w.caughtUp();
  await deriveMessages(w.db, NOON);
  await deliverDue({ ...ctx, now: () => NOON });
  const channels = await w.db.selectFrom("notify_messages").select("channel")
    .where("account_id", "=", s.accountId).where("kind", "=", "spend").orderBy("id").execute();
  assert.deepEqual(channels.map((c) => c.channel), ["email", "wechat"]);
});

Deno.test("no WeChat and no email: no_channel, nothing sent anywhere", async () => {
  await using w = await notifyWorld();
  const s = await student(w, { email: false, wechat: false });
  const before = w.standin.messages.length;
  await w.pay(s.cardAccountId, 1_00);
  await w.settle(NOON);
  const m = await spendOf(w, s.accountId);
  assert.deepEqual([m.state, m.channel, m.error_code], ["no_channel", null, "no_openid"]);
  assert.equal(w.standin.messages.length, before);
});
