/**
 * A top-up order's life: opened with the limits checked, paid (credited exactly once), asked
 * about while pending, closed when it expires or the payer gives up.
 */
import { sql } from "kysely";
import type { Selectable } from "kysely";
import type { Db } from "../platform/database.ts";
import { formatFen, parseYuan } from "../platform/money.ts";
import { randomDigits } from "../platform/crypto.ts";
import { chinaDayStart, chinaDigits } from "../platform/china_time.ts";
import { logger } from "../platform/log.ts";
import { findBoundCard } from "../card/mod.ts";
import { creditTopUp, getTransaction } from "../wallet/mod.ts";
import { GatewayError, type GatewayOrder, type PaymentStart } from "./gateway.ts";
import {
  type Gateways,
  ORDER_TTL_MS,
  type TopupDeps,
  type TopupLimits,
  topupLimits,
} from "./deployment.ts";
import { GatewayUnavailable, TopupRefused } from "./errors.ts";
import type { TopupMethod, TopupOrdersTable } from "./tables.ts";
import "./tables.ts";

const log = logger("topup");

function newOrderNo(now: Date): string {
  return `YXT${chinaDigits(now)}${randomDigits(8)}`;
}

/** A top-up order as the pages see it. */
export type TopupOrder = Selectable<TopupOrdersTable>;

/** The one card account a top-up goes to; refuses without a bound, usable card. */
async function cardFor(db: Db, accountId: number) {
  const card = await findBoundCard(db, accountId);
  if (!card) throw new TopupRefused("No bound card", "请先绑定一卡通账号后再充值");
  if (card.status === "cancelled") {
    throw new TopupRefused("Card account cancelled", "该一卡通账户已注销，无法充值");
  }
  return card;
}

/** How much more a card account may top up today (China day), in fen. */
export async function remainingToday(
  db: Db,
  cardAccountId: number,
  limits: TopupLimits,
  now = new Date(),
): Promise<number> {
  const row = await db.selectFrom("topup_orders")
    .select(sql<number>`coalesce(sum(amount), 0)::bigint`.as("used"))
    .where("card_account_id", "=", cardAccountId)
    .where("created_at", ">=", chinaDayStart(now))
    .where((eb) =>
      eb.or([
        eb("state", "=", "paid"),
        eb.and([eb("state", "=", "pending"), eb("expires_at", ">", now)]),
      ])
    )
    .executeTakeFirstOrThrow();
  return Math.max(0, limits.daily - Number(row.used));
}

/** A new order: for which card, opened by whom (or paid by whom, for 代充), how. */
export interface NewOrder {
  card: { cardAccountId: number };
  /** The login account opening it; null for 代充. */
  accountId: number | null;
  /** 代充's payer key; null otherwise. */
  payerKey: string | null;
  amountText: string;
  method: string;
  openid?: string | null;
  /** What the payer sees in the gateway's bill. */
  description: string;
  /** Further checks run under the card's lock before the order is written (代充's limits). */
  check?: (trx: Db, amount: number, now: Date) => Promise<void>;
}

/**
 * Opens a top-up: checks the amount and the limits, records the order, and asks the gateway to
 * open the payment. Returns the order and how the payer continues.
 */
