import { type RawBuilder, sql } from "kysely";
import type { Db } from "../platform/database.ts";
import {
  checkAmount,
  checkReference,
  chinaDay,
  ensureCardWallet,
  ensureMerchantAccount,
  ensureSystemAccount,
  inTransaction,
  isNotNullViolation,
  isUniqueViolation,
  spentTodaySql,
  transferByReference,
  type TransferRow,
} from "./_common.ts";
import {
  InsufficientFundsError,
  InvalidAmountError,
  LimitExceededError,
  NegativeBalanceError,
  NotRefundableError,
  PaymentReversedError,
  ReferenceConflictError,
  RefundExceedsOriginalError,
  TransferNotFoundError,
} from "./errors.ts";
import type { Channel, TransferKind } from "./tables.ts";

/** A card account's money: `balance` may be negative only after offline uploads. */
export interface Balance {
  /** Signed balance in fen: what the card account holds, minus any offline overdraft. */
  balance: number;
  /** Held by unfinished shower pre-authorisations. */
  held: number;
  /** What an online payment may take now (0 while the balance is negative). */
  available: number;
}

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
  if (!row) return { balance: 0, held: 0, available: 0 };
  return {
    balance: row.balance - row.overdraft,
    held: row.held,
    available: row.overdraft > 0 ? 0 : row.balance - row.held,
  };
}

interface DebitSpec {
  cardAccountId: number;
  amount: number;
  reference: string;
  kind: TransferKind;
  channel: Channel | null;
  /** SQL for the id of the account the money goes to; NULL makes the insert fail (missing account). */
  counterAccount: RawBuilder<number>;
  merchantId: number | null;
  terminalId: number | null;
  details: unknown;
  /** Apply the student's per-payment and daily limits and count the amount as today's spending. */
  limits: boolean;
  today: string;
}

/**
 * One statement, one round trip: take the money from the card row only if it is there (and within
 * the limits, and the reference is new), and record the transfer. Returns null when the card row
 * refused; a concurrent duplicate reference fails on the unique index and rolls the whole
 * statement back.
 */
async function debitStatement(
  db: Db,
  s: DebitSpec,
): Promise<{ id: number; balance_after: number } | null> {
  const spent = spentTodaySql(s.today);
  const limitSet = s.limits
    ? sql`, spent_day = ${s.today}::date, spent_today = ${spent} + ${s.amount}`
    : sql``;
  const limitWhere = s.limits
    ? sql`and ${s.amount} <= pay_limit and ${spent} + ${s.amount} <= daily_limit`
    : sql``;
  const result = await sql<{ id: number; balance_after: number }>`
    with w as (
      update ledger_accounts set balance = balance - ${s.amount} ${limitSet}
      where card_account_id = ${s.cardAccountId} and overdraft = 0
        and balance - held >= ${s.amount} ${limitWhere}
        and not exists (select 1 from ledger_transfers where reference = ${s.reference})
      returning id, balance - overdraft as after
    )
    insert into ledger_transfers (reference, kind, channel, debit_account_id, credit_account_id, amount,
      card_account_id, card_delta, balance_after, merchant_id, terminal_id, details)
    select ${s.reference}, ${s.kind}, ${s.channel}, w.id, (${s.counterAccount}), ${s.amount},
      ${s.cardAccountId}, ${-s.amount}, w.after, ${s.merchantId}, ${s.terminalId}, ${
    JSON.stringify(s.details ?? null)
  }::jsonb
    from w
    returning id, balance_after`.execute(db);
  return result.rows[0] ?? null;
}

/** What a retried reference must match to count as the same request. */
interface Expect {
  cardAccountId: number;
  amount: number;
  kinds: TransferKind[];
}

function sameRequest(t: TransferRow, e: Expect): PaymentResult {
  if (t.kind === "void") throw new PaymentReversedError(t.reference);
  if (
    t.card_account_id !== e.cardAccountId || t.amount !== e.amount ||
    !e.kinds.includes(t.kind as TransferKind)
  ) {
    throw new ReferenceConflictError(t.reference);
  }
  return { transferId: t.id, balanceAfter: t.balance_after ?? 0, duplicate: true };
}

