/**
 * Card passwords and their lockout.
 *
 * Why the default password is not an Argon2id hash: an import of 20,000 cardholders would spend
 * about 17 minutes in Argon2id (≈50 ms each) to hash default passwords most holders change anyway.
 * Instead each card account stores `default_password_check` = HMAC-SHA256 under CARD_PEPPER of
 * (keyed 身份证 hash, last 6 characters) — microseconds to compute, and worthless without the
 * pepper, which is not in the database. This adds nothing an attacker lacks already: the keyed
 * 身份证 hash beside it would give away the same 6 characters to whoever holds the application
 * secret. Once the holder chooses a password it is hashed with peppered Argon2id
 * (`password_hash`), and the default stops working; a staff reset sets `password_hash` back to
 * null, which brings the default back without needing the 身份证 number in clear.
 *
 * A 6-character secret can be guessed, so every check is counted (security's CARD_PASSWORD_RULES).
 * The holder's checks (readers, the bound account's pages) share one counter per card account:
 * 5 wrong in a row close them for the rest of 30 minutes, or until the card office unlocks.
 * Binding has budgets of its own (per card, per login account, per address), so a stranger who
 * knows a 学号 cannot lock its holder's card at the readers.
 */
import { createHmac } from "node:crypto";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { describeWait, type DomainError } from "../platform/errors.ts";
import {
  CARD_PASSWORD_RULES,
  guardedGuess,
  type GuessGuard,
  type GuessOutcome,
  hashCardPassword,
  lockedFor,
  timingSafeEqual,
  verifyCardPassword,
} from "../security/mod.ts";
import { CardError, CardLockedError } from "./errors.ts";
import { defaultCardPassword } from "./rules.ts";
import "./tables.ts";

/** What card-password checks need from the application's dependencies. */
export interface CardDeps {
  config: Pick<Config, "appSecret" | "cardPepper">;
}

/** 5 wrong card passwords in a row close the holder's checks for the rest of 30 minutes. */
export const CARD_PASSWORD_RULE = CARD_PASSWORD_RULES.holder;

/** The result of a card-password check. */
export type CardPasswordCheck =
  | { ok: true }
  | { ok: false; locked: boolean; remaining: number; retryAfter: number };

/** The throttle key of a card account's password checks. */
export function cardPasswordKey(cardAccountId: number): string {
  return `card-password:${cardAccountId}`;
}

/**
 * The same HMAC-SHA256 as security's `keyedHash` (a test holds them equal), through node:crypto:
 * an import hashes 40,000 values, and in Deno 2.9 WebCrypto HMAC gets slower with every call in
 * a long-lived process (2.5 s for 40,000, then 6 s, 7 s, 16 s), while this stays at ~1.3 s.
 */
function keyedHashSync(secret: string, purpose: string, value: string): string {
  return createHmac("sha256", secret).update(`${purpose}\n${value}`).digest("hex");
}

/** Keyed hash of a 身份证 number (APP_SECRET); the only form in which it is stored. */
export function idNumberHash(deps: CardDeps, idNumber: string): Promise<string> {
  return Promise.resolve(keyedHashSync(deps.config.appSecret, "id-number", idNumber));
}

/** The stored check of a default password candidate for the account with that 身份证 hash. */
export function defaultPasswordCheck(
  deps: CardDeps,
  idHash: string,
  password: string,
): Promise<string> {
  return Promise.resolve(
    keyedHashSync(deps.config.cardPepper, "card-default-password", `${idHash}\n${password}`),
  );
}

/** The check value for a 身份证 number's default password (import, seeding). */
export async function defaultPasswordCheckFor(deps: CardDeps, idNumber: string): Promise<string> {
  return defaultPasswordCheck(
    deps,
    await idNumberHash(deps, idNumber),
    defaultCardPassword(idNumber),
  );
}

/** Hashes a chosen card password (peppered Argon2id). */
export function hashChosenCardPassword(deps: CardDeps, password: string): Promise<string> {
  return hashCardPassword(password, deps.config.cardPepper);
}

interface PasswordRow {
  id_number_hash: string;
  default_password_check: string;
  password_hash: string | null;
}

/** True when `password` is the account's current card password (no throttling). */
export async function matchesCardPassword(
  deps: CardDeps,
  row: PasswordRow,
  password: string,
): Promise<boolean> {
  if (password.length === 0 || password.length > 64) return false;
  if (row.password_hash === null) {
    const check = await defaultPasswordCheck(deps, row.id_number_hash, password);
    return timingSafeEqual(check, row.default_password_check);
  }
  return await verifyCardPassword(row.password_hash, password, deps.config.cardPepper);
}

