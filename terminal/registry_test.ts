import assert from "node:assert/strict";
import { createTestDatabase, testConfig } from "../modules/platform/testing.ts";
import { createMerchant, registerTerminal, setTerminalStatus } from "../modules/merchant/mod.ts";
import { TerminalRegistry } from "./registry.ts";

async function oneTerminal() {
  const h = await createTestDatabase();
  const config = testConfig();
  const merchant = await createMerchant(h.db, { code: "R-1", name: "一食堂", category: "canteen" });
  const made = await registerTerminal(h.db, config.appSecret, {
    merchantId: merchant.id,
    kind: "canteen_pos",
    name: "1号窗口",
  });
  return { h, config, id: made.terminal.id };
}

Deno.test("the registry reads a terminal in use again by itself: a change shows without a request waiting for it", async () => {
  const { h, config, id } = await oneTerminal();
  await using _db = h;
  const registry = new TerminalRegistry(h.db, config.appSecret, 2_000);
  try {
    const first = await registry.get(id);
    assert.equal(first.terminal?.status, "active");
    assert.equal(registry.waited, 1);
    await setTerminalStatus(h.db, id, "disabled");
    // A round that began before the change may have read the old row: the one after it cannot.
    await registry.nextRefresh();
    await registry.nextRefresh();
    const later = await registry.get(id);
    assert.equal(later.terminal?.status, "disabled");
    assert.deepEqual(later.key, first.key, "the same key version, the same key");
    assert.equal(registry.waited, 1, "no request waited for a lookup after the first");
  } finally {
    await registry.stop();
  }
});

Deno.test("with no time to trust an entry, every request reads its terminal", async () => {
  const { h, config, id } = await oneTerminal();
  await using _db = h;
  const registry = new TerminalRegistry(h.db, config.appSecret, 0);
  try {
    assert.equal((await registry.get(id)).terminal?.status, "active");
    await setTerminalStatus(h.db, id, "disabled");
    assert.equal((await registry.get(id)).terminal?.status, "disabled");
    assert.equal((await registry.get(999_999)).terminal, null);
    assert.equal(registry.waited, 3);
  } finally {
    await registry.stop();
  }
});
