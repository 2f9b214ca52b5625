/**
 * What the card office does at the counter: 挂失, 解挂, 补卡, password reset and unlock, unbind,
 * 销户, the bound login's unlock. Each change runs in one transaction with its card event and
 * audit record, and tells the readers when the blocklist moved.
 */
import type { Selectable } from "kysely";
import type { Db } from "../platform/database.ts";
import { clearThrottle, forgetSignIn, lockedFor } from "../security/mod.ts";
import { writeAudit } from "../staff/mod.ts";
import { findAccount, loginThrottleKey } from "../account/mod.ts";
import {
  type BlocklistChange,
  notifyBlocklistChange,
  recordBlocklistChanges,
} from "./blocklist.ts";
import { CardError } from "./errors.ts";
import { applyLoss, applyUnloss } from "./loss.ts";
import { cardPasswordKey } from "./passwords.ts";
import { type CardEventInput, insertCardEvents, listChips, loadCardAccount } from "./repository.ts";
import { parseChipNumber } from "./rules.ts";
import type { CardAccountsTable } from "./tables.ts";

type CardRow = Selectable<CardAccountsTable>;

/** A staff member acting at the counter, for the audit log. */
export interface StaffActor {
  staffId: number;
  ip?: string | null;
}

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
    cardTypeId: Number(card.card_type_id),
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
  ) => Promise<{
    version?: number | null;
    /** Blocklist changes to record last, just before the commit (the head row's lock is short). */
    blocklist?: BlocklistChange[];
    event: Omit<CardEventInput, "cardAccountId" | "actor" | "staffId">;
  }>,
): Promise<void> {
  const version = await db.transaction().execute(async (trx) => {
    const card = await loadCardAccount(trx, cardAccountId, true);
    if (!card) throw new CardError("No such card account", "一卡通账户不存在", "_form");
    const before = await snapshot(trx, card.id);
    const { version, blocklist, event } = await change(trx, card);
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
    return version ?? await recordBlocklistChanges(trx, blocklist ?? []);
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

/** What a 补卡 would do: the new chip (normalised) and the chip it cancels for good. */
export interface ReissuePlan {
  chipNumber: string;
  oldChip: string | null;
}

/**
 * Checks a 补卡 before anyone is asked to confirm it (and again inside the change): the number's
 * format, the card still open, and the number on no card yet. Changes nothing.
 */
export async function checkReissue(
  db: Db,
  cardAccountId: number,
  rawChip: string,
): Promise<ReissuePlan> {
  const chipNumber = parseChipNumber(rawChip);
  if (!chipNumber) {
    throw new CardError(
      "Bad chip number",
      "芯片卡号格式不正确，应为4-20位数字或字母",
      "chip_number",
    );
  }
  const card = await loadCardAccount(db, cardAccountId);
  if (!card) throw new CardError("No such card account", "一卡通账户不存在", "_form");
  if (card.status === "cancelled") {
    throw new CardError("Card cancelled", "该一卡通账户已注销，不能补卡", "_form");
  }
  const chips = await listChips(db, cardAccountId);
  if (chips.some((c) => c.chip_number === chipNumber)) {
    throw new CardError(
      "Chip number taken",
      chips.some((c) => c.chip_number === chipNumber && c.status !== "cancelled")
        ? "这是该卡当前的芯片卡号，请输入新卡的芯片卡号"
        : "该芯片卡号是本卡已注销的旧卡，请输入新卡的芯片卡号",
      "chip_number",
    );
  }
  const taken = await db.selectFrom("card_chips").select("card_account_id")
    .where("chip_number", "=", chipNumber).executeTakeFirst();
  if (taken) {
    throw new CardError(
      "Chip number taken",
      "该芯片卡号已被使用，请核对新卡的芯片卡号",
      "chip_number",
    );
  }
  return {
    chipNumber,
    oldChip: chips.find((c) => c.status !== "cancelled")?.chip_number ?? null,
  };
}

/** 补卡 at the counter: a new chip for the same card account. */
export async function reissueCard(
  db: Db,
  actor: StaffActor,
  cardAccountId: number,
  rawChip: string,
): Promise<void> {
  const { chipNumber } = await checkReissue(db, cardAccountId, rawChip);
  await staffChange(db, actor, cardAccountId, "card.reissued", async (trx, card) => {
    if (card.status === "cancelled") {
      throw new CardError("Card cancelled", "该一卡通账户已注销，不能补卡", "_form");
    }
    return {
      version: await replaceChip(trx, card, chipNumber),
      event: { kind: "reissued", chipNumber },
    };
  });
}

/**
 * A dangerous counter operation (解绑, 销户) goes ahead only when the clerk typed the card's 学号:
 * the holder in front of them is the card on screen.
 */
export async function checkTypedStudentNumber(
  db: Db,
  cardAccountId: number,
  typed: unknown,
): Promise<void> {
  const card = await loadCardAccount(db, cardAccountId);
  if (!card) throw new CardError("No such card account", "一卡通账户不存在", "_form");
  const text = typeof typed === "string" ? typed.normalize("NFKC").trim().toUpperCase() : "";
  if (text !== card.student_number.toUpperCase()) {
    throw new CardError("Student number not confirmed", "请输入该卡的学号以确认", "confirm");
  }
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

/**
 * Moves the card to another 卡类别 (its limits, 补助 and prices from the next payment on; the
 * holder's 身份 follows the type). Payments already made keep the price they were charged.
 */
export function changeCardType(
  db: Db,
  actor: StaffActor,
  cardAccountId: number,
  cardTypeId: number,
): Promise<void> {
  return staffChange(db, actor, cardAccountId, "card.type_changed", async (trx, card) => {
    if (card.status === "cancelled") {
      throw new CardError("Card cancelled", "该一卡通账户已注销", "card_type_id");
    }
    // Shared lock: a 删除卡类别 running now either finished (the type is gone: refused here) or
    // waits until this card uses the type (and then refuses to delete it).
    const type = Number.isSafeInteger(cardTypeId)
      ? await trx.selectFrom("card_types").select(["id", "name", "kind"])
        .where("id", "=", cardTypeId).forShare().executeTakeFirst()
      : undefined;
    if (!type) throw new CardError("No such card type", "请选择卡类别", "card_type_id");
    if (Number(card.card_type_id) === Number(type.id)) {
      throw new CardError("Same card type", `该卡已是${type.name}`, "card_type_id");
    }
    await trx.updateTable("card_accounts")
      .set({ card_type_id: Number(type.id), kind: type.kind, updated_at: new Date() })
      .where("id", "=", card.id).execute();
    return { event: { kind: "type_changed", details: { cardType: type.name } } };
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
    return {
      // A lost chip is listed already; the active one joins the list now, for good.
      blocklist: chips.filter((c) => c.status === "active").map((c) => ({
        chipNumber: c.chip_number,
        op: "add" as const,
      })),
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
