import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { describeWait, TooManyAttemptsError } from "../platform/errors.ts";
import { sql } from "kysely";
import {
  assertNotLocked,
  keyedHash,
  randomDigits,
  recordEvent,
  sha256Hex,
  takeFromBudget,
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

/**
 * 绑定邮箱 codes (only the signed-in owner asks): 5 sends an hour per account and per address
 * written to, 20 per client address.
 */
export const BIND_CODE_SENDS = {
  account: { limit: 5, windowSeconds: 3600 },
  email: { limit: 5, windowSeconds: 3600 },
  ip: { limit: 20, windowSeconds: 3600 },
} as const;

/**
 * 找回登录密码 codes, which anyone who knows the phone may ask for. A code is checked only in the
 * browser that asked for it, so nobody else's requests or wrong tries replace or kill it. Sends
 * per account a day: 5 from sources the owner has not proven, 10 in all with a browser or
 * address the owner signed in with in the last 30 days; 3 per account and client address a day
 * (not for the owner's browser); 20 per client address a day over all accounts (not for a proven
 * source). A stranger therefore gets at most 5 codes × 5 tries = 25 guesses at one account's
 * 6-digit code a day (1 in 40,000), and needs two addresses for even that.
 */
export const RESET_CODE_SENDS = {
  account: { limit: 5, provenLimit: 10, windowSeconds: 86_400 },
  accountAddress: { limit: 3, windowSeconds: 86_400 },
  ip: { limit: 20, windowSeconds: 86_400 },
} as const;

/** Who asks for a code. */
export interface CodeRequester {
  ip: string;
  /**
   * The asking browser's sign-in device token (找回登录密码): the code is checked only there and
   * replaces only that browser's earlier code. Absent for 绑定邮箱 (the account asks).
   */
  device?: string;
  /** The owner signed in lately with this browser or from this address (找回登录密码). */
  proof?: { device: boolean; address: boolean };
}

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

/** The stored form of a requesting browser; null when the account itself asks (绑定邮箱). */
async function requesterOf(device: string | undefined): Promise<string | null> {
  return device === undefined ? null : await sha256Hex(`email-code:${device}`);
}

const bindSendsMessage = (wait: number) => `验证码发送过于频繁，请${describeMinutes(wait)}后再试`;
const resetSendsMessage = (wait: number) => `验证码发送过于频繁，请${describeWait(wait)}后再试`;

/** Checks and counts one 绑定邮箱 send: per account, per address written to, per client address. */
async function countBindSend(
  db: Db,
  input: { accountId: number; email: string; ip: string },
): Promise<void> {
  const rules = [
    [`email-code:account:${input.accountId}`, BIND_CODE_SENDS.account],
    [`email-code:email:${input.email}`, BIND_CODE_SENDS.email],
    [`email-code:ip:${input.ip}`, BIND_CODE_SENDS.ip],
  ] as const;
  for (const [key] of rules) await assertNotLocked(db, key, bindSendsMessage);
  for (const [key, rule] of rules) await recordEvent(db, key, rule);
}

/** Checks and counts one 找回登录密码 send under RESET_CODE_SENDS. */
async function countResetSend(
  db: Db,
  input: { accountId: number } & CodeRequester,
): Promise<void> {
  const proof = input.proof ?? { device: false, address: false };
  const rules = [
    ...(proof.device ? [] : [
      [
        `email-code:reset:${input.accountId}:ip:${input.ip}`,
        RESET_CODE_SENDS.accountAddress,
      ] as const,
    ]),
    ...(proof.device || proof.address
      ? []
      : [[`email-code:reset-ip:${input.ip}`, RESET_CODE_SENDS.ip] as const]),
  ];
  for (const [key] of rules) await assertNotLocked(db, key, resetSendsMessage);
  const key = `email-code:reset:${input.accountId}`;
  const wait = await takeFromBudget(db, { key, ...RESET_CODE_SENDS.account }, {
    proven: proof.device || proof.address,
  });
  if (wait > 0) {
    throw new TooManyAttemptsError(
      key,
      wait,
      `该账号获取验证码次数过多，请${describeWait(wait)}后再试，` +
        "或在常用的手机、电脑上获取；也可到教学楼 503 图文信息中心重置登录密码",
    );
  }
  for (const [key, rule] of rules) await recordEvent(db, key, rule);
}

/**
 * Sends a fresh 6-digit code to `email` for `purpose`; the earlier code of the same asker (the
 * account for 绑定邮箱, the browser for 找回登录密码) dies. One send a minute per asker, and the
 * limits of BIND_CODE_SENDS / RESET_CODE_SENDS.
 */
export async function sendEmailCode(
  deps: CodeDeps,
  input: { accountId: number; purpose: EmailCodePurpose; email: string } & CodeRequester,
): Promise<void> {
  const { db, config } = deps;
  const requester = await requesterOf(input.device);
  const last = await db.selectFrom("email_codes").select("created_at")
    .where("account_id", "=", input.accountId).where("purpose", "=", input.purpose)
    .where("requester", requester === null ? "is" : "=", requester)
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
  if (input.purpose === "reset_password") await countResetSend(db, input);
  else await countBindSend(db, input);

  const code = randomDigits(6);
  const id = await db.transaction().execute(async (trx) => {
    await trx.updateTable("email_codes").set({ used_at: new Date() })
      .where("account_id", "=", input.accountId).where("purpose", "=", input.purpose)
      .where("requester", requester === null ? "is" : "=", requester)
      .where("used_at", "is", null).execute();
    const row = await trx.insertInto("email_codes").values({
      account_id: input.accountId,
      purpose: input.purpose,
      email: input.email,
      requester,
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
        `验证码10分钟内有效，仅可使用一次` +
        (requester === null ? "。" : "，请在获取验证码的页面中填写。") +
        `请勿将验证码告诉他人。\n如非本人操作，请忽略本邮件。\n\n校园一信通`,
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
 * Checks and uses up the latest code of `purpose` for an account that `device` asked for (the
 * account's own for 绑定邮箱); returns the address it was sent to. Wrong codes count: after 5 the
 * code is dead and a new one must be requested.
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
    /** The browser giving the code (找回登录密码): only its own code is checked. */
    device?: string;
  },
): Promise<string> {
  const requester = await requesterOf(input.device);
  const fail = (msg: string, userMessage: string, field = input.field) =>
    new AccountError(msg, userMessage, field);
  const row = await db.selectFrom("email_codes")
    .select(["id", "email", "code_hash", "attempts", "expires_at"])
    .where("account_id", "=", input.accountId).where("purpose", "=", input.purpose)
    .where("requester", requester === null ? "is" : "=", requester)
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
  // The account's other live codes of this purpose (other browsers' requests) are of no more use.
  await db.updateTable("email_codes").set({ used_at: new Date() })
    .where("account_id", "=", input.accountId).where("purpose", "=", input.purpose)
    .where("used_at", "is", null).execute();
  return row.email;
}
