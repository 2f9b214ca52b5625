/**
 * China time (UTC+8 all year: China has no summer time). The one home of the calendar day, week
 * and month the card office counts in, in TypeScript and, for grouping rows, in SQL.
 */
import { sql } from "kysely";

export const CHINA_OFFSET_MS = 8 * 3_600_000;
const DAY_MS = 86_400_000;

/** The wall clock in China, as a Date whose UTC fields read China time. */
function wallClock(at: Date | number): Date {
  return new Date(+at + CHINA_OFFSET_MS);
}

/** The China calendar day, "2026-11-25". */
export function chinaDay(at: Date | number = Date.now()): string {
  return wallClock(at).toISOString().slice(0, 10);
}

/** The China calendar month, "2026-11". */
export function chinaMonth(at: Date | number = Date.now()): string {
  return wallClock(at).toISOString().slice(0, 7);
}

/** China time to the second, "2026-11-25 08:30:00". */
export function chinaDateTime(at: Date | number): string {
  return wallClock(at).toISOString().slice(0, 19).replace("T", " ");
}

/** China time as RFC 3339 with its offset, "2026-11-25T08:30:00+08:00". */
export function chinaRfc3339(at: Date | number): string {
  return `${wallClock(at).toISOString().slice(0, 19)}+08:00`;
}

/** China time as fourteen digits, "20261125083000" (order numbers). */
export function chinaDigits(at: Date | number): string {
  return wallClock(at).toISOString().replace(/\D/g, "").slice(0, 14);
}

/** Midnight China time starting the day that holds `at`. */
export function chinaDayStart(at: Date | number = Date.now()): Date {
  return new Date(Math.floor((+at + CHINA_OFFSET_MS) / DAY_MS) * DAY_MS - CHINA_OFFSET_MS);
}

/** Midnight China time starting the Monday of the week that holds `at`. */
export function chinaWeekStart(at: Date | number = Date.now()): Date {
  const weekday = (wallClock(at).getUTCDay() + 6) % 7; // Monday = 0
  return new Date(chinaDayStart(at).getTime() - weekday * DAY_MS);
}

/** Midnight China time starting the month that holds `at`. */
export function chinaMonthStart(at: Date | number = Date.now()): Date {
  const china = wallClock(at);
  return new Date(Date.UTC(china.getUTCFullYear(), china.getUTCMonth(), 1) - CHINA_OFFSET_MS);
}

/** [start, end) of a China day "2026-11-25" (invalid dates when the text is not a day). */
export function chinaDayRange(day: string): [Date, Date] {
  const start = new Date(`${day}T00:00:00+08:00`).getTime();
  return [new Date(start), new Date(start + DAY_MS)];
}

/** [start, end) of a China month "2026-11" (the caller has checked the form). */
export function chinaMonthRange(month: string): [Date, Date] {
  const [y, m] = month.split("-").map(Number);
  return [
    new Date(Date.UTC(y, m - 1, 1) - CHINA_OFFSET_MS),
    new Date(Date.UTC(y, m, 1) - CHINA_OFFSET_MS),
  ];
}

/** The China day of a timestamp column in SQL, as chinaDay reads it ("2026-11-25"). */
export function chinaDaySql(column: string) {
  return sql<string>`to_char((${
    sql.ref(column)
  } at time zone 'UTC') + interval '8 hours', 'YYYY-MM-DD')`;
}

/** The China month of a timestamp column in SQL, as chinaMonth reads it ("2026-11"). */
export function chinaMonthSql(column: string) {
  return sql<string>`to_char((${
    sql.ref(column)
  } at time zone 'UTC') + interval '8 hours', 'YYYY-MM')`;
}
