import { DomainError } from "../platform/errors.ts";

/** A purchase was refused by a limit (minimum, maximum, daily). */
export class LimitError extends DomainError {
  override status = 422 as const;
  constructor(message: string, userMessage: string) {
    super(message, userMessage, "amount");
  }
}

/** The student has not chosen a room yet. */
export class NoRoomError extends DomainError {
  override status = 409 as const;
  constructor() {
    super("Cannot pay a utility: no room chosen", "您还没有选择宿舍房间");
  }
}

/** The student has no bound card account to pay from. */
export class NoCardError extends DomainError {
  override status = 409 as const;
  constructor() {
    super("Cannot pay a utility: no bound card", "您还没有绑定一卡通账号");
  }
}

/** The card balance does not cover the amount. */
export class BalanceTooLowError extends DomainError {
  override status = 409 as const;
  constructor(readonly balance: number | null) {
    super("Cannot pay a utility: insufficient balance", "一卡通余额不足", "amount");
  }
}

/** The meter system refused or could not be reached. `retryable` says whether to try again. */
export class MeterError extends Error {
  constructor(message: string, readonly retryable: boolean) {
    super(message);
    this.name = "MeterError";
  }
}
