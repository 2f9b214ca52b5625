/**
 * 微信登录: the WeChat (服务号 openid) an account signs in with from the 服务号 menu. Bound only
 * after a password sign-in inside WeChat; one WeChat per account and one account per WeChat (a
 * WeChat that signs in to another account moves there); released by 解除微信绑定, and by a
 * password change or a 挂失 when the student keeps those switches on. Every change is a security
 * event (a notice to the student) in the same transaction. The notifier sends WeChat messages to
 * this openid.
 */
import type { Db } from "../platform/database.ts";
import { recordAccountEvent } from "./events.ts";
import "./tables.ts";

/** An account's WeChat sign-in, as 我的 shows it. */
export interface WechatLogin {
  openid: string;
  boundAt: Date;
  endOnPasswordChange: boolean;
  endOnLoss: boolean;
}

/** The account's WeChat sign-in, or null. */
export async function wechatLoginOf(db: Db, accountId: number): Promise<WechatLogin | null> {
  const row = await db.selectFrom("account_wechat")
    .select(["openid", "bound_at", "end_on_password_change", "end_on_loss"])
    .where("account_id", "=", accountId).executeTakeFirst();
  return row
    ? {
      openid: row.openid,
      boundAt: row.bound_at,
      endOnPasswordChange: row.end_on_password_change,
      endOnLoss: row.end_on_loss,
    }
    : null;
}

/** The account a WeChat signs in as, or null. */
export async function accountOfOpenid(db: Db, openid: string): Promise<number | null> {
  const row = await db.selectFrom("account_wechat").select("account_id")
    .where("openid", "=", openid).executeTakeFirst();
  return row?.account_id ?? null;
}

/** The openids of those accounts that have one (for WeChat messages). */
export async function openidsOf(db: Db, accountIds: number[]): Promise<Map<number, string>> {
  if (accountIds.length === 0) return new Map();
  const rows = await db.selectFrom("account_wechat").select(["account_id", "openid"])
    .where("account_id", "in", [...new Set(accountIds)]).execute();
  return new Map(rows.map((r) => [r.account_id, r.openid]));
}

async function release(
  trx: Db,
  accountId: number,
  why: "student" | "password_change" | "loss" | "moved",
): Promise<boolean> {
  const gone = await trx.deleteFrom("account_wechat").where("account_id", "=", accountId)
    .returning("openid").executeTakeFirst();
  if (!gone) return false;
  await recordAccountEvent(trx, {
    accountId,
    kind: "wechat_unbound",
    actor: "student",
    details: { why },
  });
  return true;
}

/**
 * Binds `openid` for sign-in to the account (after its password sign-in inside WeChat): the
 * account's earlier WeChat, and the openid's earlier account, are released.
 */
export async function bindWechatLogin(db: Db, accountId: number, openid: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const current = await trx.selectFrom("account_wechat").select(["account_id", "openid"])
      .where((eb) => eb.or([eb("account_id", "=", accountId), eb("openid", "=", openid)]))
      .forUpdate().execute();
    if (current.some((r) => r.account_id === accountId && r.openid === openid)) return;
    for (const r of current) {
      await release(trx, r.account_id, r.account_id === accountId ? "student" : "moved");
    }
    await trx.insertInto("account_wechat").values({ account_id: accountId, openid }).execute();
    await recordAccountEvent(trx, { accountId, kind: "wechat_bound", actor: "student" });
  });
}

/** 解除微信绑定: false when there was none. */
export async function unbindWechatLogin(db: Db, accountId: number): Promise<boolean> {
  return await db.transaction().execute((trx) => release(trx, accountId, "student"));
}

/** The student's choice: does a password change, or a 挂失, end the WeChat sign-in? */
export async function setWechatLoginEndings(
  db: Db,
  accountId: number,
  endings: { onPasswordChange: boolean; onLoss: boolean },
): Promise<boolean> {
  const r = await db.updateTable("account_wechat").set({
    end_on_password_change: endings.onPasswordChange,
    end_on_loss: endings.onLoss,
  }).where("account_id", "=", accountId).executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

/** Inside a password change's transaction: ends the WeChat sign-in if the student chose so. */
export async function endWechatLoginOnPasswordChange(trx: Db, accountId: number): Promise<void> {
  const row = await trx.selectFrom("account_wechat").select("end_on_password_change")
    .where("account_id", "=", accountId).executeTakeFirst();
  if (row?.end_on_password_change) await release(trx, accountId, "password_change");
}

/** Inside a 挂失's transaction: ends the WeChat sign-in of the card's account if it chose so. */
export async function endWechatLoginOnLoss(trx: Db, accountId: number): Promise<void> {
  const row = await trx.selectFrom("account_wechat").select("end_on_loss")
    .where("account_id", "=", accountId).executeTakeFirst();
  if (row?.end_on_loss) await release(trx, accountId, "loss");
}
