import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { TooManyAttemptsError } from "../platform/errors.ts";
import { sql } from "kysely";
import {
  assertNotLocked,
  keyedHash,
  randomDigits,
  recordEvent,
  timingSafeEqual,
} from "../security/mod.ts";
import type { Mailer } from "../mail/mod.ts";
import { AccountError } from "./errors.ts";
import type { EmailCodePurpose } from "./tables.ts";
import "./tables.ts";

/** Codes live 10 minutes, die after 5 wrong tries, and may be re-sent after a minute. */
export const CODE_TTL_SECONDS = 600;
export const CODE_MAX_ATTEMPTS = 5;
export const RESEND_AFTER_SECONDS = 60;
/** At most 5 sends an hour per account and per address; 20 per client address. */
const SENDS_PER_ACCOUNT = { limit: 5, windowSeconds: 3600 };
const SENDS_PER_EMAIL = { limit: 5, windowSeconds: 3600 };
const SENDS_PER_IP = { limit: 20, windowSeconds: 3600 };

const SUBJECTS: Record<EmailCodePurpose, string> = {
  bind_email: "校园一信通：绑定邮箱验证码",
  reset_password: "校园一信通：找回登录密码验证码",
};

const ACTIONS: Record<EmailCodePurpose, string> = {
  bind_email: "绑定邮箱",
  reset_password: "找回登录密码",
};

/** What the code sender needs. */
export interface CodeDeps {
  db: Db;
  config: Config;
  mailer: Mailer;
}

function codeHash(
  config: Config,
  id: { accountId: number; purpose: string; email: string },
  code: string,
) {
  return keyedHash(
    config.appSecret,
    "email-code",
    `${id.accountId}:${id.purpose}:${id.email}:${code}`,
  );
}

/** "ab***@qq.com": enough for the owner to recognise, little for anyone else. */
export function maskEmail(email: string): string {
  const at = email.lastIndexOf("@");
  if (at < 1) return "***";
  const local = email.slice(0, at);
  return `${local.slice(0, Math.min(2, local.length - 1) || 1)}***${email.slice(at)}`;
}

/**
 * Sends a fresh 6-digit code to `email` for `purpose`; earlier codes of the same purpose die.
 * Throttled: one send a minute, 5 an hour per account and per address, 20 per client address.
 */
export async function sendEmailCode(
  deps: CodeDeps,
  input: { accountId: number; purpose: EmailCodePurpose; email: string; ip: string },
): Promise<void> {
  const { db, config } = deps;
  const keys = [
    `email-code:account:${input.accountId}`,
    `email-code:email:${input.email}`,
    `email-code:ip:${input.ip}`,
  ];
  const hourly = (w: number) => `验证码发送过于频繁，请${describeMinutes(w)}后再试`;
  for (const key of keys) await assertNotLocked(db, key, hourly);

  const last = await db.selectFrom("email_codes").select("created_at")
    .where("account_id", "=", input.accountId).where("purpose", "=", input.purpose)
    .orderBy("id", "desc").limit(1).executeTakeFirst();
  if (last) {
    const wait = Math.ceil(
      (last.created_at.getTime() + RESEND_AFTER_SECONDS * 1000 - Date.now()) / 1000,
    );
    if (wait > 0) {
      throw new TooManyAttemptsError(
        `email code resend ${input.accountId}`,
        wait,
        `请${wait}秒后再获取验证码`,
      );
    }
  }
  await recordEvent(db, keys[0], SENDS_PER_ACCOUNT);
  await recordEvent(db, keys[1], SENDS_PER_EMAIL);
  await recordEvent(db, keys[2], SENDS_PER_IP);

  const code = randomDigits(6);
  const id = await db.transaction().execute(async (trx) => {
    await trx.updateTable("email_codes").set({ used_at: new Date() })
      .where("account_id", "=", input.accountId).where("purpose", "=", input.purpose)
      .where("used_at", "is", null).execute();
    const row = await trx.insertInto("email_codes").values({
      account_id: input.accountId,
      purpose: input.purpose,
      email: input.email,
      code_hash: await codeHash(config, input, code),
      expires_at: sql<Date>`now() + make_interval(secs => ${CODE_TTL_SECONDS})`,
    }).returning("id").executeTakeFirstOrThrow();
    return row.id;
  });
  try {
    await deps.mailer.send({
      to: input.email,
      subject: SUBJECTS[input.purpose],
      text: `您正在${ACTIONS[input.purpose]}，验证码：${code}\n\n` +
        `验证码10分钟内有效，仅可使用一次。请勿将验证码告诉他人。\n` +
        `如非本人操作，请忽略本邮件。\n\n校园一信通`,
    });
  } catch (err) {
    // A code nobody received must not stay valid.
    await db.updateTable("email_codes").set({ used_at: new Date() }).where("id", "=", id).execute();
    throw err;
  }
}

function describeMinutes(seconds: number): string {
  return `${Math.max(1, Math.ceil(seconds / 60))}分钟`;
}

/**
 * Checks and uses up the latest code of `purpose` for an account; returns the address it was sent
 * to. Wrong codes count: after 5 the code is dead and a new one must be requested.
 */
export async function consumeEmailCode(
  db: Db,
  config: Config,
  input: {
    accountId: number;
    purpose: EmailCodePurpose;
    code: string;
    email?: string;
    field: string;
  },
): Promise<string> {
  const fail = (msg: string, userMessage: string, field = input.field) =>
    new AccountError(msg, userMessage, field);
  const row = await db.selectFrom("email_codes")
    .select(["id", "email", "code_hash", "attempts", "expires_at"])
    .where("account_id", "=", input.accountId).where("purpose", "=", input.purpose)
    .where("used_at", "is", null)
    .orderBy("id", "desc").limit(1).executeTakeFirst();
  if (!row) throw fail("No live email code", "请先获取验证码");
  if (input.email !== undefined && row.email !== input.email) {
    throw fail(
      "Email differs from the code's",
      "验证码是发给另一个邮箱的，请重新获取验证码",
      "email",
    );
  }
  if (row.expires_at.getTime() <= Date.now()) {
    throw fail("Email code expired", "验证码已过期，请重新获取");
  }
  if (row.attempts >= CODE_MAX_ATTEMPTS) {
    throw fail("Email code tried too often", "验证码错误次数过多，请重新获取");
  }
  const expected = await codeHash(config, {
    accountId: input.accountId,
    purpose: input.purpose,
    email: row.email,
  }, input.code);
  if (!timingSafeEqual(expected, row.code_hash)) {
    const r = await db.updateTable("email_codes").set((eb) => ({
      attempts: eb("attempts", "+", 1),
    }))
      .where("id", "=", row.id).returning("attempts").executeTakeFirstOrThrow();
    const left = CODE_MAX_ATTEMPTS - r.attempts;
    throw left > 0
      ? fail("Wrong email code", `验证码错误，还可尝试${left}次`)
      : fail("Wrong email code, now dead", "验证码错误次数过多，请重新获取");
  }
  const used = await db.updateTable("email_codes").set({ used_at: new Date() })
    .where("id", "=", row.id).where("used_at", "is", null)
    .where("attempts", "<", CODE_MAX_ATTEMPTS)
    .returning("id").executeTakeFirst();
  if (!used) throw fail("Email code used concurrently", "验证码已失效，请重新获取");
  return row.email;
}
