import { DomainError } from "../platform/errors.ts";

/** A card rule was not met; `userMessage` says which, in Chinese, next to `field`. */
export class CardError extends DomainError {
  override status = 422 as const;
}

/** Card-password checks of this card account are locked after too many wrong tries. */
export class CardLockedError extends DomainError {
  override status = 429 as const;
  constructor(readonly retryAfter: number, userMessage: string, field = "password") {
    super(`Card password locked for ${retryAfter}s`, userMessage, field);
  }
}

/** Where a holder goes for what the pages cannot do. */
export const CARD_OFFICE = "请到一卡通中心办理";
