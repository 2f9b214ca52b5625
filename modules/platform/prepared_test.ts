import assert from "node:assert/strict";
import { sql } from "kysely";
import { PREPARED } from "./database.ts";
import { createTestDatabase } from "./testing.ts";

const VALUES = {
  text: `it's a "quote", a \\backslash\\ and 中文 {braces}`,
  texts: ["plain", `a"b`, "c,d", "e\\f", "{g}", "", "NULL", null, `'h'`],
  big: 9_007_199_254_740_991,
  ints: [1, -2, 3],
  bytes: new Uint8Array([0, 1, 0x7f, 0x80, 0xff]),
  day: "2026-11-26",
  at: new Date("2026-11-26T01:02:03.456Z"),
  yes: true,
  json: JSON.stringify({ a: [1, "x'y"], b: null }),
  none: null,
};

function select(prefix: string) {
  const v = VALUES;
  return sql<Record<string, unknown>>`${sql.raw(prefix)}select ${v.text}::text as text,
    ${v.texts}::text[] as texts, ${v.big}::bigint as big, ${v.ints}::integer[] as ints,
    ${v.bytes}::bytea as bytes, ${v.day}::date::text as day, ${v.at}::timestamptz as at,
    ${v.yes}::boolean as yes, ${v.json}::jsonb as json, ${v.none}::text as none`;
}

Deno.test("a prepared statement gets every kind of value exactly as a plain one", async () => {
  await using h = await createTestDatabase();
  const plain = (await select("").execute(h.db)).rows[0];
  for (let i = 0; i < 3; i++) {
    const prepared = (await select(PREPARED).execute(h.db)).rows[0];
    assert.deepEqual(prepared, plain);
  }
  assert.equal(plain.text, VALUES.text);
  assert.deepEqual(plain.texts, VALUES.texts);
  assert.deepEqual([...(plain.bytes as Uint8Array)], [...VALUES.bytes]);
  assert.deepEqual(plain.json, { a: [1, "x'y"], b: null });
  // A value cannot break out of its literal.
  const evil = "x'); drop table nothing; --";
  const r = await sql<{ v: string }>`${sql.raw(PREPARED)}select ${evil}::text as v`.execute(h.db);
  assert.equal(r.rows[0].v, evil);
  await assert.rejects(
    sql`${sql.raw(PREPARED)}select ${"a\0b"}::text as v`.execute(h.db),
  );
});

Deno.test("a prepared statement outlives a rolled-back transaction that prepared it", async () => {
  await using h = await createTestDatabase();
  const q = (n: number) => sql<{ n: number }>`${sql.raw(PREPARED)}select ${n}::integer + 1 as n`;
  await assert.rejects(
    h.db.transaction().execute(async (trx) => {
      assert.equal((await q(2).execute(trx)).rows[0].n, 3);
      throw new Error("roll back");
    }),
    /roll back/,
  );
  assert.equal((await q(41).execute(h.db)).rows[0].n, 42);
});
