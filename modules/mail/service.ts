import nodemailer from "nodemailer";
import type { Db } from "../platform/database.ts";
import { type Config, outboxAllowed } from "../platform/config.ts";
import { logger } from "../platform/log.ts";
import { MailDeliveryError } from "./errors.ts";
import "./tables.ts";

/** One plain-text mail. */
export interface MailMessage {
  to: string;
  subject: string;
  text: string;
}

/** Sends mail: over SMTP in production, into the development outbox otherwise. */
export interface Mailer {
  /** "smtp" when SMTP_URL is set, "outbox" for the development outbox. */
  readonly kind: "smtp" | "outbox";
  /** Delivers one message or throws MailDeliveryError (never hangs past its deadline). */
  send(message: MailMessage): Promise<void>;
}

/** Timeouts for talking to the SMTP server, in milliseconds. */
export interface MailTimeouts {
  connectMs: number;
  /** The whole exchange, from connect to the server's final reply. */
  totalMs: number;
}

/** A student waits for the page: a few seconds, then a clear message instead of a hung page. */
export const DEFAULT_MAIL_TIMEOUTS: MailTimeouts = { connectMs: 5_000, totalMs: 10_000 };

const log = logger("mail");

interface Transport {
  sendMail(message: Record<string, unknown>): Promise<unknown>;
  close(): void;
}

function smtpMailer(url: string, from: string, timeouts: MailTimeouts): Mailer {
  return {
    kind: "smtp",
    async send(message) {
      // A fresh connection per mail: codes are rare, and a stuck pooled socket cannot block others.
      const transport = nodemailer.createTransport({
        url,
        connectionTimeout: timeouts.connectMs,
        greetingTimeout: timeouts.connectMs,
        socketTimeout: timeouts.totalMs,
        dnsTimeout: timeouts.connectMs,
      }) as Transport;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new MailDeliveryError(`no answer within ${timeouts.totalMs} ms`)),
          timeouts.totalMs,
        );
      });
      try {
        await Promise.race([
          transport.sendMail({
            from,
            to: message.to,
            subject: message.subject,
            text: message.text,
          }),
          deadline,
        ]);
        log.info("mail sent", { to: message.to, subject: message.subject });
      } catch (err) {
        const reason = err instanceof MailDeliveryError ? err.message : (err as Error).message;
        log.warn("mail not sent", { to: message.to, subject: message.subject, err: reason });
        throw err instanceof MailDeliveryError ? err : new MailDeliveryError(reason);
      } finally {
        clearTimeout(timer);
        transport.close();
      }
    },
  };
}

function outboxMailer(db: Db): Mailer {
  return {
    kind: "outbox",
    async send(message) {
      await db.insertInto("mail_outbox").values({
        to_address: message.to,
        subject: message.subject,
        body_text: message.text,
      }).execute();
      // Never the text: it carries email and password-reset codes. Staff read it at /admin/outbox.
      log.info("mail kept in development outbox (no SMTP_URL)", {
        to: message.to,
        subject: message.subject,
      });
    },
  };
}

/**
 * The mailer for this configuration: SMTP over `config.smtpUrl`, else the development outbox,
 * which production (DATABASE_URL) gets only with MAIL_OUTBOX=1.
 */
export function createMailer(
  deps: { db: Db; config: Config },
  options: { timeouts?: Partial<MailTimeouts> } = {},
): Mailer {
  if (!deps.config.smtpUrl) {
    if (!outboxAllowed(deps.config)) {
      throw new Error(
        "Cannot start in production mode (DATABASE_URL is set): SMTP_URL is not set (or MAIL_OUTBOX=1 to keep mail in the development outbox)",
      );
    }
    return outboxMailer(deps.db);
  }
  const timeouts = { ...DEFAULT_MAIL_TIMEOUTS, ...options.timeouts };
  return smtpMailer(deps.config.smtpUrl, deps.config.mailFrom, timeouts);
}

/** A message of the development outbox. */
export interface OutboxMessage {
  id: number;
  toAddress: string;
  subject: string;
  bodyText: string;
  createdAt: Date;
}

/** The newest messages of the development outbox, optionally only those to one address. */
export async function listOutbox(
  db: Db,
  options: { to?: string; limit?: number } = {},
): Promise<OutboxMessage[]> {
  let q = db.selectFrom("mail_outbox").select([
    "id",
    "to_address as toAddress",
    "subject",
    "body_text as bodyText",
    "created_at as createdAt",
  ]);
  if (options.to) q = q.where("to_address", "=", options.to.trim().toLowerCase());
  return await q.orderBy("id", "desc").limit(options.limit ?? 100).execute();
}
