import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { TooManyAttemptsError } from "../platform/errors.ts";
import {
  assertNotLocked,
  clearThrottle,
  destroySessionsOf,
  forgetSignIn,
  guardedGuess,
  hashPassword,
  keyedHash,
  lockedFor,
  proveSignIn,
  recordEvent,
  signInGuard,
  signInProof,
  signInWaitMessage,
  temporaryPassword,
  timingSafeEqual,
  verifyPassword,
} from "../security/mod.ts";
import { writeAudit } from "../staff/mod.ts";
import { AccountError, NoBoundEmailError } from "./errors.ts";
import { type CodeDeps, consumeEmailCode, maskEmail, sendEmailCode } from "./email_codes.ts";
import { recordAccountEvent } from "./events.ts";
import { endWechatLoginOnPasswordChange } from "./wechat_login.ts";
import { ensureSchool, findAccountByPhone, findSchool } from "./repository.ts";
import "./tables.ts";

/** Wrong old passwords on 我的 → 修改登录密码: 5 per account in 15 minutes. */
const OLD_PASSWORD_RULE = { limit: 5, windowSeconds: 900, lockSeconds: 900 };
/** Phone look-ups on the forgotten-password page per client address. */
const FORGOT_IP_RULE = { limit: 20, windowSeconds: 3600 };
/**
 * Registrations tried per client address: each costs an Argon2id hash and says whether a phone is
 * taken, so a script gets a few a minute; a class registering together behind the campus NAT
 * does not notice.
 */
const REGISTER_IP_RULE = { limit: 60, windowSeconds: 600 };

/** A ticket to set a new password after a staff reset is valid this long. */
const TICKET_SECONDS = 900;

/** Throttle key of a phone's login failures (staff unlock it with clearThrottle). */
export function loginThrottleKey(phone: string): string {
  return `login:phone:${phone}`;
}

/** A spent sign-in budget: the owner gets in with an emailed code. */
const FORGOT_HINT = "；也可通过“忘记密码”用邮箱验证码重设密码后登录";

function loginLockMessage(seconds: number): string {
  return `登录失败次数过多，请${Math.max(1, Math.ceil(seconds / 60))}分钟后再试`;
}

// Unknown phones cost the same Argon2id time as known ones.
let dummyHash: Promise<string> | null = null;

/** Creates a login account; the phone must be new and the school known. */
export async function registerAccount(
  db: Db,
  input: { phone: string; password: string; schoolId: number },
): Promise<number> {
  const school = await findSchool(db, input.schoolId);
  if (!school) throw new AccountError("Unknown school", "请选择学校", "school_id");
  if (await findAccountByPhone(db, input.phone)) {
    throw new AccountError("Phone taken", "该手机号已注册，请直接登录", "phone");
  }
  const passwordHash = await hashPassword(input.password);
  const row = await db.insertInto("accounts").values({
    phone: input.phone,
    school_id: school.id,
    password_hash: passwordHash,
  }).onConflict((oc) => oc.column("phone").doNothing()).returning("id").executeTakeFirst();
  if (!row) throw new AccountError("Phone taken", "该手机号已注册，请直接登录", "phone");
  return row.id;
}

/**
 * `registerAccount` from the 注册 page: throttled per client address (counted before the work,
 * so a refused phone counts too).
 */
export async function registerFromPage(
  db: Db,
  input: { phone: string; password: string; schoolId: number; ip: string },
): Promise<number> {
  const ipKey = `register:ip:${input.ip}`;
  const message = (w: number) => `注册过于频繁，请${Math.max(1, Math.ceil(w / 60))}分钟后再试`;
  await assertNotLocked(db, ipKey, message);
  const r = await recordEvent(db, ipKey, REGISTER_IP_RULE);
  if (r.count > REGISTER_IP_RULE.limit) {
    throw new TooManyAttemptsError(ipKey, r.lockedFor, message(r.lockedFor));
  }
  return await registerAccount(db, input);
}

/** The outcome of a correct phone and password. */
export interface Authenticated {
  accountId: number;
  /** Staff reset the password: a new one must be set before signing in (see passwordTicket). */
  mustChangePassword: boolean;
}

/**
 * Checks a phone and login password under the sign-in rule (security's SIGN_IN_RULE): a stranger's
 * wrong guesses slow their own address, and cannot keep the owner out of a proven address.
 */
export async function authenticate(
  db: Db,
  input: { phone: string; password: string; ip: string; device: string },
): Promise<Authenticated> {
  const source = { nameKey: loginThrottleKey(input.phone), ip: input.ip, device: input.device };
  const guard = await signInGuard(db, { ...source, addressKey: `login:ip:${input.ip}` });
  const row = await db.selectFrom("accounts").select([
    "id",
    "password_hash",
    "must_change_password",
  ])
    .where("phone", "=", input.phone).executeTakeFirst();
  dummyHash ??= hashPassword("dummy-password-1");
  const outcome = await guardedGuess(db, guard, async () => {
    const ok = await verifyPassword(row?.password_hash ?? (await dummyHash!), input.password);
    return ok && row !== undefined;
  });
  if (!outcome.ok) {
    if (outcome.retryAfter > 0) {
      const hint = outcome.by === guard.budgetKey ? FORGOT_HINT : "";
      throw new TooManyAttemptsError(
        guard.budgetKey,
        outcome.retryAfter,
        signInWaitMessage(outcome.retryAfter) + hint,
      );
    }
    throw new AccountError(
      "Wrong phone or password",
      `手机号或登录密码错误，还可尝试${outcome.remaining}次`,
      "password",
    );
  }
  await proveSignIn(db, source);
  return { accountId: row!.id, mustChangePassword: row!.must_change_password };
}

