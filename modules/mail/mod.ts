/** Outgoing mail: SMTP via nodemailer, or the development outbox when SMTP_URL is unset. */
export {
  createMailer,
  DEFAULT_MAIL_TIMEOUTS,
  listOutbox,
  type Mailer,
  type MailMessage,
  type MailTimeouts,
  type OutboxMessage,
} from "./service.ts";
export { MailDeliveryError } from "./errors.ts";
export { mailAdminRoutes } from "./routes.ts";
export {
  parseMail,
  type ReceivedMail,
  startSilentServer,
  startTestSmtpServer,
  type TestSmtpServer,
} from "./testing.ts";
