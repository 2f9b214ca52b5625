import type { Transaction } from "kysely";
import type { Database, Db } from "../platform/database.ts";
import { getMerchant } from "../merchant/mod.ts";
import { ReferenceConflictError, UnknownCardAccountError, UnknownMerchantError } from "./errors.ts";
import "./tables.ts";

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

/** A transaction of the caller's or of the wallet's own: what a multi-statement movement runs in. */
export type Trx = Transaction<Database>;

/**
 * How a wallet call runs, by what the caller gave it. The public calls take the database or the
 * caller's transaction (finance and top-ups commit an audit or an order with the money, readers
 * their request record): `joined` gets the caller's transaction, where a conflict (a concurrent
 * duplicate reference, a missing counter account) aborts it and the caller retries; `own` gets
 * the database, opens any transaction itself and resolves conflicts (the first result, the
 * account created). This is the only place the wallet asks which one it was given.
 */
export async function joinedOrOwn<T>(
  db: Db,
  run: { joined: (trx: Trx) => Promise<T>; own: (db: Db) => Promise<T> },
): Promise<T> {
  return db.isTransaction ? await run.joined(db as Trx) : await run.own(db);
}

/**
 * Runs `fn`, which needs a transaction: the caller's, where a unique violation (a concurrent
 * duplicate) aborts it for the caller to retry; or one of its own, after whose rollback
 * `onDuplicate` answers a unique violation (with the first result, or by going again).
 */
export async function inTransaction<T>(
  db: Db,
  fn: (trx: Trx) => Promise<T>,
  onDuplicate?: (db: Db, err: unknown) => Promise<T>,
): Promise<T> {
  return await joinedOrOwn(db, {
    joined: fn,
    own: async (own) => {
      try {
        return await own.transaction().execute(fn);
      } catch (err) {
        if (!onDuplicate || !isUniqueViolation(err)) throw err;
        return await onDuplicate(own, err);
      }
    },
  });
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
  kind: "gateway" | "utility" | "adjustment" | "void" | "subsidy",
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
  details: unknown;
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
      "details",
    ])
    .where("reference", "=", reference).executeTakeFirst();
  return row ?? null;
}
