/**
 * 付款码: the code's shape, issuing (a new code retires the older ones), its state as the page
 * polls it, and the in-process news of a redemption (redeem.ts redeems).
 */
import { sql } from "kysely";
import { type Db, PREPARED } from "../platform/database.ts";
import { logger } from "../platform/log.ts";
import { randomDigits } from "../platform/crypto.ts";
import { getMerchant } from "../merchant/mod.ts";
import { isUniqueViolation } from "./_common.ts";
import { PaymentCodeFrozenError } from "./errors.ts";

const log = logger("wallet");

/**
 * Payment codes are 18 digits starting with 88: outside WeChat Pay (10–15), Alipay (25–30) and
 * UnionPay (62), so a reader can tell ours from theirs by the first two digits. The last digit is
 * a Luhn check digit so a misread code is refused before the database is asked.
 */
export const CODE_PREFIX = "88";
export const CODE_LENGTH = 18;
/** A code is good for about a minute; the page refreshes it every 30 seconds. */
export const CODE_TTL_MS = 60_000;

/** The Luhn check digit of `body` (also the offline codes', offline_codes.ts). */
export function luhnDigit(body: string): string {
  let sum = 0;
  for (let i = 0; i < body.length; i++) {
    let d = body.charCodeAt(body.length - 1 - i) - 48;
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return String((10 - (sum % 10)) % 10);
}

/** True when `code` has our shape: 18 digits, prefix 88, a valid check digit. */
export function isPaymentCodeShape(code: string): boolean {
  return typeof code === "string" && code.length === CODE_LENGTH && /^\d+$/.test(code) &&
    code.startsWith(CODE_PREFIX) && luhnDigit(code.slice(0, -1)) === code.slice(-1);
}

/** A freshly issued code. */
export interface PaymentCode {
  code: string;
  expiresAt: Date;
}

/**
 * Issues a new payment code for a card account and retires every older one (a new code
 * invalidates the old ones). Refused while the student has frozen the payment code.
 */
export async function issuePaymentCode(
  db: Db,
  cardAccountId: number,
  now: Date = new Date(),
): Promise<PaymentCode> {
  const expiresAt = new Date(now.getTime() + CODE_TTL_MS);
  for (let attempt = 0; attempt < 5; attempt++) {
    const body = CODE_PREFIX + randomDigits(CODE_LENGTH - CODE_PREFIX.length - 1);
    const code = body + luhnDigit(body);
    try {
      // One statement (one round trip, atomic): unless the student froze the code, retire the
      // live codes and insert the new one; a code collision rolls back both and we try again.
      const { rows } = await sql<{ code: string }>`${sql.raw(PREPARED)}
        with retired as (
          update payment_codes set superseded_at = ${now}
          where card_account_id = ${cardAccountId} and superseded_at is null and used_at is null
            and not exists (select 1 from ledger_accounts
              where card_account_id = ${cardAccountId} and code_frozen)
        )
        insert into payment_codes (code, card_account_id, expires_at)
        select ${code}, ${cardAccountId}, ${expiresAt}
        where not exists (select 1 from ledger_accounts
          where card_account_id = ${cardAccountId} and code_frozen)
        returning code`.execute(db);
      if (!rows.length) throw new PaymentCodeFrozenError();
      return { code, expiresAt };
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
    }
  }
  throw new Error("Cannot issue payment code: repeated collisions");
}

/** What the student's 付款码 page learns when a reader used the code. */
export interface CodeRedeemed {
  cardAccountId: number;
  code: string;
  amount: number;
  merchantName: string;
  transferId: number;
  balanceAfter: number;
  at: Date;
}

type Listener = (event: CodeRedeemed) => void;
const listeners = new Set<Listener>();

/** Subscribes to redemptions in this process (after commit); returns the unsubscribe function. */
export function onPaymentCodeRedeemed(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Tells this process's listeners of a redemption (after its commit). */
export function emit(event: CodeRedeemed): void {
  for (const l of listeners) {
    try {
      l(event);
    } catch (err) {
      log.error("payment code listener failed", { err: (err as Error).message });
    }
  }
}

/** The state of one of a card's codes, read from the database (the source of truth). */
export type CodeState =
  | { state: "active"; expiresAt: Date }
  | { state: "expired" }
  | {
    state: "used";
    amount: number;
    merchantName: string;
    transferId: number;
    balanceAfter: number;
  };

/** The state of `code` if it belongs to `cardAccountId`, else null. */
export async function paymentCodeState(
  db: Db,
  cardAccountId: number,
  code: string,
): Promise<CodeState | null> {
  const row = await db.selectFrom("payment_codes as pc")
    .leftJoin("ledger_transfers as t", "t.id", "pc.transfer_id")
    .select([
      "pc.used_at",
      "pc.superseded_at",
      "pc.expires_at",
      "t.id as transfer_id",
      "t.amount",
      "t.balance_after",
      "t.merchant_id",
    ])
    .where("pc.code", "=", code).where("pc.card_account_id", "=", cardAccountId).executeTakeFirst();
  if (!row) return null;
  if (row.used_at && row.transfer_id !== null) {
    const merchant = row.merchant_id === null ? null : await getMerchant(db, row.merchant_id);
    return {
      state: "used",
      amount: row.amount ?? 0,
      merchantName: merchant?.name ?? "",
      transferId: row.transfer_id,
      balanceAfter: row.balance_after ?? 0,
    };
  }
  if (row.superseded_at || row.expires_at.getTime() <= Date.now()) return { state: "expired" };
  return { state: "active", expiresAt: row.expires_at };
}

/**
 * Waits until `code` is used, expired, or `timeoutMs` passes. An in-process redemption wakes it at
 * once; otherwise it re-reads the database every `pollMs`, so a redemption on another server
 * instance is seen within that time.
 */
export async function waitForPaymentCode(
  db: Db,
  cardAccountId: number,
  code: string,
  options: { timeoutMs?: number; pollMs?: number; signal?: AbortSignal } = {},
): Promise<CodeState | null> {
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  const pollMs = options.pollMs ?? 1000;
  for (;;) {
    const state = await paymentCodeState(db, cardAccountId, code);
    if (!state || state.state !== "active" || Date.now() >= deadline || options.signal?.aborted) {
      return state;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, Math.min(pollMs, Math.max(0, deadline - Date.now())));
      const off = onPaymentCodeRedeemed((e) => {
        if (e.code === code) done();
      });
      options.signal?.addEventListener("abort", done, { once: true });
      function done() {
        clearTimeout(timer);
        off();
        resolve();
      }
    });
  }
}

/** Deletes codes older than a day that were never used (used ones stay with their transfer). */
export async function purgeOldPaymentCodes(db: Db, now: Date = new Date()): Promise<number> {
  const r = await db.deleteFrom("payment_codes").where("used_at", "is", null)
    .where("expires_at", "<", new Date(now.getTime() - 86400_000)).executeTakeFirst();
  return Number(r.numDeletedRows);
}
