/**
 * The ledger's two movements of a card: a debit (money leaves the card under the debit rule of
 * _rules.ts) and a credit (an offline overdraft is paid off first), each one statement that
 * changes the wallet row and records the transfer, idempotent on its reference.
 */
import { type RawBuilder, sql } from "kysely";
import type { Db } from "../platform/database.ts";
import {
  ensureCardWallet,
  isNotNullViolation,
  isUniqueViolation,
  joinedOrOwn,
  transferByReference,
  type TransferRow,
} from "./_common.ts";
import {
  type Balance,
  balanceOf,
  creditSql,
  type DebitRule,
  debitSql,
  signedBalanceSql,
  whyRefused,
} from "./_rules.ts";
import { InvalidAmountError, PaymentReversedError, ReferenceConflictError } from "./errors.ts";
import type { Channel, TransferKind } from "./tables.ts";

export type { Balance } from "./_rules.ts";

/** The outcome of a debit or credit of a card: the transfer and the card's balance after it. */
export interface PaymentResult {
  transferId: number;
  balanceAfter: number;
  /** True when this reference had already been applied: nothing moved this time. */
  duplicate: boolean;
}

/** The balance of a card account; zero for a card account that never had money. */
export async function getBalance(db: Db, cardAccountId: number): Promise<Balance> {
  const row = await db.selectFrom("ledger_accounts").select(["balance", "held", "overdraft"])
    .where("card_account_id", "=", cardAccountId).executeTakeFirst();
  return balanceOf(row);
}

/** Card accounts whose balance went below zero through offline uploads, most negative first. */
export async function listNegativeBalances(
  db: Db,
): Promise<Array<{ cardAccountId: number; balance: number; overdraft: number }>> {
  const rows = await db.selectFrom("ledger_accounts")
    .select(["card_account_id", "balance", "held", "overdraft"])
    .where("kind", "=", "card").where("overdraft", ">", 0).orderBy("overdraft", "desc").execute();
  return rows.map((r) => ({
    cardAccountId: r.card_account_id!,
    balance: balanceOf(r).balance,
    overdraft: r.overdraft,
  }));
}

/** What a retried reference must match to count as the same request. */
export interface Expect {
  cardAccountId: number;
  amount: number;
  kinds: TransferKind[];
}

/** The first result of a reference, if it was the same request; else why not. */
export function sameRequest(t: TransferRow, e: Expect): PaymentResult {
  if (t.kind === "void") throw new PaymentReversedError(t.reference);
  if (
    t.card_account_id !== e.cardAccountId || t.amount !== e.amount ||
    !e.kinds.includes(t.kind as TransferKind)
  ) {
    throw new ReferenceConflictError(t.reference);
  }
  return { transferId: t.id, balanceAfter: t.balance_after ?? 0, duplicate: true };
}

/** A positive id or null; anything else is refused. */
export function optionalId(value: number | null | undefined, what: string): number | null {
  if (value === undefined || value === null) return null;
  if (!Number.isSafeInteger(value) || value <= 0) throw new InvalidAmountError(value, what);
  return value;
}

/** SQL: no transfer has this reference yet (a concurrent one still fails on the unique index). */
export function unusedReferenceSql(reference: string): RawBuilder<boolean> {
  return sql<boolean>`not exists (select 1 from ledger_transfers where reference = ${reference})`;
}

/** A debit of one card. */
export interface DebitSpec {
  cardAccountId: number;
  amount: number;
  reference: string;
  kind: TransferKind;
  channel: Channel | null;
  /** SQL for the id of the account the money goes to; NULL makes the insert fail (missing account). */
  counterAccount: RawBuilder<number | null>;
  merchantId: number | null;
  terminalId: number | null;
  details: unknown;
  rule: DebitRule;
}

/**
 * One statement, one round trip: take the money from the card row where the debit rule allows it
 * (and the reference is new), and record the transfer. Returns null when the row refused; a
 * concurrent duplicate reference fails on the unique index and rolls the whole statement back.
 */
async function debitStatement(
  db: Db,
  s: DebitSpec,
): Promise<{ id: number; balance_after: number } | null> {
  const result = await sql<{ id: number; balance_after: number }>`
    with w as (${
    debitSql({
      card: sql`${s.cardAccountId}`,
      amount: sql`${s.amount}`,
      rule: s.rule,
      also: [unusedReferenceSql(s.reference)],
    })
  })
    insert into ledger_transfers (reference, kind, channel, debit_account_id, credit_account_id, amount,
      card_account_id, card_delta, balance_after, merchant_id, terminal_id, details)
    select ${s.reference}, ${s.kind}, ${s.channel}, w.account_id, (${s.counterAccount}), ${s.amount},
      ${s.cardAccountId}, ${-s.amount}, w.after, ${s.merchantId}, ${s.terminalId}, ${
    JSON.stringify(s.details ?? null)
  }::jsonb
    from w
    returning id, balance_after`.execute(db);
  return result.rows[0] ?? null;
}

