/**
 * What 挂失 and 解挂 change, whoever asks (the holder in 安全中心 or the card office at the
 * counter): the card's status, its chips, and the readers' blocklist, inside the caller's
 * transaction.
 */
import type { Db } from "../platform/database.ts";
import { endWechatLoginOnLoss } from "../account/mod.ts";
import { recordBlocklistChanges } from "./blocklist.ts";
import "./tables.ts";

/**
 * Marks the card loss-reported, puts its current chip on the blocklist and, as its holder chose,
 * ends their WeChat sign-in (inside `trx`).
 */
export async function applyLoss(
  trx: Db,
  cardId: number,
  freezePaymentCode: boolean,
): Promise<number | null> {
  const now = new Date();
  const card = await trx.updateTable("card_accounts")
    .set({
      status: "loss_reported",
      loss_reported_at: now,
      payment_code_frozen: freezePaymentCode,
      updated_at: now,
    })
    .where("id", "=", cardId).returning("account_id").executeTakeFirst();
  // The holder's WeChat sign-in ends with the loss, unless they chose to keep it (我的 → 微信登录).
  if (card?.account_id) await endWechatLoginOnLoss(trx, card.account_id);
  const chips = await trx.updateTable("card_chips").set({ status: "lost", lost_at: now })
    .where("card_account_id", "=", cardId).where("status", "=", "active")
    .returning("chip_number").execute();
  return await recordBlocklistChanges(
    trx,
    chips.map((c) => ({ chipNumber: c.chip_number, op: "add" })),
  );
}

/** Returns the card to normal and takes its current chip off the blocklist (inside `trx`). */
export async function applyUnloss(trx: Db, cardId: number): Promise<number | null> {
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
