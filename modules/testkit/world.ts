/** A test's world: the whole app on a fresh database. */
import { createApp } from "../../main.ts";
import type { Config } from "../platform/config.ts";
import { loadAssets } from "../platform/assets.ts";
import { createTestDatabase, TestClient, testConfig } from "../platform/testing.ts";

/**
 * The app on a fresh database with the test configuration: `await using w = await setupApp()`
 * closes the database at the block's end. `url` is the PostgreSQL URL of the test's database
 * (null on PGlite), for a second "instance" to connect to; `poolSize` sizes the app's pool (race
 * tests on PostgreSQL want several connections).
 */
export async function setupApp(
  overrides: Partial<Config> = {},
  options: { poolSize?: number } = {},
) {
  await loadAssets();
  const h = await createTestDatabase(options);
  const config = testConfig(overrides);
  const app = createApp({ db: h.db, config, onShutdown: () => {} });
  return {
    h,
    db: h.db,
    url: h.url,
    config,
    app,
    client: (ip = "10.1.0.1") => new TestClient(app, config, ip),
    close: () => h.close(),
    [Symbol.asyncDispose]: () => h.close(),
  };
}

/** What `setupApp` gives a test. */
export type TestWorld = Awaited<ReturnType<typeof setupApp>>;
