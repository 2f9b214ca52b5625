/**
 * 离线付款码 at a reader (PROTOCOL.md §4.4, docs/OFFLINE_PAYMENT_CODES.md): a QrPayment whose code
 * has the offline form (87…) is verified by the wallet from the code itself. A code that is no
 * device's (an unknown handle, a wrong TOTP, a clock minutes off) takes one from the terminal's
 * allowance of guesses; once it is used up, the terminal's offline codes are RateLimited before
 * anything is looked up, and the server raises the alarm (a warning in the log and the metrics).
 */
import { logger } from "../modules/platform/log.ts";
import { Counter, register } from "../modules/platform/metrics.ts";
import type { Terminal } from "../modules/merchant/mod.ts";
import { isOfflineCodeShape, redeemOfflineCode } from "../modules/wallet/mod.ts";
import { type Message, MessageCode, type MessageOf, Status, statusName } from "./messages.ts";
import { requestReference, type ServiceContext } from "./context.ts";
import type { MoneyRequest } from "./once.ts";
import { validAmount, walletRefusal } from "./refusals.ts";

const log = logger("terminal.offline_codes");

const refusedAsGuess = register(
  new Counter(
    "yxt_offline_code_guesses_total",
    "Offline payment codes refused as no device's (unknown, wrong, clock off), by terminal",
  ),
);
const throttled = register(
  new Counter(
    "yxt_offline_code_throttled_total",
    "Offline payment codes refused RateLimited: the terminal's guesses were used up",
  ),
);

type QrPayment = MessageOf<0x11>;

/** Whether a scanned code is an offline payment code (the wallet's shape rule). */
export function isOfflineCode(paymentCode: string): boolean {
  return isOfflineCodeShape(paymentCode);
}

/** A QrPaymentReply (§4.4): `amount` as requested; `balance` the payer's after, else 0. */
function reply(request: QrPayment, status: number, balance = 0): Message {
  return { code: MessageCode.QrPaymentReply, status, amount: request.amount, balance };
}

/** A refusal that says the code is no device's: one guess of the terminal's allowance. */
function guessed(ctx: ServiceContext, terminal: Terminal, status: number): void {
  refusedAsGuess.inc({ terminal: String(terminal.id), status: statusName(status) });
  const allowance = ctx.offlineCodeGuesses;
  if (!allowance) return;
  allowance.take(terminal.id);
  if (!allowance.has(terminal.id)) {
    // The alarm: someone may be trying codes at this reader (or its key). Never the code itself.
    log.warn("offline payment code guesses used up: possible brute force at this reader", {
      terminal: terminal.id,
      merchant: terminal.merchantId,
      perMinute: allowance.perMinute,
    });
  }
}

/** QrPayment `0x11` with an offline code, in §4.4's order of checks. */
export const offlineCodePayment: MoneyRequest<QrPayment> = {
  refuseEarly(ctx, terminal, request) {
    if (!validAmount(request.amount)) return reply(request, Status.InvalidAmount);
    if (ctx.offlineCodeGuesses && !ctx.offlineCodeGuesses.has(terminal.id)) {
      throttled.inc({ terminal: String(terminal.id) });
      return reply(request, Status.RateLimited);
    }
    return null;
  },

  async handle(ctx, terminal, frame, request) {
    try {
      const paid = await redeemOfflineCode(ctx.db, {
        code: request.paymentCode,
        amount: request.amount,
        merchantId: terminal.merchantId,
        terminalId: terminal.id,
        reference: requestReference(terminal.id, frame.sequence),
        appSecret: ctx.config.appSecret,
      });
      return {
        message: reply(request, Status.Ok, paid.balanceHere),
        amount: request.amount,
        cardAccountId: paid.cardAccountId,
      };
    } catch (err) {
      const r = walletRefusal(err);
      if (!r) throw err;
      if (r.status === Status.CodeInvalid || r.status === Status.CodeClockSkew) {
        guessed(ctx, terminal, r.status);
      }
      return { message: reply(request, r.status, r.balance), amount: 0, cardAccountId: null };
    }
  },
};
