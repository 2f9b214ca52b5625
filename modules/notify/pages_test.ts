import assert from "node:assert/strict";
import { makeStaff, makeStudent } from "../testkit/mod.ts";
import { ROLES } from "../staff/mod.ts";
import { NOON, notifyWorld } from "./_testing.ts";

Deno.test("消息通知 shows the defaults, keeps bad input with a message, and saves", async () => {
  await using w = await notifyWorld();
  const s = await makeStudent(w, { balance: 5_00 });
  let page = await (await s.client.get("/me/notifications")).text();
  assert.equal(page.match(/<h1/g)?.length, 1);
  assert.match(page, /name="on_spend" value="1" checked/);
  assert.match(page, /name="low_balance"[^>]*value="10.00"/);
  assert.match(page, /<option selected>23:00<\/option>/);
  assert.match(page, /<option selected>07:00<\/option>/);
  assert.match(page, /checked disabled/);
  assert.match(page, /未绑定微信登录/);
  let res = await s.client.post("/me/notifications", {
    on_spend: "1",
    low_balance: "abc",
    quiet: "1",
    quiet_start: "22:30",
    quiet_end: "06:00",
  });
  assert.equal(res.status, 422);
  page = await res.text();
  assert.match(page, /请输入0至1000元之间的金额/);
  assert.match(page, /value="abc"/);
  assert.match(page, /<option selected>22:30<\/option>/);
  res = await s.client.post("/me/notifications", {
    on_spend: "1",
    low_balance: "20",
    quiet_start: "22:30",
    quiet_end: "25:00",
  });
  assert.equal(res.status, 422);
  assert.match(await res.text(), /请选择免打扰时段/);
  res = await s.client.post("/me/notifications", {
    on_spend: "1",
    on_security: "", // not a switch: security notices stay on whatever is sent
    low_balance: "20.5",
    quiet_start: "22:30",
    quiet_end: "06:00",
  });
  assert.equal(res.status, 303);
  const saved = await w.db.selectFrom("notify_settings").selectAll()
    .where("account_id", "=", s.accountId).executeTakeFirstOrThrow();
  assert.deepEqual(
    [saved.muted, saved.low_balance, saved.quiet, saved.quiet_start, saved.quiet_end],
    [
      ["topup", "subsidy", "subsidy_expiring", "refund", "low_balance", "utility_low"],
      20_50,
      false,
      1350,
      360,
    ],
  );
  page = await (await s.client.get("/me/notifications?done=1")).text();
  assert.match(page, /已保存/);
  assert.match(page, /name="on_topup" value="1">/);
  // The opening top-up's message, listed with what became of it.
  await w.settle(NOON);
  page = await (await s.client.get("/me/notifications")).text();
  assert.match(page, /充值到账/);
  assert.match(page, /未发送（未绑定微信和邮箱）/);
  const anon = await w.client().get("/me/notifications");
  assert.equal(anon.status, 303);
  assert.match(anon.headers.get("location")!, /^\/login/);
});

Deno.test("消息 (系统管理员): depth, failures by cause, and retry of a failed message", async () => {
  await using w = await notifyWorld();
  const s = await makeStudent(w, { balance: 10_00 });
  const openid = await w.bindWechat(s.accountId);
  w.standin.control.unsubscribed.add(openid);
  await w.pay(s.cardAccountId, 1_00); // 43004 and no email: failed
  await w.settle(NOON);
  const failed = await w.db.selectFrom("notify_messages").select("id")
    .where("state", "=", "failed").executeTakeFirstOrThrow();
  const admin = await makeStaff(w, "sys2", [ROLES.sysadmin]);
  const office = await makeStaff(w, "office2", [ROLES.cardOffice]);
  assert.equal((await office.client.get("/admin/notify")).status, 403);
  let page = await (await admin.client.get("/admin/notify")).text();
  assert.match(page, /<td>43004<\/td><td>用户未关注服务号<\/td><td>失败<\/td><td>\d+<\/td>/);
  assert.match(page, new RegExp(`#${failed.id}`));
  w.standin.control.unsubscribed.delete(openid);
  let res = await admin.client.post(`/admin/notify/${failed.id}/retry`, {});
  assert.equal(res.status, 303);
  await w.settle(NOON);
  const after = await w.db.selectFrom("notify_messages").select(["state", "channel"])
    .where("id", "=", failed.id).executeTakeFirstOrThrow();
  assert.deepEqual(after, { state: "sent", channel: "wechat" });
  res = await admin.client.post(`/admin/notify/${failed.id}/retry`, {});
  assert.equal(res.status, 409);
  assert.match(await res.text(), /无需重试/);
  assert.equal((await admin.client.post("/admin/notify/abc/retry", {})).status, 404);
  page = await (await admin.client.get("/admin/notify")).text();
  assert.doesNotMatch(page, new RegExp(`#${failed.id}<`));
  const audit = await w.db.selectFrom("audit_log").select("action")
    .where("action", "=", "notify.message_retried").execute();
  assert.equal(audit.length, 1);
});
