import assert from "node:assert/strict";
import { makeStaff, makeStudent, setupApp } from "../testkit/mod.ts";
import { ROLES } from "../staff/mod.ts";
import { makeRooms } from "./_testing.ts";
import { SimulatedMeter, useSimulatedCredit } from "./meters.ts";
import { readMeters, recordMeterReading, setThreshold } from "./readings.ts";
import { createRoom } from "./rooms.ts";
import { chooseRoom } from "./rooms.ts";

const t = (minutes: number) => new Date(Date.UTC(2026, 11, 16, 4, minutes));

Deno.test("a reading below the room size's threshold alerts once; up again and down again alerts again", async () => {
  await using w = await setupApp();
  const { r101 } = await makeRooms(w.db);
  const big = await createRoom(w.db, { buildingId: r101.buildingId, number: "601", capacity: 6 });
  await setThreshold(w.db, {
    utility: "electricity",
    capacity: 4,
    milliUnits: 20_000,
    staffId: null,
  });
  const read = (roomId: number, balance: number, at: Date) =>
    w.db.transaction().execute((trx) =>
      recordMeterReading(trx, roomId, "electricity", { balance, reportedAt: at })
    );
  const alerts = () =>
    w.db.selectFrom("billing_low_credit_alerts").select(["room_id", "remaining_milli", "balance"])
      .orderBy("id").execute();
  await read(r101.id, 20_00, t(1)); // 36.4 度 at ¥0.55
  await read(r101.id, 11_00, t(2)); // 20 度: not below
  assert.deepEqual(await alerts(), []);
  await read(r101.id, 10_00, t(3)); // 18.2 度: crosses
  await read(r101.id, 5_00, t(4)); // still below
  await read(r101.id, 30_00, t(0)); // older than what is stored: ignored
  assert.deepEqual(await alerts(), [{ room_id: r101.id, remaining_milli: 18_181, balance: 10_00 }]);
  await read(r101.id, 30_00, t(5)); // a purchase arrived
  await read(r101.id, 9_00, t(6)); // down again
  assert.equal((await alerts()).length, 2);
  await read(big.id, 1_00, t(7)); // no threshold for 6-person rooms
  assert.equal((await alerts()).length, 2);
});

Deno.test("the meter reading round reads occupied rooms from the simulated meter system", async () => {
  await using w = await setupApp();
  const { r101, r102 } = await makeRooms(w.db);
  const s = await makeStudent(w);
  await chooseRoom(w.db, s.accountId, r101.id);
  await setThreshold(w.db, { utility: "water", capacity: 4, milliUnits: 2_000, staffId: null });
  const meter = new SimulatedMeter(w.db);
  await w.db.insertInto("billing_sim_meters").values([
    { room_id: r101.id, utility: "water", balance: 20_00 },
    { room_id: r102.id, utility: "water", balance: 1_00 },
  ]).execute();
  assert.equal(await readMeters(w.db, meter), 1, "only the occupied room");
  assert.equal(await useSimulatedCredit(w.db, r101.id, "water", 14_00), 6_00); // 1.7 吨
  assert.equal(await readMeters(w.db, meter), 1);
  const alerts = await w.db.selectFrom("billing_low_credit_alerts").select(["room_id", "utility"])
    .execute();
  assert.deepEqual(alerts, [{ room_id: r101.id, utility: "water" }]);
  assert.equal(await useSimulatedCredit(w.db, r101.id, "water", 99_00), 0, "never below zero");
});

Deno.test("低余量提醒: the card office sets thresholds, sysadmin only sees them, bad input is refused", async () => {
  await using w = await setupApp();
  const office = await makeStaff(w, "office1", [ROLES.cardOffice]);
  const admin = await makeStaff(w, "admin1", [ROLES.sysadmin]);
  let res = await office.client.post("/admin/billing/alerts", {
    utility: "electricity",
    capacity: "4",
    units: "20",
  });
  assert.equal(res.status, 303);
  res = await office.client.post("/admin/billing/alerts", {
    utility: "water",
    capacity: "30",
    units: "abc",
  });
  assert.equal(res.status, 422);
  assert.match(await res.text(), /床位数需为1-20的整数/);
  res = await office.client.post("/admin/billing/alerts", {
    utility: "water",
    capacity: "4",
    units: "0",
  });
  assert.match(await res.text(), /请输入大于0的数值/);
  const page = await (await admin.client.get("/admin/billing/alerts")).text();
  assert.match(page, /4人间<\/td><td>20 度/);
  assert.doesNotMatch(page, /<h2>设置阈值/);
  res = await admin.client.post("/admin/billing/alerts", {
    utility: "electricity",
    capacity: "4",
    units: "1",
  });
  assert.equal(res.status, 403);
  const audit = await w.db.selectFrom("audit_log").select("action")
    .where("action", "=", "billing.low_credit_threshold").execute();
  assert.equal(audit.length, 1);
});
