import assert from "node:assert/strict";
import { parseInt8Safe, parseNumericSafe } from "./database.ts";
import { formatFen, parseYuan } from "./money.ts";
import { createTestDatabase } from "./testing.ts";
import { sql } from "kysely";

Deno.test("money formats fen as yuan with two decimals", () => {
  assert.equal(formatFen(1250), "¥12.50");
  assert.equal(formatFen(5), "¥0.05");
  assert.equal(formatFen(-300), "-¥3.00");
  assert.throws(() => formatFen(1.5));
});

Deno.test("parseYuan accepts plain amounts and refuses everything else", () => {
  assert.equal(parseYuan("12"), 1200);
  assert.equal(parseYuan("12.5"), 1250);
  assert.equal(parseYuan("0.01"), 1);
  for (const bad of ["", "-1", "0.001", "1e9", "abc", "1,000", "١٢", " 1 2", "+5", "1.", ".5"]) {
    assert.equal(parseYuan(bad), null, bad);
  }
});

Deno.test("bigint values beyond the safe range are refused rather than rounded", () => {
  assert.equal(parseInt8Safe("9007199254740991"), 9007199254740991);
  assert.throws(() => parseInt8Safe("9007199254740993"), RangeError);
  assert.equal(parseNumericSafe("12.5"), 12.5);
  assert.throws(() => parseNumericSafe("99999999999999999999"), RangeError);
});

Deno.test("bigint columns come back from the database as exact numbers", async () => {
  await using h = await createTestDatabase();
  const r = await sql<
    { a: number; s: number }
  >`select 123456789012::bigint as a, sum(x)::numeric as s from (values (1::bigint), (2::bigint)) v(x)`
    .execute(h.db);
  assert.deepEqual(r.rows[0], { a: 123456789012, s: 3 });
  await assert.rejects(sql`select 9007199254740993::bigint as a`.execute(h.db), RangeError);
});
