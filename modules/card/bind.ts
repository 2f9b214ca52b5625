/** 一卡通账号绑定: a login account takes its card account, proven by the card password. */
import type { Db } from "../platform/database.ts";
import { guardedGuess, lockedFor, timingSafeEqual, verifyCardPassword } from "../security/mod.ts";
import { findAccount } from "../account/mod.ts";
import { CARD_OFFICE, CardError, CardLockedError } from "./errors.ts";
import {
  bindGuard,
  bindRefusal,
  type CardDeps,
  cardPasswordFailureMessage,
  cardPasswordKey,
  hashChosenCardPassword,
  idNumberHash,
  matchesCardPassword,
} from "./passwords.ts";
import { findBoundCard, insertCardEvents, loadCardByStudentNumber } from "./repository.ts";
import { parseIdNumber, parseStudentNumber } from "./rules.ts";

let dummyHash: Promise<string> | null = null;

/**
 * Binds the card account with that 学号 (in the login account's school) to the login account,
 * after checking its card password. A wrong password and an unknown 学号 get the same answer, so
 * the page cannot tell which 学号 exist. Failures count against the login account and address
 * trying and the card's bind budget (security's BIND_RULE), never the holder's own counter that
 * readers use: once strangers spend a card's bind budget, its owner binds with the 身份证 too.
 */
export async function bindCard(
  db: Db,
  deps: CardDeps,
  input: {
    accountId: number;
    studentNumber: string;
    password: string;
    idNumber?: string;
    ip?: string;
  },
): Promise<{ cardAccountId: number }> {
  const account = await findAccount(db, input.accountId);
  if (!account) throw new CardError("No such login account", "请重新登录后再试", "_form");
  if (await findBoundCard(db, account.id)) {
    throw new CardError(
      "Account already has a card",
      `您已绑定一卡通账号，如需更换${CARD_OFFICE}`,
      "_form",
    );
  }
  const studentNumber = parseStudentNumber(input.studentNumber);
  if (!studentNumber) {
    throw new CardError(
      "Bad student number",
      "学号格式不正确，应为4-20位数字或字母",
      "student_number",
    );
  }
  const idGiven = (input.idNumber ?? "").trim() !== "";
  const idNumber = idGiven ? parseIdNumber(input.idNumber!) : null;
  if (idGiven && !idNumber) {
    throw new CardError("Bad id number", "身份证号格式不正确，应为18位", "id_number");
  }

  const card = await loadCardByStudentNumber(db, account.schoolId, studentNumber);
  // The holder's own lock (readers, the bound account's pages) holds here too; strangers binding
  // cannot set it, only someone with the card or the bound account.
  const holderWait = card ? await lockedFor(db, cardPasswordKey(card.id)) : 0;
  if (holderWait > 0) {
    throw new CardLockedError(
      holderWait,
      cardPasswordFailureMessage({ locked: true, remaining: 0, retryAfter: holderWait }),
    );
  }
  const proven = card != null && idNumber !== null &&
    timingSafeEqual(await idNumberHash(deps, idNumber), card.id_number_hash);
  const guard = bindGuard({
    accountId: account.id,
    ip: input.ip ?? "local",
    // An unknown 学号 has a budget of its own, so it behaves exactly like a real one.
    cardKey: card
      ? `card-bind:${card.id}`
      : `card-bind:unknown:${account.schoolId}:${studentNumber}`,
    // A wrong 身份证 is no guess at this card's password: it does not spend the owner's budget.
    withCard: !idGiven || proven,
    proven,
  });
  const outcome = await guardedGuess(db, guard, async () => {
    const ok = card ? await matchesCardPassword(deps, card, input.password) : false;
    // One Argon2id verification on every path, so the answer's timing does not tell an unknown
    // 学号 from a known one, a default password from a chosen one, nor a wrong 身份证.
    if (!card || card.password_hash === null) {
      dummyHash ??= hashChosenCardPassword(deps, "dummy-card-password");
      await verifyCardPassword(await dummyHash, input.password, deps.config.cardPepper);
    }
    return ok && (!idGiven || proven);
  });
  if (!outcome.ok) throw bindRefusal(outcome, guard, { idGiven, schoolName: account.schoolName });
  if (!card) throw new Error("Cannot bind: a right password without a card account");
  if (card.status === "cancelled") {
    throw new CardError("Card account cancelled", `该一卡通账户已注销，${CARD_OFFICE}`, "_form");
  }
  if (card.account_id !== null) {
    throw new CardError(
      "Card already bound",
      `该一卡通账号已被其他一信通账号绑定，${CARD_OFFICE}`,
      "_form",
    );
  }
  try {
    await db.transaction().execute(async (trx) => {
      const r = await trx.updateTable("card_accounts")
        .set({ account_id: account.id, bound_at: new Date(), updated_at: new Date() })
        .where("id", "=", card.id).where("account_id", "is", null).executeTakeFirst();
      if (Number(r.numUpdatedRows) !== 1) {
        throw new CardError(
          "Card already bound",
          `该一卡通账号已被其他一信通账号绑定，${CARD_OFFICE}`,
          "_form",
        );
      }
      await insertCardEvents(trx, [{
        cardAccountId: card.id,
        kind: "bound",
        actor: "student",
        accountId: account.id,
      }]);
    });
  } catch (err) {
    if ((err as { code?: string }).code === "23505") {
      throw new CardError(
        "Account already has a card",
        `您已绑定一卡通账号，如需更换${CARD_OFFICE}`,
        "_form",
      );
    }
    throw err;
  }
  return { cardAccountId: card.id };
}
