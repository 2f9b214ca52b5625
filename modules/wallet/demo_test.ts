import assert from "node:assert/strict";
import { createApp } from "../../main.ts";
import { loadAssets } from "../platform/assets.ts";
import { createTestDatabase, TestClient, testConfig } from "../platform/testing.ts";
import { seedDemoData } from "../demo/mod.ts";
import { verifyLedger } from "./mod.ts";

Deno.test("the demo student signs in to ¥200.00 on 余额, a light 付款码 page, and balanced books", async () => {
  await loadAssets();
  const h = await createTestDatabase();
  try {
    const config = testConfig();
    const deps = { db: h.db, config, onShutdown: () => {} };
    assert.equal(await seedDemoData(deps), true);
    const c = new TestClient(createApp(deps), config);
    assert.equal(
      (await c.post("/login", { phone: "13800000001", password: "Demo12345" })).status,
      303,
    );
    assert.match(await c.page("/wallet"), /200\.00/);
    assert.match(await c.page("/wallet/transactions"), /调账/);
    const page = await c.page("/pay/code");
    const gz = await new Response(
      new Blob([page]).stream().pipeThrough(new CompressionStream("gzip")),
    )
      .arrayBuffer();
    assert.ok(gz.byteLength < 4_000, `付款码 HTML is ${gz.byteLength} bytes compressed`);
    const report = await verifyLedger(h.db);
    assert.deepEqual(report.problems, []);
    // ¥200.00 each, less what 王芳 and 赵老师 paid the outsourced window last month (商户结算).
    assert.equal(report.totals.cardBalances, 4 * 20_000 - 2 * 37_30);
  } finally {
    await h.close();
  }
});
