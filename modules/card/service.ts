/**
 * What cardholders do in 一卡通安全中心 (bind, change the card password, report loss, lift it) and
 * what the card office does at the counter (loss, unloss, reissue, password reset, unlock, unbind).
 */
import type { Db } from "../platform/database.ts";
import {
  clearThrottle,
  forgetSignIn,
  guardedGuess,
  lockedFor,
  timingSafeEqual,
  verifyCardPassword,
} from "../security/mod.ts";
import { writeAudit } from "../staff/mod.ts";
import { findAccount, loginThrottleKey } from "../account/mod.ts";
import { notifyBlocklistChange, recordBlocklistChanges } from "./blocklist.ts";
import { CardError, CardLockedError } from "./errors.ts";
import {
  bindGuard,
  bindRefusal,
  type CardDeps,
  cardPasswordFailureMessage,
  cardPasswordKey,
  checkCardPassword,
  hashChosenCardPassword,
  idNumberHash,
  isDefaultPassword,
  matchesCardPassword,
} from "./passwords.ts";
import {
  type CardEventInput,
  findBoundCard,
  insertCardEvents,
  listChips,
  loadCardAccount,
  loadCardByStudentNumber,
} from "./repository.ts";
import {
  newCardPasswordProblem,
  parseChipNumber,
  parseIdNumber,
  parseStudentNumber,
} from "./rules.ts";
import type { CardAccountsTable } from "./tables.ts";
import type { Selectable } from "kysely";

type CardRow = Selectable<CardAccountsTable>;

const CARD_OFFICE = "请到一卡通中心办理";

let dummyHash: Promise<string> | null = null;

/** A staff member acting at the counter, for the audit log. */
export interface StaffActor {
  staffId: number;
  ip?: string | null;
}

async function boundCardRow(db: Db, accountId: number): Promise<CardRow> {
  const bound = await findBoundCard(db, accountId);
  if (!bound) throw new CardError("No card bound", "请先绑定一卡通账号", "_form");
  return (await loadCardAccount(db, bound.cardAccountId))!;
}

async function verifyOrThrow(
  db: Db,
  deps: CardDeps,
  cardAccountId: number,
  password: string,
  field = "password",
) {
  const check = await checkCardPassword(db, deps, cardAccountId, password);
  if (check.ok) return;
  const message = cardPasswordFailureMessage(check);
  if (check.locked) throw new CardLockedError(check.retryAfter, message, field);
  throw new CardError("Wrong card password", message, field);
}

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

/**
 * Changes the bound card's password: the old one must match (with the lockout); the new one is 6
 * digits, not the default, not six equal or consecutive digits, and not the old one.
 */
export async function changeCardPassword(
  db: Db,
  deps: CardDeps,
  input: { accountId: number; oldPassword: string; newPassword: string },
): Promise<void> {
  const card = await boundCardRow(db, input.accountId);
  if (card.status === "cancelled") {
    throw new CardError("Card cancelled", `该一卡通账户已注销，${CARD_OFFICE}`, "_form");
  }
  const problem = newCardPasswordProblem(input.newPassword);
  if (problem) throw new CardError("Weak card password", problem, "new_password");
  await verifyOrThrow(db, deps, card.id, input.oldPassword, "old_password");
  if (await isDefaultPassword(deps, card, input.newPassword)) {
    throw new CardError(
      "New card password is the default",
      "新密码不能是默认密码（身份证后6位）",
      "new_password",
    );
  }
  if (input.newPassword === input.oldPassword) {
    throw new CardError(
      "New card password equals the old",
      "新密码不能与原密码相同",
      "new_password",
    );
  }
  const hash = await hashChosenCardPassword(deps, input.newPassword);
  await db.transaction().execute(async (trx) => {
    await trx.updateTable("card_accounts").set({ password_hash: hash, updated_at: new Date() })
      .where("id", "=", card.id).execute();
    await insertCardEvents(trx, [{
      cardAccountId: card.id,
      kind: "password_changed",
      actor: "student",
      accountId: input.accountId,
    }]);
  });
}

