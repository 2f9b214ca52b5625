import { DomainError } from "../platform/errors.ts";

/** A top-up the rules do not allow (amount, limits, card). */
export class TopupRefused extends DomainError {
  override status = 422 as const;
}

/** The payment gateway could not open the payment. */
export class GatewayUnavailable extends DomainError {
  override status = 503 as const;
  constructor(message: string) {
    super(message, "支付渠道暂时不可用，请稍后再试");
  }
}
