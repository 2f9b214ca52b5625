/**
 * 离线付款码's devices: provisioned by the 付款码 page's check-in (the key once), listed and removed
 * in 付款码设置, retired by 冻结付款码, 挂失 (for good, 解挂 or not) and 解绑; the card office's
 * offline limits; the shell the service worker keeps.
 */
import assert from "node:assert/strict";
import { makeStaff, makeStudent, setupApp, type TestWorld } from "../testkit/mod.ts";
import { ROLES } from "../staff/mod.ts";
import { staffLiftLoss, staffReportLoss, unbindCard } from "../card/mod.ts";
import { toBase64Url } from "../platform/crypto.ts";
import type { TestClient } from "../platform/testing.ts";
import { deviceKey } from "./offline_codes.ts";
import { deviceModel, listDevices } from "./devices.ts";
import { MAX_LIVE_DEVICES } from "./device_checkin.ts";

const ANDROID_WECHAT =
  "Mozilla/5.0 (Linux; Android 13; V2148A Build/TP1A.220624.014; wv) AppleWebKit/537.36 " +
  "(KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160065 " +
  "MMWEBSDK/20231202 MMWEBID/2247 MicroMessenger/8.0.50.2701(0x28003252) WeChat/arm64 " +
  "Weixin NetType/WIFI Language/zh_CN ABI/arm64";

interface Sync {
  state: "new" | "live" | "off";
  handle?: string;
  key?: string;
  payLimit?: number;
  dailyLimit?: number;
  serverTime: number;
  reason?: string;
}