export async function openOrder(
  deps: TopupDeps,
  gateways: Gateways,
  input: NewOrder,
): Promise<{ order: TopupOrder; start: PaymentStart }> {
  const { db } = deps;
  const limits = topupLimits(deps.config);
  const gateway = gateways.get(input.method as TopupMethod);
  if (!gateway) {
    const message = input.method === "sandbox"
      ? "本系统未开放测试支付，请选择其他支付方式"
      : "请选择支付方式";
    throw new TopupRefused(`Method ${input.method.slice(0, 20)} not offered`, message, "method");
  }
  const amount = parseYuan(input.amountText);
  if (amount === null || amount <= 0) {
    throw new TopupRefused(
      `Bad amount ${input.amountText.slice(0, 20)}`,
      "请输入正确的金额（元，最多两位小数）",
      "amount",
    );
  }
  if (amount < limits.min) {
    throw new TopupRefused(
      `Amount ${amount} below minimum`,
      `单笔充值金额不能低于${formatFen(limits.min)}`,
      "amount",
    );
  }
  if (amount > limits.max) {
    throw new TopupRefused(
      `Amount ${amount} above maximum`,
      `单笔充值金额不能超过${formatFen(limits.max)}`,
      "amount",
    );
  }
  if (gateway.method === "wechat" && !input.openid) {
    throw new TopupRefused("No openid for JSAPI", "请在微信中打开本页面后使用微信支付", "method");
  }
  const card = input.card;
  const now = new Date();
  const order = await db.transaction().execute(async (trx) => {
    // One card account's top-ups are checked against the daily limit one at a time.
    await sql`select pg_advisory_xact_lock(7350, ${card.cardAccountId}::int)`.execute(trx);
    const left = await remainingToday(trx, card.cardAccountId, limits, now);
    if (amount > left) {
      throw new TopupRefused(
        `Daily limit: ${left} left`,
        left > 0
          ? `超出每日充值限额，今日还可充值${formatFen(left)}`
          : `今日充值已达上限${formatFen(limits.daily)}`,
        "amount",
      );
    }
    const open = await trx.selectFrom("topup_orders").select(sql<number>`count(*)::int`.as("n"))
      .where("card_account_id", "=", card.cardAccountId).where("state", "=", "pending")
      .where("expires_at", ">", now).executeTakeFirstOrThrow();
    if (open.n >= limits.maxOpen) {
      throw new TopupRefused("Too many open orders", "未完成的充值订单过多，请稍后再试", "amount");
    }
    await input.check?.(trx, amount, now);
    return await trx.insertInto("topup_orders").values({
      order_no: newOrderNo(now),
      account_id: input.accountId,
      card_account_id: card.cardAccountId,
      amount,
      method: gateway.method,
      expires_at: new Date(now.getTime() + ORDER_TTL_MS),
      gateway_txn_id: null,
      prepay_id: null,
      transfer_id: null,
      paid_at: null,
      closed_at: null,
      last_checked_at: null,
      flag_reason: null,
      proxy: input.payerKey !== null,
      payer_key: input.payerKey,
    }).returningAll().executeTakeFirstOrThrow();
  });
  const gatewayOrder: GatewayOrder = {
    orderNo: order.order_no,
    amount,
    description: input.description,
    expiresAt: order.expires_at,
    openid: input.openid ?? null,
  };
  let start: PaymentStart;
  try {
    start = await gateway.createPayment(gatewayOrder);
  } catch (err) {
    log.error("gateway refused order", { orderNo: order.order_no, err: (err as Error).message });
    await db.updateTable("topup_orders").set({ state: "closed", closed_at: new Date() })
      .where("id", "=", order.id).where("state", "=", "pending").execute();
    throw new GatewayUnavailable(`Gateway ${gateway.method} refused order ${order.order_no}`);
  }
  if (start.reference) {
    await db.updateTable("topup_orders").set({ prepay_id: start.reference }).where(
      "id",
      "=",
      order.id,
    ).execute();
  }
  return { order: { ...order, prepay_id: start.reference }, start };
}

/** Opens a top-up of the signed-in account's own bound card (the 充值 form). */
export async function createOrder(
  deps: TopupDeps,
  gateways: Gateways,
  input: { accountId: number; amountText: string; method: string; openid?: string | null },
): Promise<{ order: TopupOrder; start: PaymentStart }> {
  const card = await cardFor(deps.db, input.accountId);
  return await openOrder(deps, gateways, {
    ...input,
    card,
    payerKey: null,
    description: `校园一信通充值-${card.studentNumber}`,
  });
}

/**
 * Opens a top-up from the 充值 form and says where the payer goes next: first WeChat's silent
 * OAuth when JSAPI does not know the payer's openid yet, else the gateway's own page, or the
 * JSAPI pay page.
 */