/** True when `password` is the account's default password (the last 6 of the 身份证). */
export async function isDefaultPassword(
  deps: CardDeps,
  row: PasswordRow,
  password: string,
): Promise<boolean> {
  const check = await defaultPasswordCheck(deps, row.id_number_hash, password);
  return timingSafeEqual(check, row.default_password_check);
}

/**
 * Checks a card password the holder gives (a reader with the card, the bound account's pages)
 * with its lockout: refuses while closed, counts a failure, clears the count on success. An
 * unknown card account answers like a wrong password (never locks: nothing to count against).
 */
export async function checkCardPassword(
  db: Db,
  deps: CardDeps,
  cardAccountId: number,
  password: string,
): Promise<CardPasswordCheck> {
  const row = Number.isSafeInteger(cardAccountId)
    ? await db.selectFrom("card_accounts")
      .select(["id_number_hash", "default_password_check", "password_hash"])
      .where("id", "=", cardAccountId).executeTakeFirst()
    : undefined;
  if (!row) return { ok: false, locked: false, remaining: CARD_PASSWORD_RULE.limit, retryAfter: 0 };
  const outcome = await guardedGuess(
    db,
    { budgets: [{ key: cardPasswordKey(cardAccountId), ...CARD_PASSWORD_RULE }] },
    () => matchesCardPassword(deps, row, password),
  );
  if (outcome.ok) return { ok: true };
  const locked = outcome.retryAfter > 0;
  return { ok: false, locked, remaining: outcome.remaining, retryAfter: outcome.retryAfter };
}

/** The budgets a bind attempt passes (security's CARD_PASSWORD_RULES). */
export function bindGuard(
  input: { accountId: number; ip: string; cardKey: string; withCard: boolean; proven: boolean },
): GuessGuard & { accountKey: string; cardKey: string; addressKey: string } {
  const accountKey = `card-bind:account:${input.accountId}`;
  const addressKey = `card-bind:ip:${input.ip}`;
  return {
    accountKey,
    cardKey: input.cardKey,
    addressKey,
    proven: input.proven,
    budgets: [
      { key: accountKey, ...CARD_PASSWORD_RULES.bindAccount },
      ...(input.withCard ? [{ key: input.cardKey, ...CARD_PASSWORD_RULES.bindCard }] : []),
    ],
    slowdowns: [{ key: addressKey, ...CARD_PASSWORD_RULES.bindAddress }],
  };
}

/** The error a failed bind shows, by which budget refused it. */
export function bindRefusal(
  outcome: Extract<GuessOutcome, { ok: false }>,
  guard: { accountKey: string; cardKey: string },
  context: { idGiven: boolean; schoolName: string },
): DomainError {
  const wait = describeWait(outcome.retryAfter);
  if (outcome.retryAfter > 0 && outcome.by === guard.accountKey) {
    return new CardLockedError(outcome.retryAfter, `绑定失败次数过多，已锁定，请${wait}后再试`);
  }
  if (outcome.retryAfter > 0 && outcome.by === guard.cardKey) {
    return context.idGiven
      ? new CardLockedError(
        outcome.retryAfter,
        `该学号的一卡通密码错误次数过多，请${wait}后再试，或持身份证到一卡通中心办理`,
      )
      : new CardLockedError(
        outcome.retryAfter,
        "该学号近期一卡通密码错误次数过多，为确认是本人，请同时填写身份证号",
        "id_number",
      );
  }
  if (outcome.retryAfter > 0) {
    return new CardLockedError(outcome.retryAfter, `绑定尝试过于频繁，请${wait}后再试`, "_form");
  }
  const what = context.idGiven ? "学号、身份证号或一卡通密码错误" : "学号或一卡通密码错误";
  return new CardError(
    "Wrong student number or card password",
    `${what}，还可尝试${outcome.remaining}次（请确认学号属于${context.schoolName}）`,
    "password",
  );
}

/** Seconds the card account's password checks stay locked, 0 when not locked. */
export function cardPasswordLockedFor(db: Db, cardAccountId: number): Promise<number> {
  return lockedFor(db, cardPasswordKey(cardAccountId));
}

/** The Chinese sentence for a failed check, telling how many tries remain or how long to wait. */
export function cardPasswordFailureMessage(
  check: { locked: boolean; remaining: number; retryAfter: number },
): string {
  if (check.locked) {
    return `一卡通密码错误次数过多，已锁定，请${
      describeWait(check.retryAfter)
    }后再试，或持身份证到一卡通中心解锁`;
  }
  return `一卡通密码错误，还可尝试${check.remaining}次`;
}