async function checkIn(client: TestClient, handle?: string): Promise<Sync> {
  const res = await client.post("/pay/devices", handle ? { handle } : {}, {
    headers: { "user-agent": ANDROID_WECHAT },
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("cache-control"), "no-store", "the key is never cached");
  return await res.json();
}

async function deviceRow(w: TestWorld, handle: string) {
  return await w.db.selectFrom("offline_code_devices").selectAll().where("handle", "=", handle)
    .executeTakeFirstOrThrow();
}

Deno.test("the 付款码 page's check-in provisions a device once: the key derived from APP_SECRET, then only kept", async () => {
  await using w = await setupApp();
  const s = await makeStudent(w, { balance: 5_000 });
  const before = Date.now();
  const first = await checkIn(s.client);
  assert.equal(first.state, "new");
  assert.match(first.handle!, /^\d{7}$/);
  const row = await deviceRow(w, first.handle!);
  assert.equal(row.card_account_id, s.cardAccountId);
  assert.equal(first.key, toBase64Url(deviceKey(w.config.appSecret, row.id, row.salt)));
  assert.ok(!JSON.stringify(row).includes(first.key!), "the key is not stored");
  assert.deepEqual([first.payLimit, first.dailyLimit], [3_000, 10_000]);
  assert.ok(first.serverTime >= before && first.serverTime <= Date.now());

  const again = await checkIn(s.client, first.handle);
  assert.equal(again.state, "live");
  assert.equal(again.handle, first.handle);
  assert.equal(again.key, undefined, "the key leaves the server once");

  // Another student cannot take this device over by its handle: they get one of their own.
  const other = await makeStudent(w);
  const theirs = await checkIn(other.client, first.handle);
  assert.equal(theirs.state, "new");
  assert.notEqual(theirs.handle, first.handle);

  const settings = await s.client.page("/pay/settings");
  assert.match(settings, /离线付款码设备/);
  assert.match(settings, /V2148A · Android 13 · 微信/);
  assert.match(settings, /尚未使用/);
  assert.match(settings, /离线付款码单笔不超过 ¥30\.00、每日不超过 ¥100\.00/);
  assert.equal((settings.match(/action="\/pay\/devices\/\d+\/remove"/g) ?? []).length, 1);
});

Deno.test("移除 in 付款码设置 retires the device at once; only the card's own devices can be removed", async () => {
  await using w = await setupApp();
  const s = await makeStudent(w);
  const other = await makeStudent(w);
  const dev = await checkIn(s.client);
  const id = (await deviceRow(w, dev.handle!)).id;
  assert.equal((await other.client.post(`/pay/devices/${id}/remove`)).status, 404);
  assert.equal((await s.client.post("/pay/devices/abc/remove")).status, 404);
  assert.equal((await deviceRow(w, dev.handle!)).revoked_at, null);

  const res = await s.client.post(`/pay/devices/${id}/remove`);
  assert.equal(res.status, 303);
  assert.equal(res.headers.get("location"), "/pay/settings?removed=1");
  const row = await deviceRow(w, dev.handle!);
  assert.ok(row.revoked_at);
  assert.equal(row.revoked_reason, "removed");
  const page = await s.client.page("/pay/settings?removed=1");
  assert.match(page, /已移除该设备/);
  assert.match(page, /暂无设备/);
  // Removing it again is nothing to remove; the phone's next visit gets a new device.
  assert.equal((await s.client.post(`/pay/devices/${id}/remove`)).status, 404);
  const next = await checkIn(s.client, dev.handle);
  assert.equal(next.state, "new");
  assert.notEqual(next.handle, dev.handle);
});

Deno.test("冻结付款码 retires every device and the page forgets its own; unfrozen, a new one", async () => {
  await using w = await setupApp();
  const s = await makeStudent(w);
  const a = await checkIn(s.client);
  const b = await checkIn(s.client);
  const frozen = await s.client.post("/pay/settings", {
    pay_limit: "200",
    daily_limit: "500",
    code_frozen: "1",
  });
  assert.equal(frozen.status, 303);
  for (const d of [a, b]) assert.equal((await deviceRow(w, d.handle!)).revoked_reason, "frozen");
  const off = await checkIn(s.client, a.handle);
  assert.equal(off.state, "off");
  assert.equal(off.key, undefined);
  // The frozen 付款码 page tells the phone's script to forget its device.
  assert.match(await s.client.page("/pay/code"), /data-offline-forget/);

  await s.client.post("/pay/settings", { pay_limit: "200", daily_limit: "500" });
  const fresh = await checkIn(s.client, a.handle);
  assert.equal(fresh.state, "new");
});

Deno.test("挂失 and 解绑 retire the devices for good: 解挂 does not bring them back", async () => {
  await using w = await setupApp();
  const s = await makeStudent(w);
  const office = await makeStaff(w, "office1", [ROLES.cardOffice]);
  const before = await checkIn(s.client);
  await staffReportLoss(w.db, { staffId: office.id }, s.cardAccountId);
  // Lost (not frozen with it): the payment code still works, on a device added from now on.
  const during = await checkIn(s.client, before.handle);
  assert.equal(during.state, "new");
  await staffLiftLoss(w.db, { staffId: office.id }, s.cardAccountId);
  const after = await checkIn(s.client, before.handle);
  assert.equal(after.state, "new", "a device from before the loss stays dead after 解挂");
  assert.equal((await checkIn(s.client, during.handle)).state, "live");
  const listed = await s.client.page("/pay/settings");
  assert.equal((listed.match(/action="\/pay\/devices\/\d+\/remove"/g) ?? []).length, 2);

  await unbindCard(w.db, { staffId: office.id }, s.cardAccountId);
  const rows = await w.db.selectFrom("offline_code_devices").select("handle")
    .where("card_account_id", "=", s.cardAccountId).execute();
  assert.equal(rows.length, 3);
  assert.deepEqual(await listDevices(w.db, s.cardAccountId), [], "none survives the 解绑");
});

Deno.test("a card keeps at most five devices: a sixth retires the one used least recently", async () => {
  await using w = await setupApp();
  const s = await makeStudent(w);
  const handles: string[] = [];
  for (let i = 0; i <= MAX_LIVE_DEVICES; i++) handles.push((await checkIn(s.client)).handle!);
  assert.equal((await deviceRow(w, handles[0])).revoked_reason, "replaced");
  for (const h of handles.slice(1)) assert.equal((await deviceRow(w, h)).revoked_at, null);
});

Deno.test("the phone's model is read from its user agent, never more than a short line", () => {
  assert.equal(deviceModel(ANDROID_WECHAT), "V2148A · Android 13 · 微信");
  assert.equal(
    deviceModel(
      "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like " +
        "Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2f) NetType/WIFI Language/zh_CN",
    ),
    "iPhone · iOS 17.2 · 微信",
  );
  assert.equal(
    deviceModel(
      "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 " +
        "Mobile Safari/537.36",
    ),
    "Android 10",
  );
  assert.equal(deviceModel(undefined), "未知设备");
  assert.equal(deviceModel("curl/8.0"), "未知设备");
  assert.ok(deviceModel(`Mozilla/5.0 (Linux; Android 13; ${"X".repeat(500)})`).length <= 60);
});

Deno.test("离线付款码限额: 一卡通中心 sets them (audited, within 付款设置's bounds); a student's lower limits win", async () => {
  await using w = await setupApp();
  const office = await makeStaff(w, "office2", [ROLES.cardOffice]);
  const finance = await makeStaff(w, "fin2", [ROLES.finance]);
  assert.equal((await finance.client.get("/admin/offline-codes")).status, 403);
  const page = await office.client.page("/admin/offline-codes");
  assert.match(page, /离线付款码限额/);
  assert.match(page, /value="30\.00"/);

  const bad = await office.client.post("/admin/offline-codes", {
    pay_limit: "90",
    daily_limit: "80",
  });
  assert.equal(bad.status, 422);
  const badText = await bad.text();
  assert.match(badText, /单笔限额不能超过每日限额/);
  assert.match(badText, /value="90"/, "the typed value is kept");
  const tooHigh = await office.client.post("/admin/offline-codes", {
    pay_limit: "20",
    daily_limit: "600",
  });
  assert.equal(tooHigh.status, 422);
  assert.match(await tooHigh.text(), /每日限额不能超过 ¥500\.00/);

  const ok = await office.client.post("/admin/offline-codes", {
    pay_limit: "20",
    daily_limit: "80",
  });
  assert.equal(ok.status, 303);
  const audit = await w.db.selectFrom("audit_log").selectAll()
    .where("action", "=", "wallet.offline_limits").execute();
  assert.equal(audit.length, 1);
  assert.deepEqual(audit[0].after, { payLimit: 2_000, dailyLimit: 8_000 });

  const s = await makeStudent(w);
  const dev = await checkIn(s.client);
  assert.deepEqual([dev.payLimit, dev.dailyLimit], [2_000, 8_000]);
  await s.client.post("/pay/settings", { pay_limit: "15", daily_limit: "500" });
  const lower = await checkIn(s.client, dev.handle);
  assert.deepEqual([lower.payLimit, lower.dailyLimit], [1_500, 8_000]);
});

Deno.test("the offline shell is public and holds nothing of anyone's; 付款码 names the offline scripts", async () => {
  await using w = await setupApp();
  const shell = await w.client().get("/pay/code/offline");
  assert.equal(shell.status, 200);
  const html = await shell.text();
  assert.match(html, /data-offline-shell/);
  assert.match(html, /离线付款码不可用/);
  assert.match(html, /src="\/static\/vendor\/qrcode\.js\?v=\w+"/);
  assert.match(html, /src="\/static\/pay_offline\.js\?v=\w+"/);
  assert.doesNotMatch(html, /¥|余额/);

  const s = await makeStudent(w, { balance: 1_000 });
  const code = await s.client.page("/pay/code");
  assert.match(
    code,
    /data-offline-sync="\/pay\/devices" data-offline-scripts="\/static\/vendor\/qrcode\.js\?v=\w+ \/static\/pay_offline\.js\?v=\w+"/,
  );
  assert.doesNotMatch(code, /src="\/static\/pay_offline/, "not part of the page's cold load");
});
