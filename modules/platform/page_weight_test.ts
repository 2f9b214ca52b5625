import assert from "node:assert/strict";
import { createApp } from "../../main.ts";
import { loadAssets } from "./assets.ts";
import { createTestDatabase, TestClient, testConfig } from "./testing.ts";
import { ensureSchool, registerAccount } from "../account/mod.ts";
import { bindCardForTest, createCardAccountForTest, DEMO_CARDHOLDERS } from "../card/mod.ts";

/** What a cold browser downloads for a page: the HTML and every stylesheet and script it names. */
async function coldLoadBytes(
  client: TestClient,
  path: string,
): Promise<{ total: number; parts: string[] }> {
  const res = await client.get(path, { "accept-encoding": "gzip" });
  assert.equal(res.status, 200, `${path} answered ${res.status}`);
  const html = new Uint8Array(await res.arrayBuffer());
  // The app compresses HTML on the wire; measure it as sent.
  let total = html.byteLength;
  const parts = [
    `${path}: ${html.byteLength} B (${res.headers.get("content-encoding") ?? "identity"})`,
  ];
  const text = res.headers.get("content-encoding") === "gzip"
    ? await new Response(new Blob([html]).stream().pipeThrough(new DecompressionStream("gzip")))
      .text()
    : new TextDecoder().decode(html);
  const urls = [...text.matchAll(/(?:href|src)="(\/static\/[^"]+)"/g)].map((m) => m[1]);
  assert.ok(urls.length > 0, "the page references its assets");
  for (const url of urls) {
    const a = await client.get(url.replaceAll("&amp;", "&"), { "accept-encoding": "gzip" });
    assert.equal(a.status, 200, url);
    const bytes = (await a.arrayBuffer()).byteLength;
    total += bytes;
    parts.push(`${url}: ${bytes} B`);
  }
  return { total, parts };
}

Deno.test("a cold load of /login transfers at most 40 KB compressed, assets included", async () => {
  await loadAssets();
  await using h = await createTestDatabase();
  const config = testConfig();
  const app = createApp({ db: h.db, config, onShutdown: () => {} });
  for (const path of ["/login", "/register"]) {
    const { total, parts } = await coldLoadBytes(new TestClient(app, config), path);
    assert.ok(total <= 40 * 1024, `${path} weighs ${total} B:\n${parts.join("\n")}`);
  }
});

Deno.test("a cold load of 智校园, 付款码 and 交易记录 transfers at most 30 KB each", async () => {
  await loadAssets();
  await using h = await createTestDatabase();
  const config = testConfig();
  const app = createApp({ db: h.db, config, onShutdown: () => {} });
  const school = await ensureSchool(h.db, "云南城市建设职业学院", "YNCJ");
  const accountId = await registerAccount(h.db, {
    phone: "13800000009",
    password: "Abc12345",
    schoolId: school.id,
  });
  const holder = DEMO_CARDHOLDERS[0];
  const card = await createCardAccountForTest(h.db, { config }, {
    schoolId: school.id,
    studentNumber: holder.studentNumber,
    idNumber: holder.idNumber,
    chipNumber: holder.chipNumber,
    name: holder.name,
  });
  await bindCardForTest(h.db, card.cardAccountId, accountId);
  const client = new TestClient(app, config, "10.40.0.9");
  const signIn = await client.post("/login", { phone: "13800000009", password: "Abc12345" });
  assert.equal(signIn.status, 303);
  for (const path of ["/", "/pay/code", "/wallet/transactions"]) {
    const { total, parts } = await coldLoadBytes(client, path);
    assert.ok(total <= 30 * 1024, `${path} weighs ${total} B:\n${parts.join("\n")}`);
  }
});
