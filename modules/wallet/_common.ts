import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { getMerchant } from "../merchant/mod.ts";
import {
  InvalidAmountError,
  ReferenceConflictError,
  UnknownCardAccountError,
  UnknownMerchantError,
} from "./errors.ts";
import "./tables.ts";

/** ¥1,000,000: far above any real movement, far below the safe-integer edge. */
export const MAX_AMOUNT = 100_000_000;

/** System ceilings of the student's 付款设置; the student may only lower them. */
export const DEFAULT_PAY_LIMIT = 20_000;
export const DEFAULT_DAILY_LIMIT = 50_000;

/** Throws unless `amount` is a whole number of fen in (0, MAX_AMOUNT]. */
export function checkAmount(amount: unknown, field = "amount"): number {
  if (
    typeof amount !== "number" || !Number.isSafeInteger(amount) || amount <= 0 ||
    amount > MAX_AMOUNT
  ) {
    throw new InvalidAmountError(amount, field);
  }
  return amount;
}

function hasControlChars(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) < 0x20) return true;
  return false;
}

/** Throws unless `reference` is a non-empty printable string of at most 128 characters. */
export function checkReference(reference: unknown): string {
  if (
    typeof reference !== "string" || reference.length === 0 || reference.length > 128 ||
    hasControlChars(reference)
  ) {
    throw new ReferenceConflictError(
      String(reference).slice(0, 40),
      "empty, too long or not printable",
    );
  }
  return reference;
}

/** The China-time calendar day the daily limits count in (platform/china_time.ts). */
export { chinaDay } from "../platform/china_time.ts";

interface PgError {
  code?: string;
  constraint?: string;
  column?: string;
}

/** True for a unique violation (optionally of one named constraint). */
export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  const e = err as PgError;
  return e?.code === "23505" && (!constraint || e.constraint === constraint);
}

/** True for a NOT NULL violation: how a statement says a counter account is missing. */
export function isNotNullViolation(err: unknown): boolean {
  return (err as PgError)?.code === "23502";
}

/** Runs `fn` in a transaction, or inside the caller's transaction when given one. */
export async function inTransaction<T>(db: Db, fn: (trx: Db) => Promise<T>): Promise<T> {
  if (db.isTransaction) return await fn(db);
  return await db.transaction().execute(fn);
}

/** The ledger account of a merchant, created on first use; refuses unknown or inactive merchants. */
export async function ensureMerchantAccount(
  db: Db,
  merchantId: number,
  options: { allowInactive?: boolean } = {},
): Promise<number> {
  if (!Number.isSafeInteger(merchantId) || merchantId <= 0) {
    throw new UnknownMerchantError(merchantId);
  }
  const merchant = await getMerchant(db, merchantId);
  if (!merchant || (!merchant.active && !options.allowInactive)) {
    throw new UnknownMerchantError(merchantId);
  }
  await db.insertInto("ledger_accounts")
    .values({ kind: "merchant", merchant_id: merchantId, name: merchant.name })
    .onConflict((oc) => oc.column("merchant_id").doNothing()).execute();
  const row = await db.selectFrom("ledger_accounts").select("id").where(
    "merchant_id",
    "=",
    merchantId,
  )
    .executeTakeFirstOrThrow();
  return row.id;
}

/** The ledger account with a system code ("gateway:wechat", "utility:water", …), created on first use. */
export async function ensureSystemAccount(
  db: Db,
  code: string,
  kind: "gateway" | "utility" | "adjustment" | "void",
  name: string,
): Promise<number> {
  await db.insertInto("ledger_accounts").values({ kind, code, name })
    .onConflict((oc) => oc.column("code").doNothing()).execute();
  const row = await db.selectFrom("ledger_accounts").select("id").where("code", "=", code)
    .executeTakeFirstOrThrow();
  return row.id;
}

/** The wallet row of a card account, created (empty) on first use. */
export async function ensureCardWallet(db: Db, cardAccountId: number): Promise<void> {
  if (!Number.isSafeInteger(cardAccountId) || cardAccountId <= 0) {
    throw new UnknownCardAccountError(cardAccountId);
  }
  try {
    await db.insertInto("ledger_accounts")
      .values({ kind: "card", card_account_id: cardAccountId, name: `card:${cardAccountId}` })
      .onConflict((oc) => oc.column("card_account_id").doNothing()).execute();
  } catch (err) {
    // The wallet's foreign key to card_accounts: no such card account.
    if ((err as PgError)?.code === "23503") throw new UnknownCardAccountError(cardAccountId);
    throw err;
  }
}

/** A transfer row as the API's lookups need it. */
export interface TransferRow {
  id: number;
  reference: string;
  kind: string;
  channel: string | null;
  amount: number;
  card_account_id: number | null;
  card_delta: number | null;
  balance_after: number | null;
  merchant_id: number | null;
  terminal_id: number | null;
  related_transfer_id: number | null;
  payment_code: string | null;
  debit_account_id: number;
  credit_account_id: number;
  created_at: Date;
}

/** The transfer recorded under a reference, if any. */
export async function transferByReference(db: Db, reference: string): Promise<TransferRow | null> {
  const row = await db.selectFrom("ledger_transfers")
    .select([
      "id",
      "reference",
      "kind",
      "channel",
      "amount",
      "card_account_id",
      "card_delta",
      "balance_after",
      "merchant_id",
      "terminal_id",
      "related_transfer_id",
      "payment_code",
      "debit_account_id",
      "credit_account_id",
      "created_at",
    ])
    .where("reference", "=", reference).executeTakeFirst();
  return row ?? null;
}

/** The China day's spending so far as stored on the wallet row. */
export const spentTodaySql = (today: string) =>
  sql<number>`(case when spent_day = ${today}::date then spent_today else 0 end)`;