/** Explains why the card row refused a debit, by reading it; null when nothing is wrong (a race). */
async function refusalOf(db: Db, s: DebitSpec): Promise<Error | null> {
  const w = await db.selectFrom("ledger_accounts")
    .select(["balance", "held", "overdraft", "pay_limit", "daily_limit", "spent_today"])
    .select(sql<string | null>`spent_day::text`.as("day"))
    .where("card_account_id", "=", s.cardAccountId).executeTakeFirst();
  if (!w) return new InsufficientFundsError(0, 0, s.amount);
  if (w.overdraft > 0) return new NegativeBalanceError(w.balance - w.overdraft);
  if (s.limits) {
    if (s.amount > w.pay_limit) return new LimitExceededError("per_payment", w.pay_limit, s.amount);
    const spent = w.day === s.today ? w.spent_today : 0;
    if (spent + s.amount > w.daily_limit) {
      return new LimitExceededError("daily", w.daily_limit, s.amount);
    }
  }
  if (w.balance - w.held < s.amount) {
    return new InsufficientFundsError(w.balance - w.overdraft, w.balance - w.held, s.amount);
  }
  return null;
}

/**
 * Debits a card with retries for the rare cases: a missing counter account (created, then
 * retried), a duplicate reference (the first result), a refusal read back from the row.
 */
async function debitCard(
  db: Db,
  s: DebitSpec,
  ensureCounter: () => Promise<unknown>,
): Promise<PaymentResult> {
  const expect = { cardAccountId: s.cardAccountId, amount: s.amount, kinds: [s.kind] };
  for (let attempt = 0; attempt < 5; attempt++) {
    let row;
    try {
      row = await debitStatement(db, s);
    } catch (err) {
      if (isUniqueViolation(err) && !db.isTransaction) {
        const first = await transferByReference(db, s.reference);
        if (first) return sameRequest(first, expect);
        continue;
      }
      if (isNotNullViolation(err) && !db.isTransaction) {
        await ensureCounter();
        continue;
      }
      throw err;
    }
    if (row) return { transferId: row.id, balanceAfter: row.balance_after, duplicate: false };
    const first = await transferByReference(db, s.reference);
    if (first) return sameRequest(first, expect);
    const refusal = await refusalOf(db, s);
    if (refusal) throw refusal;
  }
  throw new Error(`Cannot debit card account ${s.cardAccountId}: gave up after repeated conflicts`);
}

function optionalId(value: number | null | undefined, what: string): number | null {
  if (value === undefined || value === null) return null;
  if (!Number.isSafeInteger(value) || value <= 0) throw new InvalidAmountError(value, what);
  return value;
}

/** The account of an active merchant, or NULL (which makes the insert fail and the caller check). */
const merchantAccountSql = (merchantId: number, requireActive = true) =>
  sql<number>`select la.id from ledger_accounts la join merchants m on m.id = la.merchant_id
    where la.merchant_id = ${merchantId} and (m.active or ${!requireActive})`;

/**
 * Pays a merchant from a card (a canteen or supermarket swipe, or a scanned code): refused for
 * insufficient funds, the student's per-payment or daily limit, or a negative balance.
 */
export async function payFromCard(
  db: Db,
  input: {
    cardAccountId: number;
    merchantId: number;
    amount: number;
    reference: string;
    terminalId?: number | null;
    channel?: "card" | "qr";
    kind?: "purchase";
    details?: unknown;
  },
): Promise<PaymentResult> {
  const amount = checkAmount(input.amount);
  const reference = checkReference(input.reference);
  const merchantId = input.merchantId;
  return await debitCard(db, {
    cardAccountId: input.cardAccountId,
    amount,
    reference,
    kind: "purchase",
    channel: input.channel ?? "card",
    counterAccount: merchantAccountSql(merchantId),
    merchantId,
    terminalId: optionalId(input.terminalId, "terminalId"),
    details: input.details ?? null,
    limits: true,
    today: chinaDay(),
  }, () => ensureMerchantAccount(db, merchantId));
}

