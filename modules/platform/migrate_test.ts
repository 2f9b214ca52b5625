import assert from "node:assert/strict";
import { sql } from "kysely";
import { type DatabaseHandle, openDatabase } from "./database.ts";
import { createBaseApp } from "./http.ts";
import { migrateSchema, migrateToLatest, pendingMigrations } from "./migrate.ts";
import { createTestDatabase, NEWER_ADDITIVE_MIGRATION, newerMigrations } from "./testing.ts";

const onPostgres = !!Deno.env.get("DATABASE_URL");
const NEWER = Object.keys(NEWER_ADDITIVE_MIGRATION)[0].replace(/\.ts$/, "");

/**
 * A database of its own (PGlite in memory, or a new PostgreSQL database): the newer release's
 * migration adds a table and a column, which must not leak into the shared test database.
 */
async function ownDatabase(): Promise<DatabaseHandle> {
  return onPostgres ? await createTestDatabase() : await openDatabase({ databaseUrl: null });
}

async function names(h: DatabaseHandle): Promise<string[]> {
  const r = await sql<{ name: string }>`select name from kysely_migration order by name`
    .execute(h.db);
  return r.rows.map((x) => x.name);
}

Deno.test("a release starts on a database a newer release migrated: it applies nothing and needs nothing", async () => {
  const h = await ownDatabase();
  const folder = await newerMigrations(NEWER_ADDITIVE_MIGRATION);
  try {
    // The newer release migrates (a rolling upgrade's `deno task migrate`).
    const up = await migrateSchema(h.db, { folder });
    assert.equal(up.applied.at(-1), NEWER);
    assert.deepEqual(up.newer, []);
    // This release (the older one) starts beside it or after a roll-back: Kysely alone refuses
    // with "corrupted migrations: previously executed migration … is missing".
    assert.deepEqual(await migrateToLatest(h.db), []);
    assert.deepEqual(await migrateSchema(h.db), { applied: [], newer: [NEWER] });
    assert.deepEqual(await pendingMigrations(h.db), []);
    const readyz = await createBaseApp({ db: h.db }).request("/readyz");
    assert.deepEqual([readyz.status, await readyz.json()], [200, { status: "ready" }]);
    // And the newer release, started again, finds nothing to do either.
    assert.deepEqual(await migrateSchema(h.db, { folder }), { applied: [], newer: [] });
  } finally {
    await h.close();
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test("a release lacking one of its own migrations beside a newer release's refuses, naming both, and applies nothing", async () => {
  const h = await ownDatabase();
  const folder = await newerMigrations(NEWER_ADDITIVE_MIGRATION);
  try {
    await migrateSchema(h.db, { folder });
    const ours = (await names(h)).filter((n) => n !== NEWER);
    const last = ours.at(-1)!;
    // As if this release's last migration had never run (another branch migrated the database).
    await sql`delete from kysely_migration where name = ${last}`.execute(h.db);
    await assert.rejects(
      migrateSchema(h.db),
      (err: Error) =>
        err.message.includes(NEWER) && err.message.includes(`lacks this release's ${last}`),
    );
    assert.deepEqual(await names(h), [...ours.slice(0, -1), NEWER].sort());
    assert.deepEqual(await pendingMigrations(h.db), [last]);
  } finally {
    await h.close();
    await Deno.remove(folder, { recursive: true });
  }
});

Deno.test({
  name:
    "an older release waiting for the migration lock decides on what the newer one committed under it",
  ignore: !onPostgres,
  async fn() {
    const h = await createTestDatabase();
    const old = await openDatabase({ databaseUrl: h.url, poolSize: 2 });
    const folder = await newerMigrations(NEWER_ADDITIVE_MIGRATION);
    const adapter = h.db.getExecutor().adapter;
    const lock = { lockTable: "kysely_migration_lock", lockRowId: "migration_lock" };
    try {
      let oldStart: Promise<unknown> | null = null;
      await h.db.connection().execute(async (newer) => {
        // The newer release holds the lock (it is migrating) when the old instance starts.
        await adapter.acquireMigrationLock(newer, lock);
        try {
          oldStart = migrateSchema(old.db);
          oldStart.catch(() => {});
          for (;;) {
            const waiting = await sql<{ n: number }>`
              select count(*)::int as n from pg_locks
              where locktype = 'advisory' and not granted`.execute(h.db);
            if (waiting.rows[0].n > 0) break;
          }
          assert.deepEqual((await migrateSchema(newer, { folder })).applied, [NEWER]);
        } finally {
          await adapter.releaseMigrationLock(newer, lock);
        }
      });
      assert.deepEqual(await oldStart, { applied: [], newer: [NEWER] });
    } finally {
      await old.close();
      await h.close();
      await Deno.remove(folder, { recursive: true });
    }
  },
});
