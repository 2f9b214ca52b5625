import { DomainError } from "../platform/errors.ts";
import { formatFen } from "../platform/money.ts";

/**
 * Every refusal of the wallet carries a stable `code` the terminal maps to a status byte and
 * pages map to a message; `userMessage` is the Chinese sentence for a person.
 */
export abstract class WalletError extends DomainError {
  abstract readonly code: string;
}

/** The amount is not a whole number of fen above zero (or is absurdly large). */
export class InvalidAmountError extends WalletError {
  readonly code = "invalid_amount";
  override status = 422 as const;
  constructor(readonly amount: unknown, field = "amount") {
    super(
      `Cannot move ${String(amount)} fen: not a positive whole number of fen`,
      "请输入正确的金额",
      field,
    );
  }
}

/** A reference is missing, too long, or was already used for a different request. */
export class ReferenceConflictError extends WalletError {
  readonly code = "reference_conflict";
  override status = 409 as const;
  constructor(readonly reference: string, why = "already used for a different request") {
    super(`Cannot use reference ${reference}: ${why}`, "请求编号重复，请重试");
  }
}

/** The card's available balance does not cover the amount. */
export class InsufficientFundsError extends WalletError {
  readonly code = "insufficient_funds";
  override status = 422 as const;
  constructor(readonly balance: number, readonly available: number, readonly amount: number) {
    super(
      `Cannot debit card account: available is ${available} fen, asked ${amount} fen`,
      `余额不足（可用余额 ${formatFen(available)}）`,
      "amount",
    );
  }
}

/** A per-payment or daily limit (付款设置) would be exceeded. */
export class LimitExceededError extends WalletError {
  readonly code = "limit_exceeded";
  override status = 422 as const;
  constructor(
    readonly limit: "per_payment" | "daily",
    readonly limitFen: number,
    readonly amount: number,
  ) {
    super(
      `Cannot debit card account: ${limit} limit is ${limitFen} fen, asked ${amount} fen`,
      limit === "per_payment"
        ? `超过单笔支付限额 ${formatFen(limitFen)}`
        : `超过每日支付限额 ${formatFen(limitFen)}`,
      "amount",
    );
  }
}

/** A meal period's cap per card (餐次限次 / 限额) would be passed by this payment. */
export class MealPeriodCapError extends WalletError {
  readonly code = "meal_period_cap";
  override status = 422 as const;
  constructor(
    readonly cap: "count" | "amount",
    readonly capValue: number | null,
    readonly amount: number,
  ) {
    super(
      `Cannot debit card account: meal period ${cap} cap is ${capValue}, asked ${amount} fen`,
      cap === "count"
        ? `本餐次消费次数已达上限${capValue === null ? "" : `（${capValue}次）`}`
        : `超过本餐次消费限额${capValue === null ? "" : ` ${formatFen(capValue)}`}`,
      "amount",
    );
  }
}

/** Offline uploads took the balance below zero: refused online until topped up. */
export class NegativeBalanceError extends WalletError {
  readonly code = "negative_balance";
  override status = 422 as const;
  constructor(readonly balance: number) {
    super(
      `Cannot debit card account: balance is ${balance} fen after offline payments`,
      "账户余额为负，请先充值",
    );
  }
}

/** No such merchant, or it is not active. */
export class UnknownMerchantError extends WalletError {
  readonly code = "unknown_merchant";
  override status = 422 as const;
  constructor(readonly merchantId: number) {
    super(`Cannot pay merchant ${merchantId}: unknown or inactive`, "商户不存在或已停用");
  }
}

/** The original payment was reversed before it arrived: its reference is spent. */
export class PaymentReversedError extends WalletError {
  readonly code = "reversed";
  override status = 409 as const;
  constructor(readonly reference: string) {
    super(`Cannot apply ${reference}: it was reversed before it arrived`, "该笔交易已撤销");
  }
}

/** No transfer has this id or reference (or the asker may not see it). */
export class TransferNotFoundError extends WalletError {
  readonly code = "transfer_not_found";
  override status = 404 as const;
  constructor(what: string) {
    super(`Cannot find transfer ${what}`, "交易不存在");
  }
}

/** The transfer is not of a kind this operation applies to. */
export class NotRefundableError extends WalletError {
  readonly code = "not_refundable";
  override status = 422 as const;
  constructor(readonly transferId: number, kind: string) {
    super(
      `Cannot refund transfer ${transferId}: kind ${kind} is not refundable here`,
      "该交易不能退款",
    );
  }
}

/** Refunds and reversals of a transfer would add up to more than the original. */
export class RefundExceedsOriginalError extends WalletError {
  readonly code = "refund_exceeds_original";
  override status = 422 as const;
  constructor(readonly transferId: number, readonly refundable: number, readonly amount: number) {
    super(
      `Cannot refund ${amount} fen of transfer ${transferId}: only ${refundable} fen left`,
      `退款金额超过可退金额 ${formatFen(refundable)}`,
      "amount",
    );
  }
}

/** No payment code like this was ever issued. */
export class PaymentCodeUnknownError extends WalletError {
  readonly code = "code_unknown";
  override status = 404 as const;
  constructor() {
    super("Cannot redeem payment code: unknown", "付款码无效");
  }
}