const UTILITY_NAMES = { electricity: "电费收入", water: "冷水收入" } as const;

/** Pays a dorm utility (电费 / 冷水) from a card; billing's own limits apply before this. */
export async function payUtility(
  db: Db,
  input: {
    cardAccountId: number;
    amount: number;
    utility: "electricity" | "water";
    reference: string;
    details?: unknown;
  },
): Promise<{ transferId: number; balanceAfter: number; duplicate: boolean }> {
  const amount = checkAmount(input.amount);
  const reference = checkReference(input.reference);
  if (!(input.utility in UTILITY_NAMES)) throw new InvalidAmountError(input.utility, "utility");
  const code = `utility:${input.utility}`;
  return await debitCard(db, {
    cardAccountId: input.cardAccountId,
    amount,
    reference,
    kind: input.utility,
    channel: null,
    counterAccount: sql<number>`select id from ledger_accounts where code = ${code}`,
    merchantId: null,
    terminalId: null,
    details: input.details ?? null,
    limits: false,
    today: chinaDay(),
  }, () => ensureSystemAccount(db, code, "utility", UTILITY_NAMES[input.utility]));
}

interface CreditSpec {
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

/** Credits a card in one statement: pays off an offline overdraft first, then the balance. */
async function creditStatement(
  db: Db,
  s: CreditSpec,
): Promise<{ id: number; balance_after: number } | null> {
  const undo = s.undoSpendOn
    ? sql`, spent_today = case when spent_day = ${s.undoSpendOn}::date then greatest(spent_today - ${s.amount}, 0) else spent_today end`
    : sql``;
  const result = await sql<{ id: number; balance_after: number }>`
    with w as (
      update ledger_accounts set overdraft = greatest(overdraft - ${s.amount}, 0),
        balance = balance + greatest(${s.amount} - overdraft, 0) ${undo}
      where card_account_id = ${s.cardAccountId}
        and not exists (select 1 from ledger_transfers where reference = ${s.reference})
      returning id, balance - overdraft as after
    )
    insert into ledger_transfers (reference, kind, channel, debit_account_id, credit_account_id, amount,
      card_account_id, card_delta, balance_after, merchant_id, terminal_id, related_transfer_id, details)
    select ${s.reference}, ${s.kind}, ${s.channel}, ${s.counterAccountId}, w.id, ${s.amount},
      ${s.cardAccountId}, ${s.amount}, w.after, ${s.merchantId}, ${s.terminalId}, ${s.relatedTransferId},
      ${JSON.stringify(s.details ?? null)}::jsonb
    from w
    returning id, balance_after`.execute(db);
  return result.rows[0] ?? null;
}

async function creditCard(db: Db, s: CreditSpec): Promise<PaymentResult> {
  const expect = { cardAccountId: s.cardAccountId, amount: s.amount, kinds: [s.kind] };
  await ensureCardWallet(db, s.cardAccountId);
  try {
    const row = await creditStatement(db, s);
    if (row) return { transferId: row.id, balanceAfter: row.balance_after, duplicate: false };
  } catch (err) {
    if (!isUniqueViolation(err, "ledger_transfers_reference_key") || db.isTransaction) throw err;
  }
  const first = await transferByReference(db, s.reference);
  if (!first) throw new Error(`Cannot credit card account ${s.cardAccountId}: no wallet row`);
  return sameRequest(first, expect);
}

/** The clearing account of a gateway (`method`: "wechat", "sandbox", …), created on first use. */
async function gatewayAccount(db: Db, method: string): Promise<number> {
  if (!/^[a-z0-9_]{1,32}$/.test(method)) throw new InvalidAmountError(method, "method");
  return await ensureSystemAccount(db, `gateway:${method}`, "gateway", `${method} 充值清算`);
}

/**
 * Credits a top-up paid through a gateway (`method`: "wechat", "sandbox", …) to the card; pays off
 * an offline overdraft first. Idempotent on the gateway's order reference.
 */
export async function creditTopUp(
  db: Db,
  input: {
    cardAccountId: number;
    amount: number;
    method: string;
    reference: string;
    details?: unknown;
  },
): Promise<PaymentResult> {
  const amount = checkAmount(input.amount);
  const reference = checkReference(input.reference);
  const gateway = await gatewayAccount(db, input.method);
  return await creditCard(db, {
    cardAccountId: input.cardAccountId,
    amount,
    reference,
    kind: "topup",
    channel: null,
    counterAccountId: gateway,
    merchantId: null,
    terminalId: null,
    relatedTransferId: null,
    details: { method: input.method, ...(input.details ? { info: input.details } : {}) },
  });
}

/**
 * Pays (part of) a top-up back through its gateway (退回微信): the card's available balance goes to
 * the gateway's clearing account, refused when the balance does not cover it. Idempotent on
 * `reference`.
 */
export async function refundTopUp(
  db: Db,
  input: {
    cardAccountId: number;
    amount: number;
    method: string;
    reference: string;
    details?: unknown;
  },
): Promise<PaymentResult> {
  const amount = checkAmount(input.amount);
  const reference = checkReference(input.reference);
  const gateway = await gatewayAccount(db, input.method);
  return await debitCard(db, {
    cardAccountId: input.cardAccountId,
    amount,
    reference,
    kind: "topup_refund",
    channel: null,
    counterAccount: sql<number>`select ${gateway}::bigint`,
    merchantId: null,
    terminalId: null,
    details: input.details ?? null,
    limits: false,
    today: chinaDay(),
  }, () => Promise.resolve());
}

/** Puts a top-up refund the gateway closed unpaid back on the card (`refundTopUp` undone). */
export async function returnTopUpRefund(
  db: Db,
  input: {
    cardAccountId: number;
    amount: number;
    method: string;
    reference: string;
    refundTransferId: number;
    details?: unknown;
  },
): Promise<PaymentResult> {
  const amount = checkAmount(input.amount);
  const reference = checkReference(input.reference);
  const gateway = await gatewayAccount(db, input.method);
  return await creditCard(db, {
    cardAccountId: input.cardAccountId,
    amount,
    reference,
    kind: "topup_refund_return",
    channel: null,
    counterAccountId: gateway,
    merchantId: null,
    terminalId: null,
    relatedTransferId: input.refundTransferId,
    details: input.details ?? null,
  });
}

/**
 * Records a payment an offline reader accepted without the server: the only path that may take a
 * balance below zero. Takes what is free of holds first and books the rest as overdraft.
 */
export async function applyOfflinePayment(
  db: Db,
  input: {
    cardAccountId: number;
    merchantId: number;
    terminalId: number;
    amount: number;
    reference: string;
    occurredAt: Date;
  },
): Promise<PaymentResult> {
  const amount = checkAmount(input.amount);
  const reference = checkReference(input.reference);
  const terminalId = optionalId(input.terminalId, "terminalId");
  const occurredAt = input.occurredAt instanceof Date && !isNaN(input.occurredAt.getTime())
    ? input.occurredAt.toISOString()
    : null;
  const expect = {
    cardAccountId: input.cardAccountId,
    amount,
    kinds: ["purchase" as TransferKind],
  };
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const result = await sql<{ id: number; balance_after: number }>`
        with w as (
          update ledger_accounts set
            balance = balance - least(${amount}, balance - held),
            overdraft = overdraft + (${amount} - least(${amount}, balance - held))
          where card_account_id = ${input.cardAccountId}
            and not exists (select 1 from ledger_transfers where reference = ${reference})
          returning id, balance - overdraft as after
        )
        insert into ledger_transfers (reference, kind, channel, debit_account_id, credit_account_id, amount,
          card_account_id, card_delta, balance_after, merchant_id, terminal_id, details)
        select ${reference}, 'purchase', 'offline', w.id, (${
        merchantAccountSql(input.merchantId, false)
      }), ${amount},
          ${input.cardAccountId}, ${-amount}, w.after, ${input.merchantId}, ${terminalId},
          ${JSON.stringify({ occurredAt })}::jsonb
        from w
        returning id, balance_after`.execute(db);
      const row = result.rows[0];
      if (row) return { transferId: row.id, balanceAfter: row.balance_after, duplicate: false };
      const first = await transferByReference(db, reference);
      if (first) return sameRequest(first, expect);
      await ensureCardWallet(db, input.cardAccountId);
    } catch (err) {
      if (isUniqueViolation(err) && !db.isTransaction) {
        const first = await transferByReference(db, reference);
        if (first) return sameRequest(first, expect);
        continue;
      }
      if (isNotNullViolation(err) && !db.isTransaction) {
        // An offline record is a fact: the merchant must exist, but may have been deactivated since.
        await ensureMerchantAccount(db, input.merchantId, { allowInactive: true });
        continue;
      }
      throw err;
    }
  }
  throw new Error(`Cannot apply offline payment ${reference}: gave up after repeated conflicts`);
}

