import assert from "node:assert/strict";
import { createApp } from "../../main.ts";
import { loadAssets } from "./assets.ts";
import { createTestDatabase, TestClient, testConfig } from "./testing.ts";

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
  const h = await createTestDatabase();
  try {
    const config = testConfig();
    const app = createApp({ db: h.db, config, onShutdown: () => {} });
    for (const path of ["/login", "/register"]) {
      const { total, parts } = await coldLoadBytes(new TestClient(app, config), path);
      assert.ok(total <= 40 * 1024, `${path} weighs ${total} B:\n${parts.join("\n")}`);
    }
  } finally {
    await h.close();
  }
});
