/**
 * The 付款码 page's check-in while online (docs/OFFLINE_PAYMENT_CODES.md §1): its device is kept
 * while it may pay, or it gets a new one (a handle and the key, which leaves the server here only).
 */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { randomDigits, toBase64Url } from "../platform/crypto.ts";
import { isUniqueViolation } from "./_common.ts";
import { cardTrust, deviceModel, deviceRefusal } from "./devices.ts";
import { deviceKey } from "./offline_codes.ts";
import { offlineLimitsOf } from "./offline_limits.ts";
import "./offline_tables.ts";

/** A card keeps at most this many live devices; one more retires the least recently used. */
export const MAX_LIVE_DEVICES = 5;
/** New devices a card may get in an hour (a page that loses its storage on every visit). */
export const MAX_NEW_PER_HOUR = 10;

/** What the page learns of its device: keep it, take a new one, or forget it. */
export type DeviceSync =
  | { state: "live"; handle: string; payLimit: number; dailyLimit: number }
  | { state: "new"; handle: string; key: string; payLimit: number; dailyLimit: number }
  | { state: "off"; reason: "frozen" | "busy" };

/**
 * The 付款码 page checks in (online): its device, if it has one and may still pay, is kept;
 * otherwise it gets a new one (the key, once); none while the code is frozen. The limits are
 * what an offline payment may be: the card office's, and the student's own where lower.
 */
export async function syncDevice(
  db: Db,
  appSecret: string,
  cardAccountId: number,
  input: { handle?: string | null; userAgent?: string },
): Promise<DeviceSync> {
  const trust = await cardTrust(db, cardAccountId);
  if (trust.frozen || trust.closed) return { state: "off", reason: "frozen" };
  const limits = await offlineLimitsOf(db, cardAccountId);
  const handle = /^\d{7}$/.test(input.handle ?? "") ? input.handle! : null;
  if (handle) {
    const kept = await db.updateTable("offline_code_devices").set({ seen_at: new Date() })
      .where("handle", "=", handle).where("card_account_id", "=", cardAccountId)
      .where("revoked_at", "is", null)
      .returning(["created_at", "revoked_at"]).executeTakeFirst();
    if (kept && deviceRefusal(kept, trust) === null) return { state: "live", handle, ...limits };
  }
  const recent = await db.selectFrom("offline_code_devices")
    .select((eb) => eb.fn.countAll<number>().as("n"))
    .where("card_account_id", "=", cardAccountId)
    .where("created_at", ">", sql<Date>`now() - interval '1 hour'`).executeTakeFirstOrThrow();
  if (Number(recent.n) >= MAX_NEW_PER_HOUR) return { state: "off", reason: "busy" };
  const device = await addDevice(db, cardAccountId, deviceModel(input.userAgent));
  return {
    state: "new",
    handle: device.handle,
    key: toBase64Url(deviceKey(appSecret, device.id, device.salt)),
    ...limits,
  };
}

/** A new device for the card; the least recently used beyond MAX_LIVE_DEVICES retire. */
async function addDevice(
  db: Db,
  cardAccountId: number,
  model: string,
): Promise<{ id: number; handle: string; salt: string }> {
  const salt = toBase64Url(crypto.getRandomValues(new Uint8Array(16)));
  for (let attempt = 0; attempt < 10; attempt++) {
    const handle = randomDigits(7);
    try {
      const row = await db.insertInto("offline_code_devices")
        .values({ card_account_id: cardAccountId, handle, salt, model })
        .returning(["id", "handle", "salt"]).executeTakeFirstOrThrow();
      await db.updateTable("offline_code_devices")
        .set({ revoked_at: new Date(), revoked_reason: "replaced" })
        .where("card_account_id", "=", cardAccountId).where("revoked_at", "is", null)
        .where("id", "not in", (eb) =>
          eb.selectFrom("offline_code_devices").select("id")
            .where("card_account_id", "=", cardAccountId).where("revoked_at", "is", null)
            .orderBy(sql`coalesce(used_at, created_at)`, "desc").orderBy("id", "desc")
            .limit(MAX_LIVE_DEVICES))
        .execute();
      return row;
    } catch (err) {
      // A handle drawn twice (one in ten million per live device): draw again.
      if (!isUniqueViolation(err)) throw err;
    }
  }
  throw new Error("Cannot add offline code device: repeated handle collisions");
}
