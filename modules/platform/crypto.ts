import { createHash, createHmac } from "node:crypto";

const enc = new TextEncoder();

/** Lower-case hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** URL-safe base64 without padding. */
export function toBase64Url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * HMAC-SHA256 of `purpose` and `value` under `secret`, as hex: a keyed hash (e.g. ID numbers,
 * CSRF tokens). node:crypto rather than WebCrypto: it runs on every request, and WebCrypto HMAC
 * was seen to slow down call after call in a long-lived Deno process.
 */
export function keyedHash(secret: string, purpose: string, value: string): Promise<string> {
  return Promise.resolve(createHmac("sha256", secret).update(`${purpose}\n${value}`).digest("hex"));
}

/** SHA-256 of a string, as hex. */
export function sha256Hex(value: string): Promise<string> {
  return Promise.resolve(createHash("sha256").update(value).digest("hex"));
}

/** A random token of `bytes` bytes, URL-safe. */
export function randomToken(bytes = 32): string {
  return toBase64Url(crypto.getRandomValues(new Uint8Array(bytes)));
}

/** Compares two strings in time independent of where they differ. */
export function timingSafeEqual(a: string, b: string): boolean {
  const x = enc.encode(a);
  const y = enc.encode(b);
  if (x.length !== y.length) return false;
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= x[i] ^ y[i];
  return diff === 0;
}

/** A uniformly random string of `length` decimal digits. */
export function randomDigits(length: number): string {
  let out = "";
  while (out.length < length) {
    const [n] = crypto.getRandomValues(new Uint32Array(1));
    if (n < 4_000_000_000) out += String(n % 10);
  }
  return out;
}
