/**
 * 我的 → 消息通知: which kinds a student gets, the 余额不足 threshold, and quiet hours (免打扰,
 * 23:00–07:00 China time unless changed: messages wait and go out as one summary when it ends;
 * security notices never wait). A student who never changed anything has the defaults.
 */
import type { Db } from "../platform/database.ts";
import { CHINA_OFFSET_MS } from "../platform/china_time.ts";
import { SWITCHABLE } from "./kinds.ts";
import type { MessageKind } from "./tables.ts";
import "./tables.ts";

/** One student's settings. */
export interface NotifySettings {
  muted: MessageKind[];
  /** 余额不足 when a payment takes the balance below this (fen). */
  lowBalance: number;
  quiet: boolean;
  /** Minutes into the China day. */
  quietStart: number;
  quietEnd: number;
}

export const DEFAULT_SETTINGS: NotifySettings = {
  muted: [],
  lowBalance: 10_00,
  quiet: true,
  quietStart: 23 * 60,
  quietEnd: 7 * 60,
};

const DAY_MINUTES = 1440;
const MINUTE_MS = 60_000;

/** The settings of these accounts (defaults for those who never changed them). */
export async function settingsOf(
  db: Db,
  accountIds: number[],
): Promise<Map<number, NotifySettings>> {
  const ids = [...new Set(accountIds)];
  const rows = ids.length
    ? await db.selectFrom("notify_settings").selectAll().where("account_id", "in", ids).execute()
    : [];
  const found = new Map(rows.map((r) => [r.account_id, {
    muted: r.muted.filter((k): k is MessageKind => SWITCHABLE.includes(k as MessageKind)),
    lowBalance: r.low_balance,
    quiet: r.quiet,
    quietStart: r.quiet_start,
    quietEnd: r.quiet_end,
  }]));
  return new Map(ids.map((id) => [id, found.get(id) ?? DEFAULT_SETTINGS]));
}

/** Saves a student's settings (security notices cannot be muted: the schema never offers it). */
export async function saveSettings(db: Db, accountId: number, s: NotifySettings): Promise<void> {
  const values = {
    muted: s.muted.filter((k) => SWITCHABLE.includes(k)),
    low_balance: s.lowBalance,
    quiet: s.quiet,
    quiet_start: s.quietStart,
    quiet_end: s.quietEnd,
    updated_at: new Date(),
  };
  await db.insertInto("notify_settings").values({ account_id: accountId, ...values })
    .onConflict((oc) => oc.column("account_id").doUpdateSet(values)).execute();
}

/**
 * When the quiet hours that hold `at` end, or null when `at` is outside them (or they are off,
 * or start and end are the same minute). Quiet hours may cross midnight (23:00–07:00) or not.
 */
export function quietUntil(s: NotifySettings, at: Date): Date | null {
  if (!s.quiet || s.quietStart === s.quietEnd) return null;
  const china = at.getTime() + CHINA_OFFSET_MS;
  const dayStart = Math.floor(china / (DAY_MINUTES * MINUTE_MS)) * DAY_MINUTES * MINUTE_MS;
  const minute = Math.floor((china - dayStart) / MINUTE_MS);
  const endToday = dayStart + s.quietEnd * MINUTE_MS - CHINA_OFFSET_MS;
  if (s.quietStart < s.quietEnd) {
    return minute >= s.quietStart && minute < s.quietEnd ? new Date(endToday) : null;
  }
  if (minute >= s.quietStart) return new Date(endToday + DAY_MINUTES * MINUTE_MS);
  if (minute < s.quietEnd) return new Date(endToday);
  return null;
}

/** "23:00" for a minute of the day. */
export function minuteText(m: number): string {
  return `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
}