/** Card accounts whose balance went below zero through offline uploads, most negative first. */
export async function listNegativeBalances(
  db: Db,
): Promise<Array<{ cardAccountId: number; balance: number; overdraft: number }>> {
  const rows = await db.selectFrom("ledger_accounts").select([
    "card_account_id",
    "balance",
    "overdraft",
  ])
    .where("kind", "=", "card").where("overdraft", ">", 0).orderBy("overdraft", "desc").execute();
  return rows.map((r) => ({
    cardAccountId: r.card_account_id!,
    balance: r.balance - r.overdraft,
    overdraft: r.overdraft,
  }));
}

/** Sum already given back (refunds and reversals) of a transfer. */
async function returnedOf(db: Db, transferId: number): Promise<number> {
  const row = await db.selectFrom("ledger_transfers")
    .select((eb) => eb.fn.coalesce(eb.fn.sum<number>("amount"), sql<number>`0`).as("total"))
    .where("related_transfer_id", "=", transferId).where("kind", "in", ["refund", "reversal"])
    .executeTakeFirstOrThrow();
  return Number(row.total);
}

/**
 * Refunds a card payment (purchase or shower), in part or in full: the refunds and reversals of
 * one transfer never add up to more than it. Money goes from the merchant back to the card.
 */
export async function refundTransfer(
  db: Db,
  input: {
    transferId: number;
    amount: number;
    reference: string;
    reason: string;
    staffId: number | null;
  },
): Promise<PaymentResult> {
  const amount = checkAmount(input.amount);
  const reference = checkReference(input.reference);
  try {
    return await inTransaction(db, async (trx) => {
      const first = await transferByReference(trx, reference);
      const original = await trx.selectFrom("ledger_transfers")
        .select([
          "id",
          "kind",
          "amount",
          "card_account_id",
          "credit_account_id",
          "merchant_id",
          "terminal_id",
        ])
        .where("id", "=", input.transferId).forUpdate().executeTakeFirst();
      if (!original) throw new TransferNotFoundError(String(input.transferId));
      if (first) {
        if (first.related_transfer_id !== original.id) throw new ReferenceConflictError(reference);
        return sameRequest(first, {
          cardAccountId: original.card_account_id!,
          amount,
          kinds: ["refund"],
        });
      }
      if (!["purchase", "shower"].includes(original.kind) || original.card_account_id === null) {
        throw new NotRefundableError(original.id, original.kind);
      }
      const left = original.amount - await returnedOf(trx, original.id);
      if (amount > left) throw new RefundExceedsOriginalError(original.id, left, amount);
      return await creditCard(trx, {
        cardAccountId: original.card_account_id,
        amount,
        reference,
        kind: "refund",
        channel: null,
        counterAccountId: original.credit_account_id,
        merchantId: original.merchant_id,
        terminalId: original.terminal_id,
        relatedTransferId: original.id,
        details: { reason: String(input.reason ?? "").slice(0, 200), staffId: input.staffId },
      });
    });
  } catch (err) {
    if (!isUniqueViolation(err) || db.isTransaction) throw err;
    const first = await transferByReference(db, reference);
    if (!first || first.related_transfer_id !== input.transferId) throw err;
    return { transferId: first.id, balanceAfter: first.balance_after ?? 0, duplicate: true };
  }
}

