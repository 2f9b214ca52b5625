import assert from "node:assert/strict";
import { createApp } from "../../main.ts";
import { loadAssets } from "../platform/assets.ts";
import { createTestDatabase, TestClient, testConfig } from "../platform/testing.ts";
import { ensureSchool } from "./mod.ts";

Deno.test("smoke: register, see home, sign out", async () => {
  await loadAssets();
  const h = await createTestDatabase();
  try {
    const config = testConfig();
    const app = createApp({ db: h.db, config, onShutdown: () => {} });
    const school = await ensureSchool(h.db, "云南城市建设职业学院", "YNCJ");
    const c = new TestClient(app, config);
    const page = await c.page("/register");
    assert.match(page, /云南城市建设职业学院/);
    const res = await c.post("/register", {
      phone: "13800000005",
      password: "Abc12345",
      school_id: String(school.id),
    });
    assert.equal(res.status, 303, await res.text());
    const home = await c.page("/");
    assert.match(home, /付款码/);
    const me = await c.page("/me");
    assert.match(me, /138\*\*\*\*0005/);
  } finally {
    await h.close();
  }
});
