import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { DomainError } from "../platform/errors.ts";
import { formatFen } from "../platform/money.ts";
import { randomDigits } from "../platform/crypto.ts";
import { chinaDayStart, chinaDigits } from "../platform/china_time.ts";
import { findBoundCard } from "../card/mod.ts";
import { BalanceTooLowError, LimitError, NoCardError, NoRoomError } from "./errors.ts";
import {
  DEFAULT_POLICY,
  markDeclined,
  markPaid,
  payReference,
  transferDetails,
  type UtilityMoney,
  wakeDeliveryWorkers,
} from "./delivery.ts";
import { findResidence, roomLabel } from "./rooms.ts";
import { currentTariff } from "./tariffs.ts";
import type { PurchaseStatus, Utility } from "./tables.ts";
import "./tables.ts";

/** Limits of one utility purchase, in fen. The daily limit is per account and utility (China time). */
export const LIMITS = {
  minAmount: 100,
  maxAmount: 50_000,
  dailyAmount: 100_000,
} as const;

/** Quick amounts offered on the pages, in fen. */
export const QUICK_AMOUNTS = [1_000, 2_000, 5_000, 10_000, 20_000, 30_000];

export const UTILITY_LABELS: Record<Utility, string> = { electricity: "电费", water: "冷水" };

export const STATUS_LABELS: Record<PurchaseStatus, string> = {
  paying: "支付中",
  declined: "未支付",
  delivering: "充值中",
  delivered: "已到账",
  refunded: "已退款",
};

/** A purchase as pages and other modules see it. */
export interface Purchase {
  id: number;
  orderNo: string;
  accountId: number;
  payerName: string;
  roomId: number;
  room: string;
  utility: Utility;
  amount: number;
  tariffId: number;
  fenPerUnit: number;
  milliUnits: number;
  status: PurchaseStatus;
  createdAt: Date;
  deliveredAt: Date | null;
  refundedAt: Date | null;
}

const PURCHASE_COLUMNS = [
  "id",
  "order_no as orderNo",
  "account_id as accountId",
  "payer_name as payerName",
  "room_id as roomId",
  "room_label as room",
  "utility",
  "amount",
  "tariff_id as tariffId",
  "fen_per_unit as fenPerUnit",
  "milli_units as milliUnits",
  "status",
  "created_at as createdAt",
  "delivered_at as deliveredAt",
  "refunded_at as refundedAt",
] as const;

/** A form token: random, URL-safe, 16–64 characters. */
export const FORM_TOKEN_RE = /^[A-Za-z0-9_-]{16,64}$/;

function newOrderNo(utility: Utility, now: Date): string {
  return `${utility === "electricity" ? "DF" : "SF"}${chinaDigits(now)}${randomDigits(6)}`;
}

/** What `payUtility` needs to know about the payer. */
export interface Payer {
  accountId: number;
  cardAccountId: number;
  name: string;
}

/**
 * Pays a room's utility account from the payer's card balance and queues its delivery to the
 * meter system. `token` is the form's one-time token: submitting the same form again returns
 * the first purchase and moves no money twice.
 */