/**
 * Gives a utility payment back to the card, exactly once per original whatever the reference:
 * a second call (any reference) returns the first refund.
 */
export async function refundUtility(
  db: Db,
  input: { originalReference: string; reference: string },
): Promise<PaymentResult> {
  const reference = checkReference(input.reference);
  const originalReference = checkReference(input.originalReference);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await inTransaction(db, async (trx) => {
        const original = await trx.selectFrom("ledger_transfers")
          .select(["id", "kind", "amount", "card_account_id", "credit_account_id", "details"])
          .where("reference", "=", originalReference).forUpdate().executeTakeFirst();
        if (!original) throw new TransferNotFoundError(originalReference);
        if (!["electricity", "water"].includes(original.kind)) {
          throw new NotRefundableError(original.id, original.kind);
        }
        const done = await trx.selectFrom("ledger_transfers").select(["id", "balance_after"])
          .where("related_transfer_id", "=", original.id).where("kind", "=", "utility_refund")
          .executeTakeFirst();
        if (done) {
          return { transferId: done.id, balanceAfter: done.balance_after ?? 0, duplicate: true };
        }
        return await creditCard(trx, {
          cardAccountId: original.card_account_id!,
          amount: original.amount,
          reference,
          kind: "utility_refund",
          channel: null,
          counterAccountId: original.credit_account_id,
          merchantId: null,
          terminalId: null,
          relatedTransferId: original.id,
          details: { utility: original.kind, originalDetails: original.details ?? null },
        });
      });
    } catch (err) {
      if (!isUniqueViolation(err) || db.isTransaction) throw err;
    }
  }
  throw new Error(
    `Cannot refund utility payment ${originalReference}: gave up after repeated conflicts`,
  );
}