/** The three things a holder proves for 挂失 and 解挂. */
export interface LossProof {
  accountId: number;
  chipNumber: string;
  idNumber: string;
  password: string;
}

async function checkProof(
  db: Db,
  deps: CardDeps,
  card: CardRow,
  proof: LossProof,
  chipAccepted: (chip: { status: string; lost_at: Date | null }) => boolean,
  wrongChip: string,
): Promise<string> {
  const chipNumber = parseChipNumber(proof.chipNumber);
  if (!chipNumber) {
    throw new CardError(
      "Bad chip number",
      "芯片卡号格式不正确，应为4-20位数字或字母",
      "chip_number",
    );
  }
  const chip = (await listChips(db, card.id)).find((c) => c.chip_number === chipNumber);
  if (!chip || !chipAccepted(chip)) {
    throw new CardError("Chip does not match", wrongChip, "chip_number");
  }
  const idNumber = parseIdNumber(proof.idNumber);
  if (!idNumber) {
    throw new CardError(
      "Bad ID number",
      "身份证号格式不正确，应为18位（最后一位可为X）",
      "id_number",
    );
  }
  if (!timingSafeEqual(await idNumberHash(deps, idNumber), card.id_number_hash)) {
    throw new CardError("ID number does not match", "身份证号与一卡通登记信息不符", "id_number");
  }
  await verifyOrThrow(db, deps, card.id, proof.password);
  return chipNumber;
}

/** Marks the card loss-reported and puts its current chip on the blocklist (inside `trx`). */
async function applyLoss(
  trx: Db,
  cardId: number,
  freezePaymentCode: boolean,
): Promise<number | null> {
  const now = new Date();
  await trx.updateTable("card_accounts")
    .set({
      status: "loss_reported",
      loss_reported_at: now,
      payment_code_frozen: freezePaymentCode,
      updated_at: now,
    })
    .where("id", "=", cardId).execute();
  const chips = await trx.updateTable("card_chips").set({ status: "lost", lost_at: now })
    .where("card_account_id", "=", cardId).where("status", "=", "active")
    .returning("chip_number").execute();
  return await recordBlocklistChanges(
    trx,
    chips.map((c) => ({ chipNumber: c.chip_number, op: "add" })),
  );
}

/** Returns the card to normal and takes its current chip off the blocklist (inside `trx`). */
async function applyUnloss(trx: Db, cardId: number): Promise<number | null> {
  await trx.updateTable("card_accounts")
    .set({
      status: "normal",
      loss_reported_at: null,
      payment_code_frozen: false,
      updated_at: new Date(),
    })
    .where("id", "=", cardId).execute();
  const chips = await trx.updateTable("card_chips").set({ status: "active" })
    .where("card_account_id", "=", cardId).where("status", "=", "lost")
    .returning("chip_number").execute();
  return await recordBlocklistChanges(
    trx,
    chips.map((c) => ({ chipNumber: c.chip_number, op: "remove" })),
  );
}

/**
 * 挂失 by the holder: the chip number of the bound card, the 身份证 and the card password. Every
 * chip of the card account goes on the blocklist; the payment code keeps working unless the
 * holder also freezes it.
 */
export async function reportLoss(
  db: Db,
  deps: CardDeps,
  proof: LossProof & { freezePaymentCode?: boolean },
): Promise<void> {
  const card = await boundCardRow(db, proof.accountId);
  if (card.status === "loss_reported") {
    throw new CardError("Already reported lost", "该卡已挂失，无需重复挂失", "_form");
  }
  if (card.status === "cancelled") {
    throw new CardError("Card cancelled", `该一卡通账户已注销，${CARD_OFFICE}`, "_form");
  }
  const chipNumber = await checkProof(
    db,
    deps,
    card,
    proof,
    (c) => c.status === "active",
    "芯片卡号与您绑定的一卡通不符（芯片卡号不是学号）",
  );
  const version = await db.transaction().execute(async (trx) => {
    const locked = await loadCardAccount(trx, card.id, true);
    if (locked?.status !== "normal") {
      throw new CardError("Already reported lost", "该卡已挂失，无需重复挂失", "_form");
    }
    const v = await applyLoss(trx, card.id, proof.freezePaymentCode === true);
    await insertCardEvents(trx, [{
      cardAccountId: card.id,
      kind: "loss_reported",
      actor: "student",
      accountId: proof.accountId,
      chipNumber,
      details: { paymentCodeFrozen: proof.freezePaymentCode === true },
    }]);
    return v;
  });
  notifyBlocklistChange(version);
}