/**
 * Debits a card: the statement, then for the rare cases the first result of a duplicate
 * reference or the refusal read back from the row. On its own it also resolves a missing counter
 * account (`ensureCounter`, then again) and a concurrent duplicate; in the caller's transaction
 * those abort it and the caller retries.
 */
export async function debitCard(
  db: Db,
  s: DebitSpec,
  ensureCounter: (db: Db) => Promise<unknown>,
): Promise<PaymentResult> {
  return await joinedOrOwn(db, {
    joined: (trx) => debitAttempts(trx, s, null),
    own: (own) => debitAttempts(own, s, ensureCounter),
  });
}

async function debitAttempts(
  db: Db,
  s: DebitSpec,
  ensureCounter: ((db: Db) => Promise<unknown>) | null,
): Promise<PaymentResult> {
  const expect = { cardAccountId: s.cardAccountId, amount: s.amount, kinds: [s.kind] };
  for (let attempt = 0; attempt < 5; attempt++) {
    let row;
    try {
      row = await debitStatement(db, s);
    } catch (err) {
      if (ensureCounter && isUniqueViolation(err)) {
        const first = await transferByReference(db, s.reference);
        if (first) return sameRequest(first, expect);
        continue;
      }
      if (ensureCounter && isNotNullViolation(err)) {
        await ensureCounter(db);
        continue;
      }
      throw err;
    }
    if (row) return { transferId: row.id, balanceAfter: row.balance_after, duplicate: false };
    const first = await transferByReference(db, s.reference);
    if (first) return sameRequest(first, expect);
    const refusal = await whyRefused(db, s.cardAccountId, s.amount, s.rule);
    if (refusal) throw refusal;
  }
  throw new Error(`Cannot debit card account ${s.cardAccountId}: gave up after repeated conflicts`);
}

/** A credit of one card. */
export interface CreditSpec {
  cardAccountId: number;
  amount: number;
  reference: string;
  kind: TransferKind;
  channel: Channel | null;
  counterAccountId: number;
  merchantId: number | null;
  terminalId: number | null;
  relatedTransferId: number | null;
  details: unknown;
  /** Give the amount back to today's spending (a reversal of today's payment). */
  undoSpendOn?: string | null;
}

/** Credits a card in one statement (the credit rule of _rules.ts) and records the transfer. */
async function creditStatement(
  db: Db,
  s: CreditSpec,
): Promise<{ id: number; balance_after: number } | null> {
  const result = await sql<{ id: number; balance_after: number }>`
    with w as (
      update ledger_accounts la set ${creditSql(sql`${s.amount}`, s.undoSpendOn)}
      where la.card_account_id = ${s.cardAccountId} and ${unusedReferenceSql(s.reference)}
      returning la.id as account_id, ${signedBalanceSql()} as after
    )
    insert into ledger_transfers (reference, kind, channel, debit_account_id, credit_account_id, amount,
      card_account_id, card_delta, balance_after, merchant_id, terminal_id, related_transfer_id, details)
    select ${s.reference}, ${s.kind}, ${s.channel}, ${s.counterAccountId}, w.account_id, ${s.amount},
      ${s.cardAccountId}, ${s.amount}, w.after, ${s.merchantId}, ${s.terminalId}, ${s.relatedTransferId},
      ${JSON.stringify(s.details ?? null)}::jsonb
    from w
    returning id, balance_after`.execute(db);
  return result.rows[0] ?? null;
}

/**
 * Credits a card (its wallet row created on first use). A duplicate reference returns the first
 * result; a concurrent duplicate does too on its own, and aborts the caller's transaction in it.
 */
export async function creditCard(db: Db, s: CreditSpec): Promise<PaymentResult> {
  const expect = { cardAccountId: s.cardAccountId, amount: s.amount, kinds: [s.kind] };
  await ensureCardWallet(db, s.cardAccountId);
  const attempt = async (db: Db, concurrentFirst: boolean) => {
    try {
      const row = await creditStatement(db, s);
      if (row) return { transferId: row.id, balanceAfter: row.balance_after, duplicate: false };
    } catch (err) {
      if (!concurrentFirst || !isUniqueViolation(err, "ledger_transfers_reference_key")) throw err;
    }
    const first = await transferByReference(db, s.reference);
    if (!first) throw new Error(`Cannot credit card account ${s.cardAccountId}: no wallet row`);
    return sameRequest(first, expect);
  };
  return await joinedOrOwn(db, {
    joined: (trx) => attempt(trx, false),
    own: (own) => attempt(own, true),
  });
}
