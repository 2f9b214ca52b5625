/**
 * 离线付款码: the code a phone computes without the network (docs/OFFLINE_PAYMENT_CODES.md).
 *
 * While online, the 付款码 page provisions a device: a handle (7 random digits, unique for all
 * time) and a 32-byte key the server never stores; it derives it again from APP_SECRET, the
 * device's id and a random salt kept in its row. Offline, the page computes RFC 6238 TOTP
 * (HMAC-SHA256, 30-second steps from the Unix epoch, 8 digits) with that key and shows
 *
 *     87 | handle (7) | TOTP (8) | Luhn check digit (1)        18 digits
 *
 * `87` is neither WeChat Pay (10–15), Alipay (25–30), UnionPay (62) nor our online codes (88).
 * The code carries no account data: the handle is mapped to its card account by the server only.
 * The browser's copy of this arithmetic is static/pay_offline.js; both are checked against RFC
 * 6238's appendix B and the vectors of the document above (offline_codes_test.ts).
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { luhnDigit } from "./codes.ts";

export const OFFLINE_CODE_PREFIX = "87";
export const OFFLINE_CODE_LENGTH = 18;
export const HANDLE_DIGITS = 7;
export const OTP_DIGITS = 8;
/** Seconds per time step (RFC 6238's X); T0 is the Unix epoch. */
export const STEP_SECONDS = 30;
/** A code is good in its own step and the one on either side (a phone clock a little off). */
export const ACCEPT_STEPS = 1;
/**
 * Beyond ±1 step and within this many, a right code comes from a phone whose clock is minutes
 * off (±10 minutes): refused with its own status, so the reader can tell the student to open
 * 付款码 online once (the page then corrects its clock by the server's).
 */
export const SKEW_STEPS = 20;

/** The RFC 6238 time step of a moment (ms since the epoch). */
export function stepOf(ms: number): number {
  return Math.floor(ms / 1000 / STEP_SECONDS);
}

/** HMAC algorithms of RFC 6238's reference implementation. */
export type TotpHash = "sha1" | "sha256" | "sha512";

/**
 * RFC 6238 TOTP (RFC 4226's dynamic truncation) for time step `step`: `digits` decimal digits,
 * zero-padded.
 */
export function totp(
  key: Uint8Array,
  step: number,
  options: { digits?: number; hash?: TotpHash } = {},
): string {
  const digits = options.digits ?? OTP_DIGITS;
  const counter = new Uint8Array(8);
  const view = new DataView(counter.buffer);
  view.setUint32(0, Math.floor(step / 0x1_0000_0000));
  view.setUint32(4, step >>> 0);
  const mac = createHmac(options.hash ?? "sha256", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const binary = ((mac[offset] & 0x7f) << 24) | (mac[offset + 1] << 16) |
    (mac[offset + 2] << 8) | mac[offset + 3];
  return String(binary % 10 ** digits).padStart(digits, "0");
}

/** The 18-digit offline code of a device handle and a TOTP value. */
export function offlineCode(handle: string, otp: string): string {
  if (!new RegExp(`^\\d{${HANDLE_DIGITS}}$`).test(handle)) {
    throw new Error("Cannot make offline code: the handle must be 7 digits");
  }
  if (!new RegExp(`^\\d{${OTP_DIGITS}}$`).test(otp)) {
    throw new Error("Cannot make offline code: the TOTP must be 8 digits");
  }
  const body = OFFLINE_CODE_PREFIX + handle + otp;
  return body + luhnDigit(body);
}

/** True when `code` has the offline shape: 18 digits, prefix 87, a valid check digit. */
export function isOfflineCodeShape(code: string): boolean {
  return typeof code === "string" && code.length === OFFLINE_CODE_LENGTH && /^\d+$/.test(code) &&
    code.startsWith(OFFLINE_CODE_PREFIX) && luhnDigit(code.slice(0, -1)) === code.slice(-1);
}

/** The handle and TOTP of an offline code, or null when it does not have the shape. */
export function parseOfflineCode(code: string): { handle: string; otp: string } | null {
  if (!isOfflineCodeShape(code)) return null;
  const p = OFFLINE_CODE_PREFIX.length;
  return {
    handle: code.slice(p, p + HANDLE_DIGITS),
    otp: code.slice(p + HANDLE_DIGITS, p + HANDLE_DIGITS + OTP_DIGITS),
  };
}

/** The 32-byte key of a device, derived from APP_SECRET, its id and its salt (never stored). */
export function deviceKey(appSecret: string, deviceId: number, salt: string): Uint8Array {
  return new Uint8Array(
    createHmac("sha256", appSecret).update(`offline-payment-code\n${deviceId}\n${salt}`).digest(),
  );
}

/** Where a TOTP value matched around the server's step. */
export type StepMatch =
  | { kind: "ok"; step: number }
  | { kind: "skewed"; step: number }
  | { kind: "none" };

/**
 * Which step within ±`SKEW_STEPS` of `centre` produced `otp` under `key`: within ±1 it pays
 * ("ok"), further out it is a phone clock minutes off ("skewed"). Every step is computed and
 * compared in constant time, so the time taken says nothing about where (or whether) it matched;
 * the nearest step wins (a collision of 8-digit values further out cannot shadow the right one).
 */
export function matchStep(key: Uint8Array, otp: string, centre: number): StepMatch {
  const enc = new TextEncoder();
  const wanted = enc.encode(otp.padStart(OTP_DIGITS, "0").slice(-OTP_DIGITS));
  let best: number | null = null;
  for (let d = 0; d <= SKEW_STEPS; d++) {
    for (const step of d === 0 ? [centre] : [centre - d, centre + d]) {
      const same = timingSafeEqual(enc.encode(totp(key, step)), wanted);
      if (same && best === null) best = step;
    }
  }
  if (best === null) return { kind: "none" };
  return Math.abs(best - centre) <= ACCEPT_STEPS
    ? { kind: "ok", step: best }
    : { kind: "skewed", step: best };
}
