import { type RawBuilder, sql } from "kysely";
import { type Db, PREPARED } from "../platform/database.ts";
import { logger } from "../platform/log.ts";
import { randomDigits } from "../platform/crypto.ts";
import {
  checkAmount,
  checkReference,
  chinaDay,
  DEFAULT_DAILY_LIMIT,
  DEFAULT_PAY_LIMIT,
  ensureCardWallet,
  ensureMerchantAccount,
  isNotNullViolation,
  isUniqueViolation,
  spentTodaySql,
  transferByReference,
} from "./_common.ts";
import {
  InsufficientFundsError,
  InvalidAmountError,
  NegativeBalanceError,
  PaymentCodeExpiredError,
  PaymentCodeFrozenError,
  PaymentCodeOverLimitError,
  PaymentCodeUnknownError,
  PaymentCodeUsedError,
  ReferenceConflictError,
} from "./errors.ts";

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

function luhnDigit(body: string): string {
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

function emit(event: CodeRedeemed): void {
  for (const l of listeners) {
    try {
      l(event);
    } catch (err) {
      log.error("payment code listener failed", { err: (err as Error).message });
    }
  }
}

/** The result of redeeming a code at a reader. */
export interface RedeemResult {
  cardAccountId: number;
  transferId: number;
  balanceAfter: number;
  merchantName: string;
  duplicate: boolean;
}

type RedeemRow = {
  id: number;
  balance_after: number;
  card_account_id: number;
  merchant_name: string;
};

/**
 * The redemption as the CTEs of one statement: `t` is the new transfer (`id`, `balance_after`,
 * `card_account_id`), present only when the code was live, not frozen, within the limits and the
 * funds, and the reference new. The caller appends its own `select … from t`.
 */
function redeemStatement(p: {
  code: string;
  amount: number;
  merchantId: number;
  terminalId: number | null;
  reference: string;
  today: string;
}): RawBuilder<unknown> {
  const { code, amount, merchantId, terminalId, reference, today } = p;
  const spent = spentTodaySql(today);
  return sql`
    with pc as (
      select card_account_id from payment_codes
      where code = ${code} and used_at is null and superseded_at is null and expires_at > now()
    ), w as (
      update ledger_accounts set balance = balance - ${amount},
        spent_day = ${today}::date, spent_today = ${spent} + ${amount}
      where card_account_id = (select card_account_id from pc) and not code_frozen and overdraft = 0
        and not exists (select 1 from card_accounts ca where ca.id = ledger_accounts.card_account_id
          and ca.payment_code_frozen)
        and balance - held >= ${amount} and ${amount} <= pay_limit and ${spent} + ${amount} <= daily_limit
        and not exists (select 1 from ledger_transfers where reference = ${reference})
      returning id, card_account_id, balance - overdraft as after
    ), t as (
      insert into ledger_transfers (reference, kind, channel, debit_account_id, credit_account_id, amount,
        card_account_id, card_delta, balance_after, merchant_id, terminal_id, payment_code)
      select ${reference}, 'purchase', 'qr', w.id,
        (select la.id from ledger_accounts la join merchants m on m.id = la.merchant_id
          where la.merchant_id = ${merchantId} and m.active),
        ${amount}, w.card_account_id, ${-amount}, w.after, ${merchantId}, ${terminalId}, ${code}
      from w
      returning id, balance_after, card_account_id
    ), used as (
      update payment_codes set used_at = now(), transfer_id = t.id from t where payment_codes.code = ${code}
      returning 1
    )`;
}

/**
 * Redeems a payment code for a reader: exactly once per code under any concurrency (the unique
 * index on the transfer's payment code decides, inside the same statement that moves the money).
 * A refused redemption leaves the code usable. Idempotent on `reference`.
 */
export async function redeemPaymentCode(
  db: Db,
  input: {
    code: string;
    amount: number;
    merchantId: number;
    terminalId?: number | null;
    reference: string;
  },
): Promise<RedeemResult> {
  const amount = checkAmount(input.amount);
  const reference = checkReference(input.reference);
  const code = String(input.code ?? "").trim();
  if (!isPaymentCodeShape(code)) throw new PaymentCodeUnknownError();
  const terminalId = input.terminalId ?? null;
  if (terminalId !== null && (!Number.isSafeInteger(terminalId) || terminalId <= 0)) {
    throw new InvalidAmountError(terminalId, "terminalId");
  }
  const merchantId = input.merchantId;
  for (let attempt = 0; attempt < 5; attempt++) {
    const today = chinaDay();
    let row: RedeemRow | undefined;
    try {
      const result = await sql<RedeemRow>`${
        redeemStatement({ code, amount, merchantId, terminalId, reference, today })
      }
        select t.id, t.balance_after, t.card_account_id,
          (select name from merchants where id = ${merchantId}) as merchant_name
        from t`.execute(db);
      row = result.rows[0];
    } catch (err) {
      if (isUniqueViolation(err)) {
        const first = await duplicateRedeem(db, reference, code, amount);
        if (first) return first;
        throw new PaymentCodeUsedError();
      }
      if (isNotNullViolation(err)) {
        await ensureMerchantAccount(db, merchantId);
        continue;
      }
      throw err;
    }
    if (row) {
      const event: CodeRedeemed = {
        cardAccountId: row.card_account_id,
        code,
        amount,
        merchantName: row.merchant_name,
        transferId: row.id,
        balanceAfter: row.balance_after,
        at: new Date(),
      };
      if (!db.isTransaction) emit(event);
      return {
        cardAccountId: row.card_account_id,
        transferId: row.id,
        balanceAfter: row.balance_after,
        merchantName: row.merchant_name,
        duplicate: false,
      };
    }
    const first = await duplicateRedeem(db, reference, code, amount);
    if (first) return first;
    await explainRefusal(db, code, amount, today);
  }
  throw new Error("Cannot redeem payment code: gave up after repeated conflicts");
}

/**
 * `redeemPaymentCode` and the caller's own record of it in one statement: one round trip and one
 * commit, for a reader's hot path. `record(paid)` returns an `insert … select … from ${paid}`;
 * `paid` has the new transfer's `id`, `card_account_id` and `balance_after`, and a row only when
 * the money moved, so the record commits with the money or not at all. Returns null, nothing
 * written, for anything else (a refusal, a retry, a conflict, a missing merchant account): the
 * caller then runs `redeemPaymentCode`, which says why. The 付款码 page hears of a redemption
 * here as it does there.
 */
export async function redeemPaymentCodeRecorded(
  db: Db,
  input: {
    code: string;
    amount: number;
    merchantId: number;
    terminalId: number;
    reference: string;
    record: (paid: RawBuilder<unknown>) => RawBuilder<unknown>;
  },
): Promise<RedeemResult | null> {
  const amount = checkAmount(input.amount);
  const reference = checkReference(input.reference);
  const code = String(input.code ?? "").trim();
  const terminalId = input.terminalId;
  if (!isPaymentCodeShape(code) || !Number.isSafeInteger(terminalId) || terminalId <= 0) {
    return null;
  }
  const merchantId = input.merchantId;
  const result = await sql<RedeemRow>`${sql.raw(PREPARED)}${
    redeemStatement({ code, amount, merchantId, terminalId, reference, today: chinaDay() })
  }, recorded as (${input.record(sql.raw("t"))})
    select t.id, t.balance_after, t.card_account_id,
      (select name from merchants where id = ${merchantId}) as merchant_name
    from t`.execute(db);
  const row = result.rows[0];
  if (!row) return null;
  if (!db.isTransaction) {
    emit({
      cardAccountId: row.card_account_id,
      code,
      amount,
      merchantName: row.merchant_name,
      transferId: row.id,
      balanceAfter: row.balance_after,
      at: new Date(),
    });
  }
  return {
    cardAccountId: row.card_account_id,
    transferId: row.id,
    balanceAfter: row.balance_after,
    merchantName: row.merchant_name,
    duplicate: false,
  };
}

async function duplicateRedeem(
  db: Db,
  reference: string,
  code: string,
  amount: number,
): Promise<RedeemResult | null> {
  const t = await transferByReference(db, reference);
  if (!t) return null;
  if (t.payment_code !== code || t.amount !== amount) throw new ReferenceConflictError(reference);
  const m = await db.selectFrom("merchants").select("name").where("id", "=", t.merchant_id ?? 0)
    .executeTakeFirst();
  return {
    cardAccountId: t.card_account_id!,
    transferId: t.id,
    balanceAfter: t.balance_after ?? 0,
    merchantName: m?.name ?? "",
    duplicate: true,
  };
}

/** Throws the reason a redemption was refused; returns when nothing is wrong (a race: go again). */
async function explainRefusal(db: Db, code: string, amount: number, today: string): Promise<void> {
  const c = await db.selectFrom("payment_codes").select([
    "card_account_id",
    "used_at",
    "superseded_at",
    "expires_at",
  ])
    .where("code", "=", code).executeTakeFirst();
  if (!c) throw new PaymentCodeUnknownError();
  if (c.used_at) throw new PaymentCodeUsedError();
  if (c.superseded_at || c.expires_at.getTime() <= Date.now()) throw new PaymentCodeExpiredError();
  const w = await db.selectFrom("ledger_accounts")
    .select([
      "balance",
      "held",
      "overdraft",
      "pay_limit",
      "daily_limit",
      "code_frozen",
      "spent_today",
    ])
    .select(sql<string | null>`spent_day::text`.as("day"))
    .where("card_account_id", "=", c.card_account_id).executeTakeFirst();
  if (!w) throw new InsufficientFundsError(0, 0, amount);
  // Frozen by the student (付款码设置), or together with a loss report (the card module's flag).
  const frozenByLoss = await sql<
    { frozen: boolean }
  >`select payment_code_frozen as frozen from card_accounts
    where id = ${c.card_account_id}`.execute(db);
  if (w.code_frozen || frozenByLoss.rows[0]?.frozen) throw new PaymentCodeFrozenError();
  if (amount > w.pay_limit) throw new PaymentCodeOverLimitError("per_payment", w.pay_limit, amount);
  const spent = w.day === today ? w.spent_today : 0;
  if (spent + amount > w.daily_limit) {
    throw new PaymentCodeOverLimitError("daily", w.daily_limit, amount);
  }
  if (w.overdraft > 0) throw new NegativeBalanceError(w.balance - w.overdraft);
  if (w.balance - w.held < amount) {
    throw new InsufficientFundsError(w.balance - w.overdraft, w.balance - w.held, amount);
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
    .leftJoin("merchants as m", "m.id", "t.merchant_id")
    .select([
      "pc.used_at",
      "pc.superseded_at",
      "pc.expires_at",
      "t.id as transfer_id",
      "t.amount",
      "t.balance_after",
      "m.name",
    ])
    .where("pc.code", "=", code).where("pc.card_account_id", "=", cardAccountId).executeTakeFirst();
  if (!row) return null;
  if (row.used_at && row.transfer_id !== null) {
    return {
      state: "used",
      amount: row.amount ?? 0,
      merchantName: row.name ?? "",
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

/** The student's 付款设置. */
export interface PaySettings {
  payLimit: number;
  dailyLimit: number;
  codeFrozen: boolean;
  maxPayLimit: number;
  maxDailyLimit: number;
}

/** The payment settings of a card account (defaults when it has no wallet yet). */
export async function getPaySettings(db: Db, cardAccountId: number): Promise<PaySettings> {
  const row = await db.selectFrom("ledger_accounts").select([
    "pay_limit",
    "daily_limit",
    "code_frozen",
  ])
    .where("card_account_id", "=", cardAccountId).executeTakeFirst();
  return {
    payLimit: row?.pay_limit ?? DEFAULT_PAY_LIMIT,
    dailyLimit: row?.daily_limit ?? DEFAULT_DAILY_LIMIT,
    codeFrozen: row?.code_frozen ?? false,
    maxPayLimit: DEFAULT_PAY_LIMIT,
    maxDailyLimit: DEFAULT_DAILY_LIMIT,
  };
}

/**
 * Changes the payment settings: limits between ¥0.01 and the system ceiling (a student may only
 * lower them); freezing the code also retires the live code at once.
 */
export async function updatePaySettings(
  db: Db,
  cardAccountId: number,
  input: { payLimit: number; dailyLimit: number; codeFrozen: boolean },
): Promise<PaySettings> {
  const payLimit = checkAmount(input.payLimit, "pay_limit");
  const dailyLimit = checkAmount(input.dailyLimit, "daily_limit");
  if (payLimit > DEFAULT_PAY_LIMIT) throw new InvalidAmountError(payLimit, "pay_limit");
  if (dailyLimit > DEFAULT_DAILY_LIMIT) throw new InvalidAmountError(dailyLimit, "daily_limit");
  await ensureCardWallet(db, cardAccountId);
  await db.transaction().execute(async (trx) => {
    await trx.updateTable("ledger_accounts")
      .set({ pay_limit: payLimit, daily_limit: dailyLimit, code_frozen: input.codeFrozen })
      .where("card_account_id", "=", cardAccountId).execute();
    if (input.codeFrozen) {
      await trx.updateTable("payment_codes").set({ superseded_at: new Date() })
        .where("card_account_id", "=", cardAccountId).where("superseded_at", "is", null)
        .where("used_at", "is", null).execute();
    }
  });
  return await getPaySettings(db, cardAccountId);
}

/** Deletes codes older than a day that were never used (used ones stay with their transfer). */
export async function purgeOldPaymentCodes(db: Db, now: Date = new Date()): Promise<number> {
  const r = await db.deleteFrom("payment_codes").where("used_at", "is", null)
    .where("expires_at", "<", new Date(now.getTime() - 86400_000)).executeTakeFirst();
  return Number(r.numDeletedRows);
}
