/**
 * A rule of the domain was not met. `message` is for logs (English); `userMessage` is the
 * Chinese sentence shown to the person; `field` names the form field it belongs to, if any.
 */
export class DomainError extends Error {
  status: 400 | 401 | 403 | 404 | 409 | 413 | 422 | 429 | 503 = 400;
  constructor(message: string, readonly userMessage: string, readonly field?: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The thing asked for does not exist, or the asker may not see it (the two look alike). */
export class NotFoundError extends DomainError {
  override status = 404 as const;
  constructor(what: string) {
    super(`Cannot find ${what}`, "页面不存在或您无权查看");
  }
}

/** Signed in, but not allowed to do this. */
export class ForbiddenError extends DomainError {
  override status = 403 as const;
  constructor(message = "Forbidden", userMessage = "您没有权限执行此操作") {
    super(message, userMessage);
  }
}

/** Too many attempts: `retryAfter` is in seconds. */
export class TooManyAttemptsError extends DomainError {
  override status = 429 as const;
  constructor(what: string, readonly retryAfter: number, userMessage?: string) {
    super(
      `Too many attempts: ${what}, retry after ${retryAfter}s`,
      userMessage ?? `尝试次数过多，请${describeWait(retryAfter)}后再试`,
    );
  }
}

/** "3分钟" / "45秒" / "2小时" for a wait in seconds. */
export function describeWait(seconds: number): string {
  if (seconds < 60) return `${Math.max(1, Math.ceil(seconds))}秒`;
  if (seconds < 3600) return `${Math.ceil(seconds / 60)}分钟`;
  return `${Math.ceil(seconds / 3600)}小时`;
}
