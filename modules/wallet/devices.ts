/**
 * 离线付款码's devices (docs/OFFLINE_PAYMENT_CODES.md §1): listed and removed in 付款码设置,
 * retired when the student freezes the code, and dead from the card's next 挂失 or 解绑 on
 * (the 付款码 page provisions them, device_checkin.ts). Whether a device may pay is decided here
 * once (`deviceRefusal`), for the page, for 付款码设置 and for the redemption.
 */
import type { Db } from "../platform/database.ts";
import { findCardAccount } from "../card/mod.ts";
import "./offline_tables.ts";

/** A device as 付款码设置 lists it. */
export interface DeviceView {
  id: number;
  model: string;
  addedAt: Date;
  usedAt: Date | null;
}

/** The card's state that decides whether its devices may pay, read once. */
export interface CardTrust {
  /** 冻结付款码 (by the student in 付款码设置, or with a 挂失). */
  frozen: boolean;
  /** Devices added at or before this never pay (the latest 挂失 or 解绑). */
  untrustedBefore: Date | null;
  /** 销户: nothing pays. */
  closed: boolean;
}

/** The card's trust as the card module and the wallet row say it. */
export async function cardTrust(db: Db, cardAccountId: number): Promise<CardTrust> {
  const card = await findCardAccount(db, cardAccountId);
  const w = await db.selectFrom("ledger_accounts").select("code_frozen")
    .where("card_account_id", "=", cardAccountId).executeTakeFirst();
  return {
    frozen: (w?.code_frozen ?? false) || (card?.paymentCodeFrozen ?? false),
    untrustedBefore: card?.lastLossOrUnbindAt ?? null,
    closed: !card || card.status === "cancelled",
  };
}

/** Why a device may not pay (or be kept by its page), or null when it may. */
export function deviceRefusal(
  device: { created_at: Date; revoked_at: Date | null },
  trust: CardTrust,
): "revoked" | "frozen" | null {
  if (trust.frozen) return "frozen";
  if (trust.closed || device.revoked_at !== null) return "revoked";
  if (trust.untrustedBefore && device.created_at.getTime() <= trust.untrustedBefore.getTime()) {
    return "revoked";
  }
  return null;
}

/**
 * The phone model a user agent names, for 付款码设置: "V2148A · Android 13 · 微信",
 * "iPhone · iOS 17.2 · 微信", or a plain word when it names none.
 */
export function deviceModel(userAgent: string | undefined): string {
  const ua = String(userAgent ?? "").slice(0, 512);
  const parts: string[] = [];
  const android = /Android ([\d.]+)(?:; ([^;)]+?))?(?: Build\/[^;)]*)?(?:;|\))/.exec(ua);
  const ios = /(iPhone|iPad)[^)]*? OS (\d+)_(\d+)/.exec(ua);
  if (android) {
    const model = android[2]?.trim();
    // Chrome's reduced user agent says "K" instead of the model.
    if (model && model !== "K" && model !== "wv") parts.push(model);
    parts.push(`Android ${android[1]}`);
  } else if (ios) {
    parts.push(ios[1], `iOS ${ios[2]}.${ios[3]}`);
  } else if (/Windows|Macintosh|Linux/.test(ua)) {
    parts.push("电脑");
  }
  if (/MicroMessenger/.test(ua)) parts.push("微信");
  const text = [...parts.join(" · ")].filter((ch) => ch >= " " && ch !== "\x7f").join("")
    .slice(0, 60);
  return text || "未知设备";
}

/** The card's devices that may pay, newest first. */
export async function listDevices(db: Db, cardAccountId: number): Promise<DeviceView[]> {
  const trust = await cardTrust(db, cardAccountId);
  const rows = await db.selectFrom("offline_code_devices")
    .select(["id", "model", "created_at", "used_at", "revoked_at"])
    .where("card_account_id", "=", cardAccountId).where("revoked_at", "is", null)
    .orderBy("created_at", "desc").orderBy("id", "desc").execute();
  return rows.filter((r) => deviceRefusal(r, trust) === null)
    .map((r) => ({ id: r.id, model: r.model, addedAt: r.created_at, usedAt: r.used_at }));
}

/** Removes one of the card's devices (付款码设置 → 移除): its next code is refused. */
export async function removeDevice(
  db: Db,
  cardAccountId: number,
  deviceId: number,
): Promise<boolean> {
  if (!Number.isSafeInteger(deviceId) || deviceId <= 0) return false;
  const r = await db.updateTable("offline_code_devices")
    .set({ revoked_at: new Date(), revoked_reason: "removed" })
    .where("id", "=", deviceId).where("card_account_id", "=", cardAccountId)
    .where("revoked_at", "is", null).executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

/** Retires every device of the card (冻结付款码), inside the caller's statement order. */
export async function revokeDevices(db: Db, cardAccountId: number): Promise<void> {
  await db.updateTable("offline_code_devices")
    .set({ revoked_at: new Date(), revoked_reason: "frozen" })
    .where("card_account_id", "=", cardAccountId).where("revoked_at", "is", null).execute();
}
