/** Security notices: from card and account events, always sent, never held for quiet hours. */
import assert from "node:assert/strict";
import { makeStudent } from "../testkit/mod.ts";
import { createStaff, ROLES } from "../staff/mod.ts";
import { staffLiftLoss, staffReportLoss } from "../card/mod.ts";
import { NOON, notifyWorld } from "./_testing.ts";

const NIGHT = new Date("2026-12-16T23:30:00+08:00");

Deno.test("挂失, 解挂 and a login password change are security notices, sent even at night", async () => {
  await using w = await notifyWorld();
  const s = await makeStudent(w, { balance: 10_00 });
  await w.bindWechat(s.accountId);
  await w.db.updateTable("accounts").set({ email: "sec@example.edu.cn" }).where(
    "id",
    "=",
    s.accountId,
  )
    .execute();
  await w.settle(NOON);
  const before = w.standin.messages.length;
  const staffId = await createStaff(w.db, {
    username: "counter1",
    name: "卡务",
    password: "Staff12345",
    roles: [ROLES.cardOffice],
  });
  await staffReportLoss(w.db, { staffId }, s.cardAccountId);
  await staffLiftLoss(w.db, { staffId }, s.cardAccountId);
  await w.settle(NIGHT);
  const res = await s.client.post("/me/password", {
    old_password: "Passw0rd1",
    new_password: "Changed2pass",
  });
  assert.equal(res.status, 303);
  await w.settle(NIGHT);
  const sent = w.standin.messages.slice(before).map((m) => m.data.keyword1.value);
  // The password change ended the WeChat sign-in (the default choice): its notices go by email.
  assert.deepEqual(sent, ["一卡通挂失", "一卡通解挂"]);
  // Both go out in one round: their order in the outbox is not theirs to keep.
  const mails = (await w.outbox("sec@example.edu.cn")).map((m) => m.subject).sort();
  assert.deepEqual(mails, [
    "【校园一信通】安全提醒：登录密码变更",
    "【校园一信通】安全提醒：解除微信绑定",
  ]);
  const held = await w.db.selectFrom("notify_messages").select("id").where("state", "=", "held")
    .execute();
  assert.deepEqual(held, []);
});
