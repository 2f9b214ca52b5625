/**
 * The card's movements with a merchant, a dorm utility, a gateway or the adjustment account, one
 * transfer each through ledger.ts's debit and credit.
 */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { checkReference, chinaDay, ensureMerchantAccount, ensureSystemAccount } from "./_common.ts";
import { checkAmount } from "./_amounts.ts";
import { merchantAccountSql, merchantPlaceSql, UTILITIES } from "./_rules.ts";
import { InvalidAmountError } from "./errors.ts";
import { creditCard, debitCard, optionalId, type PaymentResult } from "./ledger.ts";

/**
 * Pays a merchant from a card (a canteen or supermarket swipe, or a scanned code) the price in
 * force of `amount` (卡类别, 餐次: never above it; `charged`): refused for insufficient funds, the
 * holder's per-payment or daily limit, a meal period's cap, or a negative balance.
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
    at: merchantPlaceSql(sql`${merchantId}`),
    counterAccount: merchantAccountSql(sql`${merchantId}`),
    merchantId,
    terminalId: optionalId(input.terminalId, "terminalId"),
    details: input.details ?? null,
    rule: { limits: true, today: chinaDay() },
    pricedAt: new Date(),
  }, (own) => ensureMerchantAccount(own, merchantId));
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
): Promise<PaymentResult> {
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
    at: sql`${UTILITIES}`,
    counterAccount: sql<number>`select id from ledger_accounts where code = ${code}`,
    merchantId: null,
    terminalId: null,
    details: input.details ?? null,
    rule: { limits: false, today: chinaDay() },
  }, (own) => ensureSystemAccount(own, code, "utility", UTILITY_NAMES[input.utility]));
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
    // Money back to a gateway is cash: lots are never paid out.
    at: sql`null`,
    counterAccount: sql<number>`select ${gateway}::bigint`,
    merchantId: null,
    terminalId: null,
    details: input.details ?? null,
    rule: { limits: false, today: chinaDay() },
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
    // An adjustment corrects cash; a grant is undone by its own reversal (lots.ts).
    at: sql`null`,
    counterAccount: sql<number>`select ${adjustment}::bigint`,
    merchantId: null,
    terminalId: null,
    details,
    rule: { limits: false, today: chinaDay() },
  }, () => Promise.resolve());
}
