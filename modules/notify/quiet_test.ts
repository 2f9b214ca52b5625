/** Quiet hours at the China-time boundaries, the morning summary, and 余额不足 once per crossing. */
import assert from "node:assert/strict";
import { makeStudent } from "../testkit/mod.ts";
import { creditTopUp } from "../wallet/mod.ts";
import { NOON, notifyWorld } from "./_testing.ts";
import { DEFAULT_SETTINGS, quietUntil, saveSettings } from "./settings.ts";
import { summaryDetail } from "./summaries.ts";

const china = (text: string) => new Date(`${text}+08:00`);

Deno.test("quiet hours 23:00–07:00 China time hold exactly from 23:00:00 to 06:59:59", () => {
  const s = DEFAULT_SETTINGS;
  assert.equal(quietUntil(s, china("2026-12-16T22:59:59.999")), null);
  assert.deepEqual(quietUntil(s, china("2026-12-16T23:00:00")), china("2026-12-17T07:00:00"));
  assert.deepEqual(quietUntil(s, china("2026-12-16T23:59:59")), china("2026-12-17T07:00:00"));
  assert.deepEqual(quietUntil(s, china("2026-12-17T00:00:00")), china("2026-12-17T07:00:00"));
  assert.deepEqual(quietUntil(s, china("2026-12-17T06:59:59.999")), china("2026-12-17T07:00:00"));
  assert.equal(quietUntil(s, china("2026-12-17T07:00:00")), null);
  // 15:00 UTC is 23:00 in China: the China day, not the server's, decides.
  assert.deepEqual(quietUntil(s, new Date("2026-12-16T15:00:00Z")), china("2026-12-17T07:00:00"));
  assert.equal(quietUntil(s, new Date("2026-12-16T14:59:59Z")), null);
});

Deno.test("quiet hours that do not cross midnight, switched off, or empty", () => {
  const nap = { ...DEFAULT_SETTINGS, quietStart: 13 * 60, quietEnd: 14 * 60 + 30 };
  assert.equal(quietUntil(nap, china("2026-12-16T12:59:59")), null);
  assert.deepEqual(quietUntil(nap, china("2026-12-16T13:00:00")), china("2026-12-16T14:30:00"));
  assert.equal(quietUntil(nap, china("2026-12-16T14:30:00")), null);
  assert.equal(quietUntil(nap, china("2026-12-16T23:30:00")), null);
  assert.equal(
    quietUntil({ ...DEFAULT_SETTINGS, quiet: false }, china("2026-12-16T23:30:00")),
    null,
  );
  assert.equal(
    quietUntil(
      { ...DEFAULT_SETTINGS, quietStart: 600, quietEnd: 600 },
      china("2026-12-16T10:00:00"),
    ),
    null,
  );
});

Deno.test("at night spends wait and go out as one summary at 07:00; security notices do not wait", async () => {
  await using w = await notifyWorld();
  const s = await makeStudent(w, { balance: 100_00 });
  await w.bindWechat(s.accountId);
  await w.settle(NOON);
  const before = w.standin.messages.length;
  const night = china("2026-12-16T23:30:00");
  await w.pay(s.cardAccountId, 3_00);
  await w.pay(s.cardAccountId, 4_50);
  await creditTopUp(w.db, {
    cardAccountId: s.cardAccountId,
    amount: 20_00,
    method: "wechat",
    reference: "topup:night",
  });
  await w.settle(night);
  assert.equal(w.standin.messages.length, before, "nothing at 23:30");
  // A security notice at night goes at once.
  const { unbindWechatLogin, bindWechatLogin } = await import("../account/mod.ts");
  const openid = w.standin.messages[before - 1].touser;
  await unbindWechatLogin(w.db, s.accountId);
  await bindWechatLogin(w.db, s.accountId, openid);
  await w.settle(night);
  const security = w.standin.messages.slice(before);
  assert.deepEqual(security.map((m) => m.template_id), ["TPL_SECURITY", "TPL_SECURITY"]);
  await w.settle(china("2026-12-17T06:59:59"));
  assert.equal(w.standin.messages.length, before + 2, "still held at 06:59:59");
  await w.settle(china("2026-12-17T07:00:00"));
  const summary = w.standin.messages.slice(before + 2);
  assert.equal(summary.length, 1, "one summary");
  assert.equal(summary[0].template_id, "TPL_SUMMARY");
  const values = Object.values(summary[0].data).map((v) => v.value);
  assert.deepEqual(values.slice(0, 2), [
    "23:00–07:00",
    "消费 2 笔 共¥7.50；充值到账 1 笔 共¥20.00",
  ]);
  const held = await w.db.selectFrom("notify_messages").select(["state", "summary_id"])
    .where("account_id", "=", s.accountId).where("kind", "in", ["spend", "topup"])
    .where("state", "<>", "sent").execute();
  assert.equal(held.length, 3, "the opening top-up at noon went at once");
  assert.ok(held.every((m) => m.state === "summarized" && m.summary_id !== null));
  await w.settle(china("2026-12-17T07:05:00"));
  assert.equal(w.standin.messages.length, before + 3, "summarized once");
});