/**
 * 解挂 by the holder: the chip number noted at the loss report (or, after a 补卡, the new chip's),
 * the 身份证 and the card password. A cancelled chip stays on the blocklist for good.
 */
export async function liftLoss(db: Db, deps: CardDeps, proof: LossProof): Promise<void> {
  const card = await boundCardRow(db, proof.accountId);
  if (card.status === "normal") {
    throw new CardError("Not reported lost", "该卡未挂失，无需解挂", "_form");
  }
  if (card.status === "cancelled") {
    throw new CardError("Card cancelled", `该一卡通账户已注销，${CARD_OFFICE}`, "_form");
  }
  const since = card.loss_reported_at?.getTime() ?? 0;
  const chipNumber = await checkProof(
    db,
    deps,
    card,
    proof,
    // The chip reported lost in this loss episode, even if replaced since, or the current chip.
    (c) =>
      c.status === "lost" ||
      (c.status === "cancelled" && c.lost_at !== null && c.lost_at.getTime() >= since),
    "芯片卡号不正确：请输入挂失时记下的芯片卡号，补卡后也可输入新卡的芯片卡号",
  );
  const version = await db.transaction().execute(async (trx) => {
    const locked = await loadCardAccount(trx, card.id, true);
    if (locked?.status !== "loss_reported") {
      throw new CardError("Not reported lost", "该卡未挂失，无需解挂", "_form");
    }
    const v = await applyUnloss(trx, card.id);
    await insertCardEvents(trx, [{
      cardAccountId: card.id,
      kind: "loss_lifted",
      actor: "student",
      accountId: proof.accountId,
      chipNumber,
    }]);
    return v;
  });
  notifyBlocklistChange(version);
}

// --- The card office's counter operations -------------------------------------------------------

/** What the audit log keeps of a card account before and after a change (no 身份证 data). */
async function snapshot(db: Db, cardId: number) {
  const card = await loadCardAccount(db, cardId);
  if (!card) return null;
  const chips = await listChips(db, cardId);
  return {
    studentNumber: card.student_number,
    name: card.name,
    status: card.status,
    accountId: card.account_id,
    passwordIsDefault: card.password_hash === null,
    paymentCodeFrozen: card.payment_code_frozen,
    chips: chips.map((c) => ({ chipNumber: c.chip_number, status: c.status })),
  };
}

async function staffChange(
  db: Db,
  actor: StaffActor,
  cardAccountId: number,
  action: string,
  change: (
    trx: Db,
    card: CardRow,
  ) => Promise<
    { version?: number | null; event: Omit<CardEventInput, "cardAccountId" | "actor" | "staffId"> }
  >,
): Promise<void> {
  const version = await db.transaction().execute(async (trx) => {
    const card = await loadCardAccount(trx, cardAccountId, true);
    if (!card) throw new CardError("No such card account", "一卡通账户不存在", "_form");
    const before = await snapshot(trx, card.id);
    const { version, event } = await change(trx, card);
    await insertCardEvents(trx, [{
      ...event,
      cardAccountId: card.id,
      actor: "staff",
      staffId: actor.staffId,
    }]);
    await writeAudit(trx, {
      staffId: actor.staffId,
      action,
      targetType: "card_account",
      targetId: card.id,
      before,
      after: await snapshot(trx, card.id),
      ip: actor.ip ?? null,
    });
    return version ?? null;
  });
  notifyBlocklistChange(version);
}