/** Changes the login password from 我的: the old one must be right; other sessions end. */
export async function changePassword(
  db: Db,
  input: {
    accountId: number;
    oldPassword: string;
    newPassword: string;
    keepSessionId: string | null;
  },
): Promise<void> {
  const key = `password-change:${input.accountId}`;
  await assertNotLocked(db, key, loginLockMessage);
  const row = await db.selectFrom("accounts").select("password_hash").where(
    "id",
    "=",
    input.accountId,
  )
    .executeTakeFirstOrThrow();
  if (!(await verifyPassword(row.password_hash, input.oldPassword))) {
    const r = await recordEvent(db, key, OLD_PASSWORD_RULE);
    if (r.lockedFor > 0) {
      throw new TooManyAttemptsError(key, r.lockedFor, loginLockMessage(r.lockedFor));
    }
    throw new AccountError(
      "Wrong old password",
      `原密码错误，还可尝试${r.remaining}次`,
      "old_password",
    );
  }
  if (input.oldPassword === input.newPassword) {
    throw new AccountError("Same password", "新密码不能与原密码相同", "new_password");
  }
  await clearThrottle(db, key);
  await setPassword(db, input.accountId, input.newPassword, "changed");
  await destroySessionsOf(db, "student", input.accountId, input.keepSessionId);
}

/** How a password came to change, in its security notice. */
type PasswordChange = "changed" | "email_code" | "after_staff_reset" | "staff_reset";

/** Puts `hash` in place and records the change (a security notice), in the caller's transaction. */
async function replacePasswordHash(
  trx: Db,
  accountId: number,
  hash: string,
  how: PasswordChange,
  mustChange = false,
): Promise<void> {
  await trx.updateTable("accounts").set({
    password_hash: hash,
    must_change_password: mustChange,
    password_changed_at: new Date(),
  }).where("id", "=", accountId).execute();
  await recordAccountEvent(trx, {
    accountId,
    kind: "password_changed",
    actor: how === "staff_reset" ? "staff" : "student",
    details: { how },
  });
  await endWechatLoginOnPasswordChange(trx, accountId);
}

async function setPassword(
  db: Db,
  accountId: number,
  password: string,
  how: PasswordChange,
): Promise<void> {
  const hash = await hashPassword(password);
  await db.transaction().execute((trx) => replacePasswordHash(trx, accountId, hash, how));
}

/** Sends a code to a new address for 我的 → 绑定邮箱. */
export async function sendBindEmailCode(
  deps: CodeDeps,
  input: { accountId: number; email: string; ip: string },
): Promise<void> {
  await sendEmailCode(deps, { ...input, purpose: "bind_email" });
}

/** Binds the address the code was sent to. */
export async function bindEmail(
  db: Db,
  config: Config,
  input: { accountId: number; email: string; code: string },
): Promise<void> {
  const email = await consumeEmailCode(db, config, {
    ...input,
    purpose: "bind_email",
    field: "code",
  });
  await db.updateTable("accounts").set({ email, email_verified_at: new Date() })
    .where("id", "=", input.accountId).execute();
}

/**
 * Sends a reset code to the email bound to `phone`, for the browser `device` only; returns the
 * address masked. A phone with no account and one with no bound email get the same answer (visit
 * 图文信息中心). A browser or address the owner signed in with lately is not held back by what
 * strangers asked for (email_codes.ts RESET_CODE_SENDS).
 */
export async function sendPasswordResetCode(
  deps: CodeDeps,
  input: { phone: string; ip: string; device: string },
): Promise<{ maskedEmail: string }> {
  const proof = await signInProof(deps.db, { nameKey: loginThrottleKey(input.phone), ...input });
  if (!proof.device && !proof.address) {
    const ipKey = `forgot:ip:${input.ip}`;
    await assertNotLocked(deps.db, ipKey, (w) => `操作过于频繁，请${Math.ceil(w / 60)}分钟后再试`);
    await recordEvent(deps.db, ipKey, FORGOT_IP_RULE);
  }
  const account = await findAccountByPhone(deps.db, input.phone);
  if (!account?.email) throw new NoBoundEmailError();
  await sendEmailCode(deps, {
    accountId: account.id,
    purpose: "reset_password",
    email: account.email,
    ip: input.ip,
    device: input.device,
    proof,
  });
  return { maskedEmail: maskEmail(account.email) };
}

/**
 * Sets a new login password with an emailed code, given in the browser that asked for it; every
 * session of the account ends.
 */