Deno.test("a student's own quiet hours, or none, are what count", async () => {
  await using w = await notifyWorld();
  const s = await makeStudent(w, { balance: 100_00 });
  await w.bindWechat(s.accountId);
  await saveSettings(w.db, s.accountId, { ...DEFAULT_SETTINGS, quiet: false });
  await w.settle(NOON);
  const before = w.standin.messages.length;
  await w.pay(s.cardAccountId, 1_00);
  await w.settle(china("2026-12-16T23:30:00"));
  assert.equal(w.standin.messages.length, before + 1);
});

Deno.test("余额不足 once per crossing of the student's threshold, again after a top-up", async () => {
  await using w = await notifyWorld();
  const s = await makeStudent(w, { balance: 30_00 });
  await w.bindWechat(s.accountId);
  await saveSettings(w.db, s.accountId, { ...DEFAULT_SETTINGS, lowBalance: 10_00 });
  await w.settle(NOON);
  await w.pay(s.cardAccountId, 15_00); // 15.00: above
  await w.pay(s.cardAccountId, 5_00); // 10.00: not below
  await w.pay(s.cardAccountId, 1); // 9.99: crosses
  await w.pay(s.cardAccountId, 1_00); // 8.99: already below
  await creditTopUp(w.db, {
    cardAccountId: s.cardAccountId,
    amount: 1_00,
    method: "wechat",
    reference: "t1",
  });
  await w.pay(s.cardAccountId, 50); // 9.49: was below the whole time
  await creditTopUp(w.db, {
    cardAccountId: s.cardAccountId,
    amount: 20_00,
    method: "wechat",
    reference: "t2",
  });
  await w.pay(s.cardAccountId, 20_00); // 9.49: crosses again
  await w.settle(NOON);
  const lows = w.standin.messages.filter((m) => m.template_id === "TPL_LOW");
  assert.deepEqual(lows.map((m) => m.data.keyword1.value), ["¥9.99", "¥9.49"]);
  assert.deepEqual(lows.map((m) => m.data.keyword2.value), ["¥10.00", "¥10.00"]);
});

Deno.test("switched-off kinds are not sent; security notices cannot be switched off", async () => {
  await using w = await notifyWorld();
  const s = await makeStudent(w, { balance: 30_00 });
  await w.bindWechat(s.accountId);
  await saveSettings(w.db, s.accountId, {
    ...DEFAULT_SETTINGS,
    muted: ["spend", "topup", "refund", "low_balance", "utility_low", "security" as never],
  });
  await w.settle(NOON);
  const before = w.standin.messages.length;
  await w.pay(s.cardAccountId, 25_00);
  const { unbindWechatLogin } = await import("../account/mod.ts");
  await w.db.updateTable("accounts").set({ email: "x@example.edu.cn" }).where(
    "id",
    "=",
    s.accountId,
  )
    .execute();
  await unbindWechatLogin(w.db, s.accountId);
  await w.settle(NOON);
  assert.equal(w.standin.messages.length, before);
  const kinds = await w.db.selectFrom("notify_messages").select(["kind", "channel"])
    .where("account_id", "=", s.accountId).orderBy("id").execute();
  assert.deepEqual(kinds.slice(-1), [{ kind: "security", channel: "email" }]);
  assert.ok(!kinds.some((k) => k.kind === "spend" || k.kind === "low_balance"));
});

Deno.test("the summary counts what it holds", () => {
  assert.equal(
    summaryDetail([
      { kind: "spend", data: { fen: 100 } },
      { kind: "low_balance", data: { balance: "¥1.00" } },
      { kind: "refund", data: { fen: -500 } },
    ]),
    "消费 1 笔 共¥1.00；退款到账 1 笔 共-¥5.00；余额不足 1 条",
  );
});
