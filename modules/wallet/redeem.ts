/**
 * A reader redeems a 付款码: exactly once per code, under the debit rule with the holder's limits,
 * refused while the code is frozen (by the student, or with a loss report).
 */
import { type RawBuilder, sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { findCardAccount, paymentCodeFrozenSql } from "../card/mod.ts";
import { getMerchant, merchantRowSql } from "../merchant/mod.ts";
import {
  checkReference,
  ensureMerchantAccount,
  isNotNullViolation,
  isUniqueViolation,
  joinedOrOwn,
  transferByReference,
} from "./_common.ts";
import { checkAmount } from "./_amounts.ts";
import { whyPricedRefused } from "./_refusals.ts";
import { debitSql, merchantAccountSql, merchantPlaceSql, pricedAskSql } from "./_rules.ts";
import { debitLegsSql } from "./_purses.ts";
import { type CodeRedeemed, emit, isPaymentCodeShape } from "./codes.ts";
import {
  InvalidAmountError,
  LimitExceededError,
  PaymentCodeExpiredError,
  PaymentCodeFrozenError,
  PaymentCodeOverLimitError,
  PaymentCodeUnknownError,
  PaymentCodeUsedError,
  ReferenceConflictError,
} from "./errors.ts";
import { oneAskSql, unusedReferenceSql, withCardLocked } from "./ledger.ts";
import { redeemCodesInOneStatement, type Unrecorded } from "./batch.ts";

/** The result of redeeming a code at a reader. */
export interface RedeemResult {
  cardAccountId: number;
  transferId: number;
  /** The card's signed balance after, all purses. */
  balanceAfter: number;
  /** The balance the merchant sees after (see `PaymentResult`): what the reader shows. */
  balanceHere: number;
  merchantName: string;
  duplicate: boolean;
  /**
   * What it took: for a 付款码, the price in force of the amount asked (卡类别, 餐次), at most
   * that; a 离线付款码 is charged as asked.
   */
  charged?: number;
}

type RedeemRow = {
  id: number;
  amount: number;
  balance_after: number;
  here: number;
  card_account_id: number;
  merchant_name: string;
};

/**
 * The redemption as the CTEs of one statement: `paid` is the new transfer (`id`,
 * `card_account_id`, `balance_after`: the balance the merchant sees after), present only when the
 * code was live and not frozen, the debit rule (with the holder's limits) allowed it and the
 * reference was new. The caller appends its own `select … from paid`.
 */
function redeemStatement(p: {
  code: string;
  amount: number;
  merchantId: number;
  terminalId: number | null;
  reference: string;
  pricedAt: Date;
}): RawBuilder<unknown> {
  const { code, amount, merchantId, terminalId, reference } = p;
  const priced = pricedAskSql(p.pricedAt);
  return sql`
    with pc as (
      select card_account_id from payment_codes
      where code = ${code} and used_at is null and superseded_at is null and expires_at > now()
    ), ${
    oneAskSql({
      cardAccountId: sql`(select card_account_id from pc)`,
      amount,
      at: merchantPlaceSql(sql`${merchantId}`),
      reference,
      merchantId,
    }, "listed")
  }, ask as materialized (
      select ${priced.columns}, i.ord, i.card_account_id, i.merchant_id, i.at, i.reference
      from listed i ${priced.join}
    ), ${
    debitSql({
      rule: priced.rule,
      returning: sql`, a.price`,
      also: [
        sql`not la.code_frozen`,
        sql`not ${paymentCodeFrozenSql(sql`la.card_account_id`)}`,
        unusedReferenceSql(reference),
      ],
    })
  }, t as (
      insert into ledger_transfers (reference, kind, channel, debit_account_id, credit_account_id, amount,
        card_account_id, card_delta, balance_after, merchant_id, terminal_id, payment_code, details)
      select w.reference, 'purchase', 'qr', w.account_id, ${merchantAccountSql(sql`${merchantId}`)},
        w.amount, w.card_account_id, -w.amount, w.after, ${merchantId}, ${terminalId}, ${code},
        ${priced.details(sql`'null'::jsonb`)}
      from w
      returning id, reference, balance_after, card_account_id
    ), ${debitLegsSql()}, used as (
      update payment_codes set used_at = now(), transfer_id = t.id from t where payment_codes.code = ${code}
      returning 1
    ), paid as (
      select t.id, t.card_account_id, w.here as balance_after, t.balance_after as after, w.amount
      from t, w
    )`;
}

/** The columns the redemption's caller reads from `paid`, with the merchant's name. */
function resultOf(merchantId: number): RawBuilder<RedeemRow> {
  return sql<RedeemRow>`select paid.id, paid.after as balance_after, paid.balance_after as here,
      paid.amount,
      paid.card_account_id, (select m.name from ${
    merchantRowSql(sql`${merchantId}`)
  } m) as merchant_name
    from paid`;
}

/** The redemption as the reader is told; the 付款码 page hears of it once it is committed. */
async function redeemed(
  db: Db,
  row: RedeemRow,
  code: string,
): Promise<RedeemResult> {
  const result: RedeemResult = {
    cardAccountId: row.card_account_id,
    transferId: row.id,
    balanceAfter: row.balance_after,
    balanceHere: row.here,
    merchantName: row.merchant_name,
    duplicate: false,
    charged: Number(row.amount),
  };
  const event: CodeRedeemed = {
    cardAccountId: row.card_account_id,
    code,
    amount: Number(row.amount),
    merchantName: row.merchant_name,
    transferId: row.id,
    balanceAfter: row.balance_after,
    at: new Date(),
  };
  return await joinedOrOwn(db, {
    // In the caller's transaction nobody knows yet whether it commits: the page polls instead.
    joined: () => Promise.resolve(result),
    own: () => {
      emit(event);
      return Promise.resolve(result);
    },
  });
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
  // After an unexplained miss (the card's row changed meanwhile, see _purses.ts), the code's
  // card row is locked by a statement of its own first.
  let locked = false;
  for (let attempt = 0; attempt < 5; attempt++) {
    const pricedAt = new Date();
    let row: RedeemRow | undefined;
    const run = async (db: Db) =>
      (await sql<RedeemRow>`${
        redeemStatement({ code, amount, merchantId, terminalId, reference, pricedAt })
      } ${resultOf(merchantId)}`.execute(db)).rows[0];
    try {
      row = locked
        ? await withCardLocked(
          db,
          sql<number | null>`(select card_account_id from payment_codes where code = ${code})`,
          run,
        )
        : await run(db);
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
    if (row) return await redeemed(db, row, code);
    const first = await duplicateRedeem(db, reference, code, amount);
    if (first) return first;
    await explainRefusal(db, code, amount, merchantId, pricedAt);
    locked = true;
  }
  throw new Error("Cannot redeem payment code: gave up after repeated conflicts");
}

/** One 付款码 redemption of a batch (`redeemPaymentCodesRecorded`). */
export interface CodeRedemption {
  code: string;
  /** The reader's list price. */
  amount: number;
  merchantId: number;
  terminalId: number;
  reference: string;
}

/**
 * `redeemPaymentCode` for many readers at once, each with the caller's own record of it, in one
 * statement: one round trip and one commit for the batch (group commit, as card payments have).
 * `record(paid)` returns an `insert … select … from ${paid}`; `paid` has one row per redemption
 * that moved money: `ord` (its 1-based position in `redemptions`), the new transfer's `id`,
 * `card_account_id` and `balance_after` (the balance the merchant sees after), so each record
 * commits with its money or not at all; `unrecorded(ord)`, when given, leaves out one already
 * answered (as `payFromCardsRecorded`'s). Returns, per redemption, its result or null, nothing
 * written for it, for anything else (a refusal, a retry, a used or unknown code, a missing
 * merchant account): the caller then runs `redeemPaymentCode`, which says why. A code must not
 * appear twice in one batch. The 付款码 page hears of each redemption as it does from
 * `redeemPaymentCode`. Database errors (a code redeemed at the same moment elsewhere, a duplicate
 * record) are thrown with nothing written.
 */
export async function redeemPaymentCodesRecorded(
  db: Db,
  input: {
    redemptions: CodeRedemption[];
    record: (paid: RawBuilder<unknown>) => RawBuilder<unknown>;
    unrecorded?: Unrecorded;
  },
): Promise<Array<RedeemResult | null>> {
  const payments = input.redemptions.map((r) => ({
    payer: String(r.code ?? "").trim(),
    merchantId: r.merchantId,
    amount: r.amount,
    reference: r.reference,
    terminalId: r.terminalId,
  }));
  const paid = await redeemCodesInOneStatement(db, payments, input);
  return await Promise.all(paid.map((p, i) =>
    p
      ? redeemed(db, {
        id: p.transferId,
        amount: p.charged,
        balance_after: p.balanceAfter,
        here: p.balanceHere,
        card_account_id: p.cardAccountId,
        merchant_name: p.merchantName,
      }, payments[i].payer)
      : null
  ));
}

async function duplicateRedeem(
  db: Db,
  reference: string,
  code: string,
  amount: number,
): Promise<RedeemResult | null> {
  const t = await transferByReference(db, reference);
  if (!t) return null;
  // A priced redemption was asked its list price (`details.price.list`).
  const asked = (t.details as { price?: { list?: number } } | null)?.price?.list ?? t.amount;
  if (t.payment_code !== code || Number(asked) !== amount) {
    throw new ReferenceConflictError(reference);
  }
  const merchant = t.merchant_id === null ? null : await getMerchant(db, t.merchant_id);
  return {
    cardAccountId: t.card_account_id!,
    transferId: t.id,
    balanceAfter: t.balance_after ?? 0,
    balanceHere: t.balance_after ?? 0,
    merchantName: merchant?.name ?? "",
    duplicate: true,
    charged: Number(t.amount),
  };
}

/**
 * Throws the reason a redemption was refused: the code's own state first, then the debit rule's
 * (`whyRefused`, its limits told as the code's); returns when nothing is wrong (a race: go again).
 */
async function explainRefusal(
  db: Db,
  code: string,
  amount: number,
  merchantId: number,
  pricedAt: Date,
): Promise<void> {
  const c = await db.selectFrom("payment_codes")
    .select(["card_account_id", "used_at", "superseded_at", "expires_at"])
    .where("code", "=", code).executeTakeFirst();
  if (!c) throw new PaymentCodeUnknownError();
  if (c.used_at) throw new PaymentCodeUsedError();
  if (c.superseded_at || c.expires_at.getTime() <= Date.now()) throw new PaymentCodeExpiredError();
  // Frozen by the student (付款码设置), or together with a loss report (the card module's flag).
  const w = await db.selectFrom("ledger_accounts").select("code_frozen")
    .where("card_account_id", "=", c.card_account_id).executeTakeFirst();
  if (w?.code_frozen || (await findCardAccount(db, c.card_account_id))?.paymentCodeFrozen) {
    throw new PaymentCodeFrozenError();
  }
  const merchant = await getMerchant(db, merchantId);
  const refusal = await whyPricedRefused(db, {
    cardAccountId: c.card_account_id,
    merchantId,
    amount,
    at: merchant?.category ?? null,
    pricedAt,
  });
  if (refusal instanceof LimitExceededError) {
    throw new PaymentCodeOverLimitError(refusal.limit, refusal.limitFen, refusal.amount);
  }
  if (refusal) throw refusal;
}
