/**
 * What cardholders do in 一卡通安全中心 with their bound card: change the card password, report
 * it lost, lift the loss (binding is bind.ts).
 */
import type { Selectable } from "kysely";
import type { Db } from "../platform/database.ts";
import { timingSafeEqual } from "../security/mod.ts";
import { notifyBlocklistChange } from "./blocklist.ts";
import { CARD_OFFICE, CardError, CardLockedError } from "./errors.ts";
import { applyLoss, applyUnloss } from "./loss.ts";
import {
  type CardDeps,
  cardPasswordFailureMessage,
  checkCardPassword,
  hashChosenCardPassword,
  idNumberHash,
  isDefaultPassword,
} from "./passwords.ts";
import { findBoundCard, insertCardEvents, listChips, loadCardAccount } from "./repository.ts";
import { newCardPasswordProblem, parseChipNumber, parseIdNumber } from "./rules.ts";
import type { CardAccountsTable } from "./tables.ts";

type CardRow = Selectable<CardAccountsTable>;

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