export async function purchaseUtility(
  db: Db,
  money: UtilityMoney,
  input: { payer: Payer; utility: Utility; amount: number; token: string; now?: Date },
): Promise<Purchase> {
  const { payer, utility, amount } = input;
  const now = input.now ?? new Date();
  if (!FORM_TOKEN_RE.test(input.token)) {
    throw new DomainError("Bad form token", "页面已过期，请刷新页面后重试");
  }
  if (!Number.isSafeInteger(amount) || amount < LIMITS.minAmount) {
    throw new LimitError(
      `Amount ${amount} below minimum`,
      `单笔充值金额不能低于 ${formatFen(LIMITS.minAmount)}`,
    );
  }
  if (amount > LIMITS.maxAmount) {
    throw new LimitError(
      `Amount ${amount} above maximum`,
      `单笔充值金额不能超过 ${formatFen(LIMITS.maxAmount)}`,
    );
  }
  const room = await findResidence(db, payer.accountId);
  if (!room) throw new NoRoomError();
  const tariff = await currentTariff(db, utility);

  const created = await db.transaction().execute(async (trx) => {
    // One payer's submissions queue here, so the daily total cannot be passed by racing forms.
    await trx.selectFrom("billing_residents").select("account_id")
      .where("account_id", "=", payer.accountId).forUpdate().executeTakeFirst();
    const existing = await trx.selectFrom("billing_purchases").select(PURCHASE_COLUMNS)
      .where("account_id", "=", payer.accountId).where("form_token", "=", input.token)
      .executeTakeFirst();
    if (existing) return { purchase: existing, fresh: false };
    const { total } = await trx.selectFrom("billing_purchases")
      .select(sql<number>`coalesce(sum(amount), 0)`.as("total"))
      .where("account_id", "=", payer.accountId).where("utility", "=", utility)
      .where("created_at", ">=", chinaDayStart(now))
      .where("status", "in", ["paying", "delivering", "delivered"]).executeTakeFirstOrThrow();
    if (Number(total) + amount > LIMITS.dailyAmount) {
      const left = Math.max(0, LIMITS.dailyAmount - Number(total));
      throw new LimitError(
        `Daily ${utility} limit reached`,
        `超过每日充值限额 ${formatFen(LIMITS.dailyAmount)}，今日还可充值 ${formatFen(left)}`,
      );
    }
    const purchase = await trx.insertInto("billing_purchases").values({
      order_no: newOrderNo(utility, now),
      account_id: payer.accountId,
      form_token: input.token,
      card_account_id: payer.cardAccountId,
      payer_name: payer.name,
      room_id: room.id,
      room_label: roomLabel(room),
      utility,
      amount,
      tariff_id: tariff.id,
      fen_per_unit: tariff.fenPerUnit,
      milli_units: Math.floor((amount * 1000) / tariff.fenPerUnit),
      status: "paying",
      created_at: now,
    }).returning(PURCHASE_COLUMNS).executeTakeFirstOrThrow();
    await trx.insertInto("billing_delivery_jobs").values({
      purchase_id: purchase.id,
      state: "paying",
      next_attempt_at: new Date(now.getTime() + DEFAULT_POLICY.payingGraceMs),
      updated_at: now,
    }).execute();
    return { purchase, fresh: true };
  });

  const p = created.purchase;
  if (!created.fresh) {
    if (p.status === "declined") throw new BalanceTooLowError(null);
    return p;
  }
  try {
    const paid = await money.pay(db, {
      cardAccountId: payer.cardAccountId,
      amount,
      utility,
      reference: payReference(p.orderNo),
      details: transferDetails({
        order_no: p.orderNo,
        utility,
        room_id: p.roomId,
        room_label: p.room,
        tariff_id: p.tariffId,
        milli_units: p.milliUnits,
      }),
    });
    await markPaid(db, p.id, paid.transferId, now);
  } catch (err) {
    if (money.isInsufficientFunds(err)) {
      await markDeclined(db, p.id, now);
      const balance = (err as { balance?: unknown }).balance;
      throw new BalanceTooLowError(typeof balance === "number" ? balance : null);
    }
    if (err instanceof DomainError) {
      // Any other refusal of the wallet is final too, and moved no money.
      await markDeclined(db, p.id, now);
      throw err;
    }
    // Anything else leaves the purchase paying: the delivery worker finishes it with the same reference.
    throw err;
  }
  wakeDeliveryWorkers();
  return (await findPurchase(db, p.id))!;
}

/**
 * `purchaseUtility` paid from the card bound to the login account: refused without a bound card
 * (NoCardError) or with a cancelled one.
 */