/** 挂失 at the counter (the holder showed their ID in person). */
export function staffReportLoss(db: Db, actor: StaffActor, cardAccountId: number): Promise<void> {
  return staffChange(db, actor, cardAccountId, "card.loss_reported", async (trx, card) => {
    if (card.status === "loss_reported") {
      throw new CardError("Already reported lost", "该卡已挂失", "_form");
    }
    if (card.status === "cancelled") {
      throw new CardError("Card cancelled", "该一卡通账户已注销", "_form");
    }
    return { version: await applyLoss(trx, card.id, false), event: { kind: "loss_reported" } };
  });
}

/** 解挂 at the counter. */
export function staffLiftLoss(db: Db, actor: StaffActor, cardAccountId: number): Promise<void> {
  return staffChange(db, actor, cardAccountId, "card.loss_lifted", async (trx, card) => {
    if (card.status !== "loss_reported") {
      throw new CardError("Not reported lost", "该卡未挂失", "_form");
    }
    return { version: await applyUnloss(trx, card.id), event: { kind: "loss_lifted" } };
  });
}

/**
 * Issues a new chip inside `trx`: the current chip is cancelled for good (and stays on the
 * blocklist); the new one is active, or lost while the card is loss-reported (the holder lifts
 * the loss with it). Nothing moves in the wallet: the balance belongs to the card account.
 */
export async function replaceChip(trx: Db, card: CardRow, newChip: string): Promise<number | null> {
  const taken = await trx.selectFrom("card_chips").select("card_account_id").where(
    "chip_number",
    "=",
    newChip,
  )
    .executeTakeFirst();
  if (taken) {
    throw new CardError(
      "Chip number taken",
      "该芯片卡号已被使用，请核对新卡的芯片卡号",
      "chip_number",
    );
  }
  const now = new Date();
  const old = await trx.selectFrom("card_chips").select(["id", "chip_number", "status"])
    .where("card_account_id", "=", card.id).where("status", "<>", "cancelled").execute();
  await trx.updateTable("card_chips").set({ status: "cancelled", cancelled_at: now })
    .where("card_account_id", "=", card.id).where("status", "<>", "cancelled").execute();
  const lost = card.status === "loss_reported";
  await trx.insertInto("card_chips").values({
    card_account_id: card.id,
    chip_number: newChip,
    status: lost ? "lost" : "active",
    lost_at: lost ? now : null,
  }).execute();
  // A lost chip is listed already; an active one joins the list now, for good.
  const changes: Array<{ chipNumber: string; op: "add" | "remove" }> = old
    .filter((o) => o.status === "active").map((o) => ({ chipNumber: o.chip_number, op: "add" }));
  if (lost) changes.push({ chipNumber: newChip, op: "add" });
  return await recordBlocklistChanges(trx, changes);
}

/** 补卡 at the counter: a new chip for the same card account. */
export function reissueCard(
  db: Db,
  actor: StaffActor,
  cardAccountId: number,
  rawChip: string,
): Promise<void> {
  const chipNumber = parseChipNumber(rawChip);
  if (!chipNumber) {
    return Promise.reject(
      new CardError("Bad chip number", "芯片卡号格式不正确，应为4-20位数字或字母", "chip_number"),
    );
  }
  return staffChange(db, actor, cardAccountId, "card.reissued", async (trx, card) => {
    if (card.status === "cancelled") {
      throw new CardError("Card cancelled", "该一卡通账户已注销，不能补卡", "_form");
    }
    return {
      version: await replaceChip(trx, card, chipNumber),
      event: { kind: "reissued", chipNumber },
    };
  });
}

/** Resets the card password to the default (last 6 of the 身份证) and lifts its lockout. */
export function resetCardPassword(db: Db, actor: StaffActor, cardAccountId: number): Promise<void> {
  return staffChange(db, actor, cardAccountId, "card.password_reset", async (trx, card) => {
    await trx.updateTable("card_accounts").set({ password_hash: null, updated_at: new Date() })
      .where("id", "=", card.id).execute();
    await clearThrottle(trx, cardPasswordKey(card.id));
    return { event: { kind: "password_reset" } };
  });
}

