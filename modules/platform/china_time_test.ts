import assert from "node:assert/strict";
import { sql } from "kysely";
import {
  chinaDateTime,
  chinaDay,
  chinaDayRange,
  chinaDaySql,
  chinaDayStart,
  chinaDigits,
  chinaMonth,
  chinaMonthRange,
  chinaMonthSql,
  chinaMonthStart,
  chinaRfc3339,
  chinaWeekStart,
} from "./china_time.ts";
import { createTestDatabase } from "./testing.ts";

const at = (iso: string) => new Date(iso);
/** The last millisecond of 2026-11-30 and the first of 2026-12-01, China time. */
const LAST = at("2026-11-30T15:59:59.999Z");
const FIRST = at("2026-11-30T16:00:00.000Z");
/** The last millisecond of 2026 and the first of 2027, China time. */
const YEAR_LAST = at("2026-12-31T15:59:59.999Z");
const YEAR_FIRST = at("2026-12-31T16:00:00.000Z");

Deno.test("china time: the day and month turn at 00:00 China time, not UTC", () => {
  assert.equal(chinaDay(LAST), "2026-11-30");
  assert.equal(chinaDay(FIRST), "2026-12-01");
  assert.equal(chinaDay(FIRST.getTime()), "2026-12-01");
  assert.equal(chinaMonth(LAST), "2026-11");
  assert.equal(chinaMonth(FIRST), "2026-12");
  assert.equal(chinaDay(YEAR_LAST), "2026-12-31");
  assert.equal(chinaDay(YEAR_FIRST), "2027-01-01");
  assert.equal(chinaMonth(YEAR_FIRST), "2027-01");
  // No summer time: midsummer is UTC+8 as well.
  assert.equal(chinaDay(at("2026-07-01T15:59:59.999Z")), "2026-07-01");
  assert.equal(chinaDay(at("2026-07-01T16:00:00Z")), "2026-07-02");
});

Deno.test("china time: starts of day, week and month", () => {
  assert.deepEqual(chinaDayStart(LAST), at("2026-11-29T16:00:00Z"));
  assert.deepEqual(chinaDayStart(FIRST), FIRST);
  assert.deepEqual(chinaDayStart(YEAR_FIRST), YEAR_FIRST);
  assert.deepEqual(chinaMonthStart(LAST), at("2026-10-31T16:00:00Z"));
  assert.deepEqual(chinaMonthStart(FIRST), FIRST);
  assert.deepEqual(chinaMonthStart(YEAR_LAST), at("2026-11-30T16:00:00Z"));
  assert.deepEqual(chinaMonthStart(YEAR_FIRST), YEAR_FIRST);
  // 2026-11-30 (China) is a Monday; 2026-12-01 a Tuesday; 2027-01-01 a Friday.
  assert.deepEqual(chinaWeekStart(LAST), at("2026-11-29T16:00:00Z"));
  assert.deepEqual(chinaWeekStart(FIRST), at("2026-11-29T16:00:00Z"));
  assert.deepEqual(chinaWeekStart(YEAR_FIRST), at("2026-12-27T16:00:00Z"));
  assert.deepEqual(chinaWeekStart(at("2026-11-29T15:59:59.999Z")), at("2026-11-22T16:00:00Z"));
});

Deno.test("china time: ranges of a named day and month, year end included", () => {
  assert.deepEqual(chinaDayRange("2026-12-01"), [FIRST, at("2026-12-01T16:00:00Z")]);
  assert.deepEqual(chinaDayRange("2026-12-31"), [at("2026-12-30T16:00:00Z"), YEAR_FIRST]);
  assert.deepEqual(chinaMonthRange("2026-11"), [at("2026-10-31T16:00:00Z"), FIRST]);
  assert.deepEqual(chinaMonthRange("2026-12"), [FIRST, YEAR_FIRST]);
  assert.deepEqual(chinaMonthRange("2027-02"), [
    at("2027-01-31T16:00:00Z"),
    at("2027-02-28T16:00:00Z"),
  ]);
  for (const t of [LAST, FIRST, YEAR_LAST, YEAR_FIRST]) {
    const [start, end] = chinaDayRange(chinaDay(t));
    assert.ok(start <= t && t < end, chinaDay(t));
    const [mStart, mEnd] = chinaMonthRange(chinaMonth(t));
    assert.ok(mStart <= t && t < mEnd, chinaMonth(t));
  }
});

Deno.test("china time: text forms for people, WeChat and order numbers", () => {
  assert.equal(chinaDateTime(FIRST), "2026-12-01 00:00:00");
  assert.equal(chinaDateTime(LAST), "2026-11-30 23:59:59");
  assert.equal(chinaRfc3339(YEAR_FIRST), "2027-01-01T00:00:00+08:00");
  assert.equal(chinaDigits(YEAR_LAST), "20261231235959");
});

Deno.test("china time: SQL reads the day and month as TypeScript does", async () => {
  await using handle = await createTestDatabase();
  for (const t of [LAST, FIRST, YEAR_LAST, YEAR_FIRST]) {
    const { rows } = await sql<{ day: string; month: string }>`
        select ${chinaDaySql("t")} as day, ${chinaMonthSql("t")} as month
        from (select ${t}::timestamptz as t) as x`.execute(handle.db);
    assert.deepEqual(rows[0], { day: chinaDay(t), month: chinaMonth(t) }, t.toISOString());
  }
});