/** The payment code's minute is over, or a newer code replaced it. */
export class PaymentCodeExpiredError extends WalletError {
  readonly code = "code_expired";
  override status = 422 as const;
  constructor() {
    super("Cannot redeem payment code: expired or replaced", "付款码已过期，请刷新");
  }
}

/** The payment code was already used for a payment. */
export class PaymentCodeUsedError extends WalletError {
  readonly code = "code_used";
  override status = 409 as const;
  constructor() {
    super("Cannot redeem payment code: already used", "付款码已使用，请刷新");
  }
}

/** The student froze the payment code. */
export class PaymentCodeFrozenError extends WalletError {
  readonly code = "code_frozen";
  override status = 422 as const;
  constructor() {
    super("Cannot redeem payment code: frozen by its owner", "付款码已冻结");
  }
}

/** The amount is above the student's per-payment or daily limit for code payments. */
export class PaymentCodeOverLimitError extends WalletError {
  readonly code = "code_over_limit";
  override status = 422 as const;
  constructor(
    readonly limit: "per_payment" | "daily",
    readonly limitFen: number,
    readonly amount: number,
  ) {
    super(
      `Cannot redeem payment code: ${limit} limit is ${limitFen} fen, asked ${amount} fen`,
      limit === "per_payment"
        ? `超过单笔支付限额 ${formatFen(limitFen)}`
        : `超过每日支付限额 ${formatFen(limitFen)}`,
    );
  }
}

/** An offline payment code from a phone whose clock is minutes off (docs/OFFLINE_PAYMENT_CODES.md). */
export class PaymentCodeClockSkewError extends WalletError {
  readonly code = "code_clock_skew";
  override status = 422 as const;
  constructor() {
    super(
      "Cannot redeem offline payment code: made with a clock minutes off",
      "手机时间不准，请联网打开一次付款码",
    );
  }
}

/** An offline payment code of a device removed, frozen, or from before a 挂失 or 解绑. */
export class PaymentCodeRevokedError extends WalletError {
  readonly code = "code_revoked";
  override status = 422 as const;
  constructor() {
    super(
      "Cannot redeem offline payment code: its device was revoked",
      "离线付款码已失效，请联网刷新",
    );
  }
}

/**
 * A reader's offline record of a 离线付款码 whose card was reported lost or unbound after it was paid:
 * whether the device was still trusted then is finance's call (PROTOCOL.md §4.11).
 */
export class OfflineCodeRevokedLaterError extends WalletError {
  readonly code = "code_revoked_later";
  override status = 422 as const;
  constructor() {
    super(
      "Cannot charge offline payment code: its card was reported lost or unbound after it was paid",
      "交易后该卡曾挂失或解绑，需财务处核实",
    );
  }
}

/** The amount is above the offline limits (一卡通中心's, per payment or per China day). */
export class OfflineCodeOverLimitError extends WalletError {
  readonly code = "offline_code_over_limit";
  override status = 422 as const;
  constructor(
    readonly limit: "per_payment" | "daily",
    readonly limitFen: number,
    readonly amount: number,
  ) {
    super(
      `Cannot redeem offline payment code: offline ${limit} limit is ${limitFen} fen, asked ${amount} fen`,
      limit === "per_payment"
        ? `超过离线付款码单笔限额 ${formatFen(limitFen)}`
        : `超过离线付款码每日限额 ${formatFen(limitFen)}`,
    );
  }
}

/** A payment code needs a bound card (账号绑定). */
export class NoBoundCardError extends WalletError {
  readonly code = "no_bound_card";
  override status = 422 as const;
  constructor() {
    super("Cannot use wallet: no bound card", "请先绑定一卡通账号");
  }
}

/** No hold with this id. */
export class HoldNotFoundError extends WalletError {
  readonly code = "hold_not_found";
  override status = 404 as const;
  constructor(readonly holdId: number) {
    super(`Cannot find hold ${holdId}`, "预授权不存在");
  }
}

/** Less than the minimum is available for a hold. */
export class HoldBelowMinimumError extends WalletError {
  readonly code = "hold_below_minimum";
  override status = 422 as const;
  constructor(readonly available: number, readonly minimum: number) {
    super(
      `Cannot hold funds: available is ${available} fen, minimum is ${minimum} fen`,
      `余额不足（可用余额 ${formatFen(available)}）`,
    );
  }
}

/** The hold was already settled under another reference. */
export class HoldAlreadySettledError extends WalletError {
  readonly code = "hold_settled";
  override status = 409 as const;
  constructor(readonly holdId: number) {
    super(`Cannot settle hold ${holdId}: already settled`, "该预授权已结算");
  }
}

/** No card account with this id. */
export class UnknownCardAccountError extends WalletError {
  readonly code = "unknown_card_account";
  override status = 404 as const;
  constructor(readonly cardAccountId: number) {
    super(`Cannot find card account ${cardAccountId}`, "一卡通账户不存在");
  }
}

/** 付款设置's limits out of bounds: each at most its system ceiling, one payment at most a day. */
export class InvalidLimitsError extends WalletError {
  readonly code = "invalid_limits";
  override status = 422 as const;
  constructor(field: "pay_limit" | "daily_limit", userMessage: string) {
    super(`Cannot set payment limits: ${field} is out of bounds`, userMessage, field);
  }
}
