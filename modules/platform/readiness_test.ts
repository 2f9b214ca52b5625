import assert from "node:assert/strict";
import { sql } from "kysely";
import { openDatabase } from "./database.ts";
import { createBaseApp } from "./http.ts";
import { markDraining } from "./readiness.ts";
import { createTestDatabase } from "./testing.ts";

async function readyz(app: ReturnType<typeof createBaseApp>) {
  const res = await app.request("/readyz");
  return { status: res.status, body: await res.json() };
}

Deno.test("/readyz is ready only with the database reachable, migrations current and no shutdown", async () => {
  const h = await createTestDatabase();
  const app = createBaseApp({ db: h.db });
  try {
    assert.deepEqual(await readyz(app), { status: 200, body: { status: "ready" } });
    markDraining();
    assert.deepEqual(await readyz(app), { status: 503, body: { status: "draining" } });
    // /healthz still answers: the process is alive and finishing its work.
    assert.equal((await app.request("/healthz")).status, 200);
  } finally {
    markDraining(false);
    await h.close();
  }
});

Deno.test("/readyz says the database is unreachable when it is", async () => {
  // Nothing listens on port 1 of the loopback: every connection is refused.
  const h = await openDatabase({ databaseUrl: "postgres://yxt@127.0.0.1:1/yxt", poolSize: 1 });
  try {
    assert.deepEqual(await readyz(createBaseApp({ db: h.db })), {
      status: 503,
      body: { status: "not ready", database: "unreachable" },
    });
  } finally {
    await h.close();
  }
});

Deno.test("/readyz names the migrations this code needs that the database lacks", async () => {
  await using h = await createTestDatabase();
  const last = await sql<{ name: string }>`
      select name from kysely_migration order by name desc limit 1`.execute(h.db);
  const name = last.rows[0].name;
  await sql`delete from kysely_migration where name = ${name}`.execute(h.db);
  const app = createBaseApp({ db: h.db });
  const r = await readyz(app);
  assert.equal(r.status, 503);
  assert.deepEqual(r.body, { status: "not ready", migrations: "pending", pending: [name] });
  // A migration of newer code (unknown here) does not make this instance unready.
  await sql`insert into kysely_migration (name, timestamp) values (${name}, now()),
      ('29991231_9999_from_newer_code', now())`.execute(h.db);
  assert.equal((await readyz(app)).status, 200);
});
