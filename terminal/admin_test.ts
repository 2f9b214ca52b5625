import assert from "node:assert/strict";
import { createApp } from "../main.ts";
import { loadAssets } from "../modules/platform/assets.ts";
import { TestClient } from "../modules/platform/testing.ts";
import { createStaff } from "../modules/staff/mod.ts";
import { MessageCode } from "./messages.ts";
import { setupWorld } from "./_test_support.ts";

Deno.test("the terminal page shows the reader online, its address, its errors and its transactions", async () => {
  await loadAssets();
  const w = await setupWorld();
  try {
    const app = createApp({ db: w.db, config: w.config, onShutdown: () => {} });
    await createStaff(w.db, {
      username: "root",
      name: "管理员",
      password: "Root12345",
      roles: ["sysadmin"],
    });
    const admin = new TestClient(app, w.config);
    assert.equal(
      (await admin.post("/admin/login", { username: "root", password: "Root12345" })).status,
      303,
    );
    const id = w.terminals.canteen_pos.id;
    const before = await admin.page(`/admin/terminals/${id}`);
    assert.match(before, /离线/);
    const card = await w.card({ balance: 5000 });
    const pos = await w.connect("canteen_pos");
    await pos.request({ code: MessageCode.SignOn, firmware: "t" });
    const paid = await pos.request({
      code: MessageCode.CardPayment,
      chip: card.chip,
      amount: 1234,
      password: "",
    });
    await pos.request({ code: MessageCode.Heartbeat, blocklistVersion: 0, offlineCount: 0 }, {
      timestamp: 1,
    });
    const page = await admin.page(`/admin/terminals/${id}`);
    assert.match(page, /在线/);
    assert.match(page, /127\.0\.0\.1:\d+/);
    assert.match(page, /StaleTimestamp/);
    assert.match(page, /CardPayment/);
    assert.match(page, /¥12\.34/);
    assert.match(page, new RegExp(`<td>${paid.header.sequence}</td>`));
  } finally {
    await w.close();
  }
});