/** Lifts the card-password lockout. */
export function unlockCardPassword(
  db: Db,
  actor: StaffActor,
  cardAccountId: number,
): Promise<void> {
  return staffChange(db, actor, cardAccountId, "card.password_unlocked", async (trx, card) => {
    const wait = await lockedFor(trx, cardPasswordKey(card.id));
    if (wait === 0) throw new CardError("Not locked", "该卡的一卡通密码未被锁定", "_form");
    await clearThrottle(trx, cardPasswordKey(card.id));
    return { event: { kind: "password_unlocked" } };
  });
}

/** Releases the card account from its login account (the holder asked at the counter). */
export function unbindCard(db: Db, actor: StaffActor, cardAccountId: number): Promise<void> {
  return staffChange(db, actor, cardAccountId, "card.unbound", async (trx, card) => {
    if (card.account_id === null) {
      throw new CardError("Not bound", "该一卡通账户未绑定一信通账号", "_form");
    }
    await trx.updateTable("card_accounts").set({
      account_id: null,
      bound_at: null,
      updated_at: new Date(),
    })
      .where("id", "=", card.id).execute();
    return { event: { kind: "unbound", accountId: card.account_id } };
  });
}

/**
 * 销户 at the counter: the card account is cancelled for good. Every chip is cancelled (the active
 * one joins the readers' blocklist), the login account is unbound, and `settle(trx, cardAccountId)`
 * runs first in the same transaction (the wallet pays the balance out; if it refuses, nothing
 * changes). Returns what `settle` returned.
 */
export async function closeCardAccount<T>(
  db: Db,
  actor: StaffActor,
  cardAccountId: number,
  reason: string,
  settle: (trx: Db, cardAccountId: number) => Promise<T>,
): Promise<T> {
  let settled: T | undefined;
  await staffChange(db, actor, cardAccountId, "card.closed", async (trx, card) => {
    if (card.status === "cancelled") {
      throw new CardError("Card cancelled", "该一卡通账户已注销", "_form");
    }
    settled = await settle(trx, card.id);
    const now = new Date();
    const chips = await trx.selectFrom("card_chips").select(["chip_number", "status"])
      .where("card_account_id", "=", card.id).where("status", "<>", "cancelled").execute();
    await trx.updateTable("card_chips").set({ status: "cancelled", cancelled_at: now })
      .where("card_account_id", "=", card.id).where("status", "<>", "cancelled").execute();
    await trx.updateTable("card_accounts").set({
      status: "cancelled",
      account_id: null,
      bound_at: null,
      updated_at: now,
    }).where("id", "=", card.id).execute();
    // A lost chip is listed already; the active one joins the list now, for good.
    const version = await recordBlocklistChanges(
      trx,
      chips.filter((c) => c.status === "active").map((c) => ({
        chipNumber: c.chip_number,
        op: "add" as const,
      })),
    );
    return {
      version,
      event: {
        kind: "closed",
        accountId: card.account_id,
        details: { reason: reason.slice(0, 200) },
      },
    };
  });
  return settled as T;
}

/** Lifts the sign-in lockout of the login account bound to this card (the holder is at the counter). */
export function unlockBoundLogin(db: Db, actor: StaffActor, cardAccountId: number): Promise<void> {
  return staffChange(db, actor, cardAccountId, "account.login_unlocked", async (trx, card) => {
    const account = card.account_id === null ? null : await findAccount(trx, card.account_id);
    if (!account) throw new CardError("Not bound", "该一卡通账户未绑定一信通账号", "_form");
    const key = loginThrottleKey(account.phone);
    if (await lockedFor(trx, key) === 0) {
      throw new CardError("Login not locked", "该一信通账号的登录未被锁定", "_form");
    }
    await forgetSignIn(trx, key);
    return { event: { kind: "login_unlocked", accountId: account.id } };
  });
}

/** Seconds the bound login account's sign-in stays locked, 0 when not locked or not bound. */
export async function boundLoginLockedFor(db: Db, accountId: number | null): Promise<number> {
  const account = accountId === null ? null : await findAccount(db, accountId);
  return account ? await lockedFor(db, loginThrottleKey(account.phone)) : 0;
}