export async function resetPasswordWithCode(
  db: Db,
  config: Config,
  input: { phone: string; code: string; newPassword: string; ip: string; device: string },
): Promise<void> {
  const account = await findAccountByPhone(db, input.phone);
  if (!account) throw new AccountError("No live email code", "请先获取验证码", "code");
  await consumeEmailCode(db, config, {
    accountId: account.id,
    purpose: "reset_password",
    code: input.code,
    field: "code",
    device: input.device,
  });
  await setPassword(db, account.id, input.newPassword, "email_code");
  await destroySessionsOf(db, "student", account.id);
  // The code proved the owner: strangers' guesses are forgotten and this address may sign in.
  await forgetSignIn(db, loginThrottleKey(account.phone));
  await proveSignIn(db, {
    nameKey: loginThrottleKey(account.phone),
    ip: input.ip,
    device: input.device,
  });
}

// Tickets bind to the current password hash: once the password changes, the ticket is dead.
async function ticketSignature(config: Config, accountId: number, expires: number, hash: string) {
  return (await keyedHash(config.appSecret, "password-ticket", `${accountId}.${expires}.${hash}`))
    .slice(0, 43);
}

/**
 * After signing in with a temporary password (staff reset), a ticket that lets the same person
 * set a new password within 15 minutes without a session.
 */
export async function passwordTicket(db: Db, config: Config, accountId: number): Promise<string> {
  const row = await db.selectFrom("accounts").select("password_hash").where("id", "=", accountId)
    .executeTakeFirstOrThrow();
  const expires = Math.floor(Date.now() / 1000) + TICKET_SECONDS;
  return `${accountId}.${expires}.${await ticketSignature(
    config,
    accountId,
    expires,
    row.password_hash,
  )}`;
}

/** Sets the new password for a ticket from passwordTicket; returns the account id. */
export async function setPasswordWithTicket(
  db: Db,
  config: Config,
  input: { ticket: string; newPassword: string },
): Promise<number> {
  const expired = new AccountError("Bad password ticket", "页面已过期，请重新登录", "_form");
  const m = /^(\d{1,15})\.(\d{1,12})\.([0-9a-f]{43})$/.exec(input.ticket);
  if (!m) throw expired;
  const accountId = Number(m[1]);
  const expires = Number(m[2]);
  if (expires * 1000 < Date.now()) throw expired;
  const row = await db.selectFrom("accounts").select(["password_hash", "must_change_password"])
    .where("id", "=", accountId).executeTakeFirst();
  if (!row?.must_change_password) throw expired;
  if (
    !timingSafeEqual(await ticketSignature(config, accountId, expires, row.password_hash), m[3])
  ) {
    throw expired;
  }
  if (await verifyPassword(row.password_hash, input.newPassword)) {
    throw new AccountError("Same as temporary", "新密码不能与临时密码相同", "new_password");
  }
  await setPassword(db, accountId, input.newPassword, "after_staff_reset");
  return accountId;
}

/**
 * 图文信息中心 resets a student's login password: a temporary password (returned once, never
 * stored in clear), must be changed at the next sign-in; every session ends; audited.
 */
export async function staffResetPassword(
  db: Db,
  input: { accountId: number; staffId: number; ip: string },
): Promise<string> {
  const temp = temporaryPassword();
  const hash = await hashPassword(temp);
  await db.transaction().execute(async (trx) => {
    const before = await trx.selectFrom("accounts").select(["phone", "must_change_password"])
      .where("id", "=", input.accountId).forUpdate().executeTakeFirst();
    if (!before) throw new AccountError("No such account", "账号不存在", "_form");
    await replacePasswordHash(trx, input.accountId, hash, "staff_reset", true);
    await destroySessionsOf(trx, "student", input.accountId);
    await forgetSignIn(trx, loginThrottleKey(before.phone));
    await writeAudit(trx, {
      staffId: input.staffId,
      action: "account.password_reset",
      targetType: "account",
      targetId: input.accountId,
      before: { phone: before.phone, mustChangePassword: before.must_change_password },
      after: { phone: before.phone, mustChangePassword: true, sessionsEnded: true },
      ip: input.ip,
    });
  });
  return temp;
}

/** Seconds a phone's sign-in stays closed to unproven addresses (shown to staff). */
export function loginLockedFor(db: Db, phone: string): Promise<number> {
  return lockedFor(db, loginThrottleKey(phone));
}

/** The demo school and the demo student sign-in printed at start. */
export const DEMO_SCHOOL_NAME = "云南城市建设职业学院";
export const DEMO_SCHOOL_CODE = "YNCJ";
export const DEMO_STUDENT = { phone: "13800000001", password: "Demo12345" };

/** Seeds the demo school and the demo student login account (once). */
export async function seedDemoAccount(db: Db): Promise<void> {
  const school = await ensureSchool(db, DEMO_SCHOOL_NAME, DEMO_SCHOOL_CODE);
  if (await findAccountByPhone(db, DEMO_STUDENT.phone)) return;
  await registerAccount(db, { ...DEMO_STUDENT, schoolId: school.id });
}