/** What a reversal did: reversed an applied payment, or left a tombstone for one not yet arrived. */
export interface ReversalResult {
  status: "reversed" | "tombstoned";
  /** The reversal transfer (when money moved back). */
  transferId: number | null;
  amount: number;
  balanceAfter: number | null;
  duplicate: boolean;
}

/**
 * Cancels an earlier card or code payment whose reply a reader lost. Idempotent. When the
 * original has not arrived, a zero-amount void transfer takes its reference, so the original is
 * refused when it comes (the unique reference index decides any race between the two).
 */
export async function reverseByReference(
  db: Db,
  input: { originalReference: string; reference: string },
): Promise<ReversalResult> {
  const reference = checkReference(input.reference);
  const originalReference = checkReference(input.originalReference);
  if (reference === originalReference) {
    throw new ReferenceConflictError(reference, "same as the original");
  }
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      const out = await inTransaction(db, async (trx): Promise<ReversalResult | null> => {
        const mine = await transferByReference(trx, reference);
        if (mine) {
          if (mine.kind !== "reversal") throw new ReferenceConflictError(reference);
          return {
            status: "reversed",
            transferId: mine.id,
            amount: mine.amount,
            balanceAfter: mine.balance_after,
            duplicate: true,
          };
        }
        const original = await trx.selectFrom("ledger_transfers")
          .select([
            "id",
            "kind",
            "channel",
            "amount",
            "card_account_id",
            "credit_account_id",
            "merchant_id",
            "terminal_id",
            "created_at",
            "details",
          ])
          .where("reference", "=", originalReference).forUpdate().executeTakeFirst();
        if (!original) {
          const voidAccount = await ensureSystemAccount(trx, "void", "void", "撤销占位");
          const inserted = await trx.insertInto("ledger_transfers").values({
            reference: originalReference,
            kind: "void",
            debit_account_id: voidAccount,
            credit_account_id: voidAccount,
            amount: 0,
            details: JSON.stringify({ reversalReference: reference }),
          }).onConflict((oc) => oc.column("reference").doNothing()).returning("id")
            .executeTakeFirst();
          if (!inserted) return null; // the original arrived meanwhile: go again and reverse it
          return {
            status: "tombstoned",
            transferId: null,
            amount: 0,
            balanceAfter: null,
            duplicate: false,
          };
        }
        if (original.kind === "void") {
          return {
            status: "tombstoned",
            transferId: null,
            amount: 0,
            balanceAfter: null,
            duplicate: true,
          };
        }
        if (
          original.kind !== "purchase" || original.channel === "offline" ||
          original.card_account_id === null
        ) {
          throw new NotRefundableError(original.id, original.kind);
        }
        const done = await trx.selectFrom("ledger_transfers").select([
          "id",
          "amount",
          "balance_after",
        ])
          .where("related_transfer_id", "=", original.id).where("kind", "=", "reversal")
          .executeTakeFirst();
        if (done) {
          return {
            status: "reversed",
            transferId: done.id,
            amount: done.amount,
            balanceAfter: done.balance_after,
            duplicate: true,
          };
        }
        const amount = original.amount - await returnedOf(trx, original.id);
        if (amount <= 0) {
          const b = await getBalance(trx, original.card_account_id);
          return {
            status: "reversed",
            transferId: null,
            amount: 0,
            balanceAfter: b.balance,
            duplicate: false,
          };
        }
        const r = await creditCard(trx, {
          cardAccountId: original.card_account_id,
          amount,
          reference,
          kind: "reversal",
          channel: original.channel as Channel,
          counterAccountId: original.credit_account_id,
          merchantId: original.merchant_id,
          terminalId: original.terminal_id,
          relatedTransferId: original.id,
          details: { originalReference },
          undoSpendOn: chinaDay(original.created_at.getTime()),
        });
        return {
          status: "reversed",
          transferId: r.transferId,
          amount,
          balanceAfter: r.balanceAfter,
          duplicate: false,
        };
      });
      if (out) return out;
    } catch (err) {
      if (!isUniqueViolation(err) || db.isTransaction) throw err;
    }
  }
  throw new Error(`Cannot reverse ${originalReference}: gave up after repeated conflicts`);
}

