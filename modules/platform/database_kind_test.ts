import assert from "node:assert/strict";
import { sql } from "kysely";
import { databaseKind } from "./database.ts";
import { createTestDatabase } from "./testing.ts";

// CI runs the suite twice and says which database each stage is for (YXT_EXPECT_DATABASE): a
// stage whose database did not start must fail here rather than run everything on PGlite again.
Deno.test("the suite runs on the database its stage names", async () => {
  const expected = Deno.env.get("YXT_EXPECT_DATABASE");
  const url = Deno.env.get("DATABASE_URL");
  if (expected === "postgres") {
    assert.ok(url, "YXT_EXPECT_DATABASE=postgres but DATABASE_URL is unset");
  }
  if (expected === "pglite") {
    assert.equal(url, undefined, "YXT_EXPECT_DATABASE=pglite with DATABASE_URL set");
  }
  await using handle = await createTestDatabase();
  const { rows } = await sql<{ version: string }>`select version() as version`.execute(handle.db);
  const version = rows[0].version;
  console.log(`tests run on ${handle.kind}: ${version}`);
  assert.equal(handle.kind, url ? "postgres" : "pglite");
  assert.equal(databaseKind(handle.db), handle.kind);
  assert.match(version, /^PostgreSQL \d+/);
  if (expected) assert.equal(handle.kind, expected);
});
