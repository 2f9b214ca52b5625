/**
 * Rolling back (docs/OPERATIONS.md §10): the previous release — here, this code without a newer
 * release's additive migration — starts as a real server (`main.ts`) on a database the newer
 * release migrated, serves, and its /readyz stays ready. So does an old instance that systemd
 * restarts in the middle of a rolling upgrade.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { openDatabase } from "../modules/platform/database.ts";
import { migrateSchema } from "../modules/platform/migrate.ts";
import {
  createTestDatabase,
  NEWER_ADDITIVE_MIGRATION,
  newerMigrations,
} from "../modules/platform/testing.ts";
import { randomHex, serverEnv, startServer } from "../bench/_lib.ts";
import { WebClient } from "../bench/_http.ts";

const onPostgres = !!Deno.env.get("DATABASE_URL");
const NEWER = Object.keys(NEWER_ADDITIVE_MIGRATION)[0].replace(/\.ts$/, "");

/** A later migration of the newer release, run while the old instance serves (PostgreSQL). */
const LATER = {
  "29990102_0000_add_newer_release_index.ts": `import type { Kysely } from "kysely";
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await db.schema.createIndex("newer_release_notes_note").on("newer_release_notes")
    .column("note").execute();
}
// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex("newer_release_notes_note").execute();
}
`,
};

/**
 * /readyz as a load balancer polls it, until it answers ready. It must never say migrations are
 * pending (this release needs none of the newer one's); "database unreachable" (its `select 1`
 * took over 2 s on a loaded machine) is asked again, as HAProxy does every second.
 */
async function becomesReady(url: string): Promise<void> {
  let last: unknown = null;
  for (let poll = 0; poll < 150; poll++) {
    const res = await fetch(`${url}/readyz`);
    const body = await res.json();
    if (res.status === 200) return assert.deepEqual(body, { status: "ready" });
    assert.equal(
      body.migrations,
      undefined,
      `/readyz says migrations are pending: ${JSON.stringify(body)}`,
    );
    last = body;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`/readyz never answered ready: ${JSON.stringify(last)}`);
}

/** A person signing in with a wrong password: a page that reads `accounts`, never an error. */
async function signInRefused(url: string): Promise<number> {
  const web = new WebClient(url);
  const page = await web.get("/login");
  assert.equal(page.res.status, 200);
  const r = await web.post("/login", { phone: "13900000000", password: "Wrong12345", next: "" }, {
    csrfFrom: page.text,
  });
  assert.match(r.text, /手机号或登录密码错误/);
  return r.res.status;
}

Deno.test("the previous release starts and serves on a database a newer release migrated", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "yxt-rollback-" });
  const folder = await newerMigrations(NEWER_ADDITIVE_MIGRATION);
  const later = await newerMigrations({ ...NEWER_ADDITIVE_MIGRATION, ...LATER });
  const dataDir = join(tmp, "data");
  // The newer release migrated the database (its `deno task migrate`, or its instances).
  const pg = onPostgres ? await createTestDatabase() : null;
  if (pg) await migrateSchema(pg.db, { folder });
  else {
    const h = await openDatabase({ databaseUrl: null, dataDir });
    await migrateSchema(h.db, { folder });
    await h.close();
  }
  const env = serverEnv({
    databaseUrl: pg?.url ?? null,
    dataDir,
    appSecret: randomHex(),
    cardPepper: randomHex(),
    extra: { LOG_LEVEL: "info" },
  });
  const server = await startServer(env, `rollback-test-${Deno.pid}`);
  try {
    await becomesReady(server.url);
    assert.ok([200, 401, 422].includes(await signInRefused(server.url)));
    if (pg) {
      // The newer release migrates further while this instance runs: it stays ready and serves.
      assert.deepEqual(
        (await migrateSchema(pg.db, { folder: later })).applied,
        ["29990102_0000_add_newer_release_index"],
      );
      await becomesReady(server.url);
      assert.ok([200, 401, 422].includes(await signInRefused(server.url)));
    }
    assert.equal(await server.stop("SIGTERM"), 0);
    const log = await Deno.readTextFile(server.logPath);
    assert.ok(log.includes(`"newer":["${NEWER}"]`), "start-up names the newer migrations");
  } finally {
    await server.stop("SIGKILL");
    await pg?.close();
    await Deno.remove(server.logPath).catch(() => {});
    for (const d of [tmp, new URL(folder).pathname, new URL(later).pathname]) {
      await Deno.remove(d, { recursive: true }).catch(() => {});
    }
  }
});
