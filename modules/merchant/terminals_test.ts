import assert from "node:assert/strict";
import { setupApp } from "../testkit/mod.ts";
import { createStaff, listAudit } from "../staff/mod.ts";
import { createMerchant, deriveTerminalKey, findTerminal, terminalKeyHex } from "./mod.ts";

async function setup() {
  const w = await setupApp();
  const { h } = w;
  await createStaff(h.db, {
    username: "root",
    name: "系统管理员",
    password: "Root12345",
    roles: ["sysadmin"],
  });
  await createStaff(h.db, {
    username: "clerk",
    name: "财务",
    password: "Clerk12345",
    roles: ["finance"],
  });
  const signIn = async (username: string, password: string) => {
    const c = w.client();
    const res = await c.post("/admin/login", { username, password });
    assert.equal(res.status, 303);
    return c;
  };
  return { ...w, signIn };
}

Deno.test("terminal keys are derived from the app secret, the id and the key version, never stored", () => {
  const a = deriveTerminalKey("s".repeat(32), 10001, 1);
  assert.equal(a.length, 32);
  assert.notDeepEqual(a, deriveTerminalKey("s".repeat(32), 10001, 2));
  assert.notDeepEqual(a, deriveTerminalKey("s".repeat(32), 10002, 1));
  assert.notDeepEqual(a, deriveTerminalKey("t".repeat(32), 10001, 1));
  assert.match(terminalKeyHex("s".repeat(32), 10001, 1), /^[0-9a-f]{64}$/);
});

Deno.test("an administrator creates a merchant, registers a terminal and sees its key once", async () => {
  await using w = await setup();
  const { h, config, signIn } = w;
  const admin = await signIn("root", "Root12345");
  const created = await admin.post("/admin/merchants", {
    code: "canteen-2",
    name: "第二食堂",
    category: "canteen",
  });
  assert.equal(created.status, 303);
  const list = await admin.page("/admin/merchants");
  assert.match(list, /CANTEEN-2/);
  assert.match(list, /第二食堂/);
  const merchant = await h.db.selectFrom("merchants").select("id").where("code", "=", "CANTEEN-2")
    .executeTakeFirstOrThrow();
  const bad = await admin.post("/admin/terminals", {
    merchant_id: String(merchant.id),
    kind: "toaster",
    name: "x",
  });
  assert.equal(bad.status, 422);
  assert.match(await bad.text(), /请选择终端类型/);
  const res = await admin.post("/admin/terminals", {
    merchant_id: String(merchant.id),
    kind: "canteen_pos",
    name: "二食堂1号窗口",
  });
  assert.equal(res.status, 200);
  const html = await res.text();
  const id = Number(/id="terminal-id">(\d+)</.exec(html)![1]);
  const key = /id="terminal-key">([0-9a-f]{64})</.exec(html)![1];
  const t = (await findTerminal(h.db, id))!;
  assert.equal(key, terminalKeyHex(config.appSecret, id, t.keyVersion));
  // The key is in no table and not on the detail page.
  const detail = await admin.page(`/admin/terminals/${id}`);
  assert.doesNotMatch(detail, new RegExp(key));
  assert.match(detail, /二食堂1号窗口/);
  const row = JSON.stringify(
    await h.db.selectFrom("terminals").selectAll().where("id", "=", id).executeTakeFirst(),
  );
  assert.doesNotMatch(row, new RegExp(key));

  const rotated = await admin.post(`/admin/terminals/${id}/rotate`);
  assert.equal(rotated.status, 200);
  const newKey = /id="terminal-key">([0-9a-f]{64})</.exec(await rotated.text())![1];
  assert.notEqual(newKey, key);
  assert.equal((await findTerminal(h.db, id))!.keyVersion, t.keyVersion + 1);

  const disabled = await admin.post(`/admin/terminals/${id}/status`, { status: "disabled" });
  assert.equal(disabled.status, 303);
  assert.equal((await findTerminal(h.db, id))!.status, "disabled");
  const page = await admin.page("/admin/terminals");
  assert.match(page, /二食堂1号窗口/);
  assert.match(page, /hx-trigger="every 5s"/);
  const live = await admin.page("/admin/terminals?live=1", { "hx-request": "true" });
  assert.match(live, /已停用/);
  assert.doesNotMatch(live, /<html/);
  // Online or offline in colour and in words, and how many of each.
  assert.match(
    live,
    /<span class="conn conn--offline"><span class="conn__dot" aria-hidden="true"><\/span>离线<\/span>/,
  );
  assert.match(live, /在线 <strong>0<\/strong><\/span> <span class="conn conn--offline">/);
  await h.db.updateTable("terminals").set({ last_seen_at: new Date() }).where("id", "=", id)
    .execute();
  const seen = await admin.page("/admin/terminals?live=1", { "hx-request": "true" });
  assert.match(seen, /<tr class="is-online">/);
  assert.match(
    seen,
    /<span class="conn conn--online"><span class="conn__dot" aria-hidden="true"><\/span>在线<\/span>/,
  );
  const actions = (await listAudit(h.db, { targetType: "terminal" })).map((a) => a.action).sort();
  assert.deepEqual(actions, ["terminal.disabled", "terminal.key_rotated", "terminal.registered"]);
});

Deno.test("merchant edits are audited; other roles cannot see merchants or terminals", async () => {
  await using w = await setup();
  const { h, signIn } = w;
  const m = await createMerchant(h.db, {
    code: "MARKET-9",
    name: "超市",
    category: "supermarket",
  });
  const admin = await signIn("root", "Root12345");
  const res = await admin.post(`/admin/merchants/${m.id}`, {
    name: "校园超市二店",
    category: "supermarket",
  });
  assert.equal(res.status, 303);
  const after = await h.db.selectFrom("merchants").select(["name", "active"]).where(
    "id",
    "=",
    m.id,
  ).executeTakeFirstOrThrow();
  assert.deepEqual(after, { name: "校园超市二店", active: false });
  const audit = await listAudit(h.db, { action: "merchant.updated" });
  assert.equal(audit.length, 1);
  const clerk = await signIn("clerk", "Clerk12345");
  for (const path of ["/admin/merchants", "/admin/terminals", `/admin/merchants/${m.id}`]) {
    assert.equal((await clerk.get(path)).status, 403, path);
  }
  assert.equal(
    (await clerk.post("/admin/merchants", { code: "EVIL", name: "x", category: "other" })).status,
    403,
  );
});