export async function openTopup(
  deps: TopupDeps,
  gateways: Gateways,
  input: { accountId: number; amountText: string; method: string },
): Promise<string> {
  const openid = input.method === "wechat" ? await openidOf(deps.db, input.accountId) : null;
  if (input.method === "wechat" && gateways.has("wechat") && !openid) {
    return "/wallet/recharge/wechat/oauth";
  }
  const { order, start } = await createOrder(deps, gateways, { ...input, openid });
  return start.kind === "redirect" ? start.url : `/wallet/recharge/orders/${order.order_no}/pay`;
}

/** One of the account's own orders, or null (someone else's order looks like no order). */
export async function findOwnOrder(
  db: Db,
  accountId: number,
  orderNo: string,
): Promise<TopupOrder | null> {
  if (!/^[A-Za-z0-9_-]{6,32}$/.test(orderNo)) return null;
  return await db.selectFrom("topup_orders").selectAll()
    .where("order_no", "=", orderNo).where("account_id", "=", accountId).executeTakeFirst() ?? null;
}

/** An order by its number (staff pages). */
export async function findOrder(db: Db, orderNo: string): Promise<TopupOrder | null> {
  if (!/^[A-Za-z0-9_-]{6,32}$/.test(orderNo)) return null;
  return await db.selectFrom("topup_orders").selectAll().where("order_no", "=", orderNo)
    .executeTakeFirst() ?? null;
}

/** What became of a payment report (notify or query). */
export type SettleOutcome =
  | "credited"
  | "credited_after_close"
  | "duplicate"
  | "amount_mismatch"
  | "txn_mismatch"
  | "unknown_order";

/**
 * Acts on a gateway's word that an order was paid: credits the card exactly once (the order row
 * is locked, and the ledger credit is idempotent on `topup:<order_no>`), or flags the order for
 * finance when the amount or transaction differs. Safe under any number of concurrent calls.
 */
export async function settlePaid(
  deps: TopupDeps,
  report: { method: TopupMethod; orderNo: string; txnId: string; amount: number },
): Promise<SettleOutcome> {
  const { db } = deps;
  const decision = await db.transaction().execute(async (trx) => {
    const order = await trx.selectFrom("topup_orders").selectAll()
      .where("order_no", "=", report.orderNo).forUpdate().executeTakeFirst();
    if (!order || order.method !== report.method) {
      return { outcome: "unknown_order" as const, order: null };
    }
    if (report.amount !== order.amount) {
      await trx.updateTable("topup_orders").set({
        flagged: true,
        flag_reason: `金额不符：渠道通知${formatFen(report.amount)}，订单${
          formatFen(order.amount)
        }`,
      }).where("id", "=", order.id).execute();
      return { outcome: "amount_mismatch" as const, order };
    }
    if (order.state === "paid") {
      if (order.gateway_txn_id !== report.txnId) {
        await trx.updateTable("topup_orders").set({
          flagged: true,
          flag_reason: `同一订单出现第二笔渠道交易 ${report.txnId.slice(0, 40)}`,
        }).where("id", "=", order.id).execute();
        return { outcome: "txn_mismatch" as const, order };
      }
      return {
        outcome: order.transfer_id === null ? "credited" as const : "duplicate" as const,
        order,
      };
    }
    const late = order.state === "closed";
    // The credit commits with the order's new state, or neither does.
    const credit = await creditTopUp(trx, {
      cardAccountId: order.card_account_id,
      amount: order.amount,
      method: order.method,
      reference: `topup:${order.order_no}`,
      details: {
        orderNo: order.order_no,
        txnId: report.txnId,
        // 代充: the student's 充值到账 says who paid (someone else), nothing more.
        ...(order.proxy ? { proxy: true } : {}),
      },
    });
    await trx.updateTable("topup_orders").set({
      state: "paid",
      gateway_txn_id: report.txnId,
      paid_at: new Date(),
      transfer_id: credit.transferId,
      ...(late ? { flagged: true, flag_reason: "订单关闭后收到支付成功，已入账，请核对" } : {}),
    }).where("id", "=", order.id).execute();
    return { outcome: late ? "credited_after_close" as const : "credited" as const, order };
  });
  return decision.outcome;
}

