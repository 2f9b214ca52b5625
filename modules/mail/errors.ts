import { DomainError } from "../platform/errors.ts";

/** The mail server could not be reached, refused the message, or was too slow. */
export class MailDeliveryError extends DomainError {
  override status = 503 as const;
  constructor(reason: string, field?: string) {
    super(`Cannot deliver mail: ${reason}`, "邮件发送失败，邮件服务暂时不可用，请稍后再试", field);
  }
}
