/** 电量不足 / 水量不足: from the card office's thresholds to every resident of the room. */
import assert from "node:assert/strict";
import { makeStaff, makeStudent } from "../testkit/mod.ts";
import { ROLES } from "../staff/mod.ts";
import { seedDemoBilling } from "../billing/mod.ts";
import { NOON, notifyWorld } from "./_testing.ts";

Deno.test("a room's credit falling below the threshold tells each resident once (电量不足)", async () => {
  await using w = await notifyWorld();
  await seedDemoBilling(w.db); // 4-person rooms: 20 度, 2 吨
  const room = await w.db.selectFrom("billing_rooms").innerJoin(
    "billing_buildings",
    "billing_buildings.id",
    "billing_rooms.building_id",
  ).select(["billing_rooms.id", "billing_rooms.number", "billing_buildings.code"])
    .where("billing_buildings.code", "=", "B01").where("billing_rooms.number", "=", "101")
    .executeTakeFirstOrThrow();
  const a = await makeStudent(w);
  const b = await makeStudent(w);
  const muted = await makeStudent(w);
  for (const s of [a, b, muted]) {
    await w.db.insertInto("billing_residents").values({ account_id: s.accountId, room_id: room.id })
      .execute();
    await w.bindWechat(s.accountId);
  }
  const { saveSettings, DEFAULT_SETTINGS } = await import("./mod.ts");
  await saveSettings(w.db, muted.accountId, { ...DEFAULT_SETTINGS, muted: ["utility_low"] });
  await w.db.insertInto("billing_sim_meters").values({
    room_id: room.id,
    utility: "electricity",
    balance: 30_00,
  }).execute();
  await w.settle(NOON);
  const before = w.standin.messages.length;
  const admin = await makeStaff(w, "sys1", [ROLES.sysadmin]);
  const read = async () =>
    assert.equal((await admin.client.post("/admin/billing/simulator/read", {})).status, 200);
  await read();
  const use = await admin.client.post("/admin/billing/simulator/use", {
    building: "B01",
    room: "101",
    utility: "electricity",
    amount: "20",
  });
  assert.equal(use.status, 303);
  await read(); // ¥10.00 left: 18.2 度
  await read(); // the same reading again: no second alert
  await w.settle(NOON);
  const sent = w.standin.messages.slice(before);
  assert.equal(sent.length, 2, "both residents who kept it on, once");
  assert.deepEqual(new Set(sent.map((m) => m.template_id)), new Set(["TPL_UTILITY"]));
  assert.deepEqual(Object.values(sent[0].data).map((v) => v.value).slice(0, 4), [
    "1号楼 101",
    "电",
    "18.2 度",
    "20 度",
  ]);
  const bad = await admin.client.post("/admin/billing/simulator/use", {
    building: "B01",
    room: "999",
    utility: "electricity",
    amount: "1",
  });
  assert.equal(bad.status, 422);
  assert.match(await bad.text(), /找不到该楼栋编码和房间号的房间/);
});
