/**
 * Why a reader's request is refused, as a status (PROTOCOL.md §5): the amount, the card by its
 * chip, the terminal's chip lookup allowance, and the wallet's refusals.
 */
import type { Terminal } from "../modules/merchant/mod.ts";
import type { ChipCard } from "../modules/card/mod.ts";
import { MAX_AMOUNT, WalletError } from "../modules/wallet/mod.ts";
import { Status } from "./messages.ts";
import type { ServiceContext } from "./context.ts";

/** Whether a payment's amount may be paid: 1 to 100 000 000 fen (§4.3 step 1). */
export function validAmount(amount: number): boolean {
  return amount > 0 && amount <= MAX_AMOUNT;
}

/** The refusal status of a card by its chip, or null when the card may pay. */
export function cardRefusal(card: ChipCard | null): number | null {
  if (!card) return Status.UnknownChip;
  // The account's state first: a loss report marks its chips lost too, and says more.
  if (card.cardStatus === "loss_reported") return Status.CardLossReported;
  if (card.cardStatus === "cancelled") return Status.CardCancelled;
  if (card.chipStatus === "lost") return Status.ChipLost;
  if (card.chipStatus === "cancelled") return Status.ChipCancelled;
  return null;
}

/**
 * Whether `terminal` may have a chip looked up now (§4.5): when its allowance is used up, a card
 * payment or shower start is answered RateLimited before any lookup, paying or not, so its answer
 * says nothing about the chip.
 */
export function lookupAllowed(ctx: ServiceContext, terminal: Terminal): boolean {
  return ctx.lookups?.has(terminal.id) ?? true;
}

/** A refusal after a chip lookup said whether the chip exists: it takes one from the allowance. */
export function lookupSpent(ctx: ServiceContext, terminal: Terminal): void {
  ctx.lookups?.take(terminal.id);
}

/** A wallet refusal of a payment as a status and the balance to show; null for other errors. */
export function walletRefusal(err: unknown): { status: number; balance: number } | null {
  if (!(err instanceof WalletError)) return null;
  const e = err as WalletError & { balance?: number; available?: number; limit?: string };
  switch (e.code) {
    case "insufficient_funds":
    case "hold_below_minimum":
      return { status: Status.InsufficientBalance, balance: e.available ?? e.balance ?? 0 };
    case "negative_balance":
      return { status: Status.InsufficientBalance, balance: e.balance ?? 0 };
    case "limit_exceeded":
    case "code_over_limit":
    case "offline_code_over_limit":
      return {
        status: e.limit === "daily" ? Status.OverDailyLimit : Status.OverPaymentLimit,
        balance: 0,
      };
    case "meal_period_cap":
      return { status: Status.OverMealPeriodLimit, balance: 0 };
    case "invalid_amount":
      return { status: Status.InvalidAmount, balance: 0 };
    case "reversed":
      return { status: Status.Reversed, balance: 0 };
    case "code_unknown":
    case "no_bound_card":
      return { status: Status.CodeInvalid, balance: 0 };
    case "code_expired":
    case "code_frozen":
    case "code_revoked":
    case "code_revoked_later":
      return { status: Status.CodeExpired, balance: 0 };
    case "code_clock_skew":
      return { status: Status.CodeClockSkew, balance: 0 };
    case "code_used":
      return { status: Status.CodeUsed, balance: 0 };
    case "hold_not_found":
    case "hold_settled":
      return { status: Status.HoldNotFound, balance: 0 };
    case "reference_conflict":
      return { status: Status.SequenceReused, balance: 0 };
    default:
      return null;
  }
}

/** An error raised by PostgreSQL itself (it carries a SQLSTATE code). */
export function isDatabaseError(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code);
}