/**
 * Asks the gateway about one pending order and acts on the answer: credit when paid, close when
 * the gateway closed it or when it expired. Returns the order's state afterwards.
 */
export async function checkOrder(
  deps: TopupDeps,
  gateways: Gateways,
  order: TopupOrder,
  now = new Date(),
): Promise<TopupOrder["state"]> {
  const { db } = deps;
  const gateway = gateways.get(order.method);
  if (!gateway || order.state !== "pending") return order.state;
  await db.updateTable("topup_orders").set({ last_checked_at: new Date() }).where(
    "id",
    "=",
    order.id,
  ).execute();
  const settle = ({ txnId, amount }: { txnId: string; amount: number }) =>
    settlePaid(deps, { method: order.method, orderNo: order.order_no, txnId, amount });
  try {
    const q = await gateway.query(order.order_no);
    if (q.state === "paid") {
      await settle(q);
    } else if (q.state === "closed" || (q.state === "unknown" && order.expires_at <= now)) {
      await markClosed(db, order.id);
    } else if (order.expires_at <= now) {
      const closed = await gateway.close(order.order_no);
      if (closed === "closed") await markClosed(db, order.id);
      else {
        const again = await gateway.query(order.order_no);
        if (again.state === "paid") await settle(again);
      }
    }
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err;
    log.warn("order check failed", { orderNo: order.order_no, err: err.message });
  }
  const after = await findOrder(db, order.order_no);
  return after?.state ?? order.state;
}

/** A pending order is asked about at most this often while its result page polls. */
const POLL_CHECK_AFTER_MS = 10_000;

/**
 * An order as its result page shows it: a pending one older than the poll interval and not asked
 * about within it is asked about first; a paid one comes with the balance right after its credit
 * (its transfer's balance-after).
 */
export async function orderResult(
  deps: TopupDeps,
  gateways: Gateways,
  order: TopupOrder,
  now = Date.now(),
): Promise<{ order: TopupOrder; balanceAfter: number | null }> {
  const due = !order.last_checked_at ||
    now - order.last_checked_at.getTime() > POLL_CHECK_AFTER_MS;
  if (order.state === "pending" && due && now - order.created_at.getTime() > POLL_CHECK_AFTER_MS) {
    await checkOrder(deps, gateways, order);
    order = (await findOrder(deps.db, order.order_no))!;
  }
  const credit = order.state === "paid" && order.transfer_id !== null
    ? await getTransaction(deps.db, order.card_account_id, order.transfer_id)
    : null;
  return { order, balanceAfter: credit?.balanceAfter ?? null };
}

async function markClosed(db: Db, id: number): Promise<void> {
  await db.updateTable("topup_orders").set({ state: "closed", closed_at: new Date() })
    .where("id", "=", id).where("state", "=", "pending").execute();
}

/** The payer gave up on the sandbox page: close the order now. */
export async function cancelOrder(
  deps: TopupDeps,
  gateways: Gateways,
  order: TopupOrder,
): Promise<void> {
  const gateway = gateways.get(order.method);
  if (!gateway || order.state !== "pending") return;
  const r = await gateway.close(order.order_no);
  if (r === "closed") await markClosed(deps.db, order.id);
  else await checkOrder(deps, gateways, order);
}

/** The WeChat openid remembered for a login account. */
export async function openidOf(db: Db, accountId: number): Promise<string | null> {
  const row = await db.selectFrom("topup_wechat_payers").select("openid").where(
    "account_id",
    "=",
    accountId,
  )
    .executeTakeFirst();
  return row?.openid ?? null;
}

/** Remembers the WeChat openid of a login account. */
export async function rememberOpenid(db: Db, accountId: number, openid: string): Promise<void> {
  await db.insertInto("topup_wechat_payers").values({ account_id: accountId, openid })
    .onConflict((oc) => oc.column("account_id").doUpdateSet({ openid, updated_at: new Date() }))
    .execute();
}