export async function purchaseFromBoundCard(
  db: Db,
  money: UtilityMoney,
  input: { accountId: number; utility: Utility; amount: number; token: string },
): Promise<Purchase> {
  const card = await findBoundCard(db, input.accountId);
  if (!card) throw new NoCardError();
  if (card.status === "cancelled") {
    throw new DomainError(
      "Card account cancelled",
      "该一卡通账户已注销，请到一卡通中心办理",
      "amount",
    );
  }
  const payer = { accountId: input.accountId, cardAccountId: card.cardAccountId, name: card.name };
  const { utility, amount, token } = input;
  return await purchaseUtility(db, money, { payer, utility, amount, token });
}

/** One purchase by id, or null. */
export async function findPurchase(db: Db, id: number): Promise<Purchase | null> {
  if (!Number.isSafeInteger(id) || id <= 0) return null;
  return (await db.selectFrom("billing_purchases").select(PURCHASE_COLUMNS).where("id", "=", id)
    .executeTakeFirst()) ?? null;
}

/** One purchase by order number, or null. */
export async function findPurchaseByOrderNo(db: Db, orderNo: string): Promise<Purchase | null> {
  return (await db.selectFrom("billing_purchases").select(PURCHASE_COLUMNS)
    .where("order_no", "=", orderNo).executeTakeFirst()) ?? null;
}

/** A room account's purchases, newest first: who paid what, in what state (paid ones only). */
export async function roomHistory(
  db: Db,
  roomId: number,
  utility: Utility,
  limit = 20,
): Promise<Purchase[]> {
  return await db.selectFrom("billing_purchases").select(PURCHASE_COLUMNS)
    .where("room_id", "=", roomId).where("utility", "=", utility)
    .where("status", "in", ["delivering", "delivered", "refunded"])
    .orderBy("id", "desc").limit(limit).execute();
}

/** The meter system's last report of a room account's remaining credit, or null if none yet. */
export async function roomMeter(
  db: Db,
  roomId: number,
  utility: Utility,
): Promise<{ balance: number; reportedAt: Date } | null> {
  const row = await db.selectFrom("billing_room_meters").select(["balance", "reported_at"])
    .where("room_id", "=", roomId).where("utility", "=", utility).executeTakeFirst();
  return row ? { balance: row.balance, reportedAt: row.reported_at } : null;
}

/** How a wallet transfer made by billing reads in 交易记录. */
export interface UtilityTransferLabel {
  /** "电费" or "冷水". */
  label: string;
  room: string;
  status: PurchaseStatus;
  /** "充值中", "已到账", "已退款". */
  statusLabel: string;
  orderNo: string;
}

/**
 * Labels for wallet transfers by id (the utility payment and its refund); ids billing does not
 * know are left out. For 交易记录: 电费/冷水, the room, and the purchase's state now.
 */
export async function describeUtilityTransfers(
  db: Db,
  transferIds: number[],
): Promise<Map<number, UtilityTransferLabel>> {
  const ids = [...new Set(transferIds.filter((id) => Number.isSafeInteger(id) && id > 0))];
  const out = new Map<number, UtilityTransferLabel>();
  if (ids.length === 0) return out;
  const rows = await db.selectFrom("billing_purchases")
    .select(["order_no", "utility", "room_label", "status", "transfer_id", "refund_transfer_id"])
    .where((eb) => eb.or([eb("transfer_id", "in", ids), eb("refund_transfer_id", "in", ids)]))
    .execute();
  for (const r of rows) {
    const base = {
      room: r.room_label,
      status: r.status,
      statusLabel: STATUS_LABELS[r.status],
      orderNo: r.order_no,
    };
    if (r.transfer_id !== null) {
      out.set(r.transfer_id, { label: UTILITY_LABELS[r.utility], ...base });
    }
    if (r.refund_transfer_id !== null) {
      out.set(r.refund_transfer_id, { label: `${UTILITY_LABELS[r.utility]}退款`, ...base });
    }
  }
  for (const id of [...out.keys()]) if (!ids.includes(id)) out.delete(id);
  return out;
}

/** Masks a payer's name for roommates: 张三 → 张*, 欧阳娜娜 → 欧***. */
export function maskName(name: string): string {
  const chars = [...name];
  return chars.length <= 1 ? name : chars[0] + "*".repeat(chars.length - 1);
}
