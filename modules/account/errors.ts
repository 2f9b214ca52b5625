import { DomainError } from "../platform/errors.ts";

/** A form value the service refused; shown next to `field`. */
export class AccountError extends DomainError {
  override status = 422 as const;
}

/** Password reset by email is impossible: the phone has no account with a bound email. */
export class NoBoundEmailError extends DomainError {
  override status = 422 as const;
  constructor() {
    super(
      "No account with a bound email for this phone",
      "该手机号未注册或未绑定邮箱，无法通过邮箱找回。未绑定邮箱的，请到教学楼 503 图文信息中心修改登录密码。",
      "phone",
    );
  }
}