/**
 * A manual correction (财务处, after maker-checker approval): positive credits the card, negative
 * debits it (never below zero). `staffId` is the approver.
 */
export async function adjustBalance(
  db: Db,
  input: {
    cardAccountId: number;
    amount: number;
    reference: string;
    reason: string;
    staffId: number | null;
  },
): Promise<PaymentResult> {
  const sign = input.amount < 0 ? -1 : 1;
  const amount = checkAmount(
    typeof input.amount === "number" ? Math.abs(input.amount) : input.amount,
  );
  const reference = checkReference(input.reference);
  const adjustment = await ensureSystemAccount(db, "adjustment", "adjustment", "调账");
  const details = { reason: String(input.reason ?? "").slice(0, 200), staffId: input.staffId };
  if (sign > 0) {
    return await creditCard(db, {
      cardAccountId: input.cardAccountId,
      amount,
      reference,
      kind: "adjustment",
      channel: null,
      counterAccountId: adjustment,
      merchantId: null,
      terminalId: null,
      relatedTransferId: null,
      details,
    });
  }
  return await debitCard(db, {
    cardAccountId: input.cardAccountId,
    amount,
    reference,
    kind: "adjustment",
    channel: null,
    counterAccount: sql<number>`select ${adjustment}::bigint`,
    merchantId: null,
    terminalId: null,
    details,
    limits: false,
    today: chinaDay(),
  }, () => Promise.resolve());
}
