import { sql } from "kysely";
import { type Config, gatewayProblem } from "../platform/config.ts";
import type { Db } from "../platform/database.ts";
import { formatFen, parseYuan } from "../platform/money.ts";
import { randomDigits } from "../platform/crypto.ts";
import { chinaDayStart, chinaDigits } from "../platform/china_time.ts";
import { logger } from "../platform/log.ts";
import { findBoundCard } from "../card/mod.ts";
import { creditTopUp } from "../wallet/mod.ts";
import {
  GatewayError,
  type GatewayOrder,
  NotifyRejected,
  type PaymentGateway,
  type PaymentStart,
} from "./gateway.ts";
import { SandboxGateway } from "./sandbox.ts";
import { loadWechatConfig, WechatGateway } from "./wechat.ts";
import { GatewayUnavailable, TopupRefused } from "./errors.ts";
import type { TopupMethod, TopupOrdersTable } from "./tables.ts";
import type { Selectable } from "kysely";
import "./tables.ts";

const log = logger("topup");

/** What the top-up services need. */
export interface TopupDeps {
  db: Db;
  config: Config;
}

/** The gateways configured for this deployment, in the order [支付方式] lists them. */
export type Gateways = Map<TopupMethod, PaymentGateway>;

/** Limits on top-ups, in fen. */
export interface TopupLimits {
  min: number;
  max: number;
  daily: number;
  /** Unpaid orders one card account may have open at once. */
  maxOpen: number;
}

/** An unpaid order can be paid for this long; then it is closed at the gateway. */
export const ORDER_TTL_MS = 15 * 60_000;

/** Quick amounts offered on the 充值 page, in yuan. */
export const QUICK_AMOUNTS = [10, 20, 50, 100, 200, 500];

function yuanVar(env: Record<string, string | undefined>, name: string, fallback: number): number {
  const raw = env[name];
  if (!raw) return fallback;
  const fen = parseYuan(raw);
  if (fen === null || fen <= 0) {
    throw new Error(`Cannot read configuration: ${name} must be an amount in yuan`);
  }
  return fen;
}

/** The limits in force: TOPUP_MIN_YUAN (1), TOPUP_MAX_YUAN (1000), TOPUP_DAILY_YUAN (2000). */
export function topupLimits(config: Config): TopupLimits {
  return {
    min: yuanVar(config.env, "TOPUP_MIN_YUAN", 100),
    max: yuanVar(config.env, "TOPUP_MAX_YUAN", 100_000),
    daily: yuanVar(config.env, "TOPUP_DAILY_YUAN", 200_000),
    maxOpen: 5,
  };
}

/**
 * The gateways of this deployment. WeChat Pay is on when its WECHAT_* settings are set (and
 * required when PAYMENT_GATEWAY=wechat, the default then and in production). The sandbox is on
 * when PAYMENT_GATEWAY=sandbox, the default only in demo mode with no real gateway; in production
 * or beside WeChat Pay it needs ALLOW_SANDBOX_GATEWAY=1 (platform/config.ts: gatewayProblem).
 */
export function buildGateways(deps: TopupDeps, fetcher: typeof fetch = fetch): Gateways {
  const { config } = deps;
  const problem = gatewayProblem(config);
  if (problem) throw new Error(`Cannot start: ${problem}`);
  const gateways: Gateways = new Map();
  const wechat = loadWechatConfig(config.env, config.baseUrl);
  if (wechat) gateways.set("wechat", new WechatGateway(wechat, fetcher));
  if (config.paymentGateway === "sandbox") {
    const late = Number(config.env.SANDBOX_LATE_SECONDS ?? "30");
    gateways.set(
      "sandbox",
      new SandboxGateway(deps.db, config.appSecret, {
        defaultMode: config.env.SANDBOX_NOTIFY_MODE,
        lateSeconds: Number.isFinite(late) && late >= 0 ? late : 30,
      }),
    );
  }
  return gateways;
}

/** The sandbox gateway, when this deployment has one. */
export function sandboxOf(gateways: Gateways): SandboxGateway | null {
  const g = gateways.get("sandbox");
  return g instanceof SandboxGateway ? g : null;
}

/** The WeChat gateway, when configured. */
export function wechatOf(gateways: Gateways): WechatGateway | null {
  const g = gateways.get("wechat");
  return g instanceof WechatGateway ? g : null;
}

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

/**
 * Opens a top-up: checks the amount and the limits, records the order, and asks the gateway to
 * open the payment. Returns the order and how the payer continues.
 */
export async function createOrder(
  deps: TopupDeps,
  gateways: Gateways,
  input: { accountId: number; amountText: string; method: string; openid?: string | null },
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
  const card = await cardFor(db, input.accountId);
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
    }).returningAll().executeTakeFirstOrThrow();
  });
  const gatewayOrder: GatewayOrder = {
    orderNo: order.order_no,
    amount,
    description: `校园一信通充值-${card.studentNumber}`,
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

/** Outcomes finance must look at. */
const FLAGGED: ReadonlySet<string> = new Set([
  "bad_signature",
  "amount_mismatch",
  "txn_mismatch",
  "unknown_order",
  "credited_after_close",
]);

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
      details: { orderNo: order.order_no, txnId: report.txnId },
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
 * Handles a notify from a gateway: verify, act, record, and answer in the gateway's own terms.
 * A bad signature or a wrong amount credits nothing and is flagged for finance.
 */
export async function handleNotify(
  deps: TopupDeps,
  gateway: PaymentGateway,
  headers: Headers,
  body: string,
): Promise<{ status: number; body: string | null; contentType?: string }> {
  const { db } = deps;
  const record = (v: {
    orderNo: string | null;
    outcome: string;
    amount?: number | null;
    expected?: number | null;
    txnId?: string | null;
    detail?: string;
  }) =>
    db.insertInto("topup_notifies").values({
      method: gateway.method,
      order_no: v.orderNo?.slice(0, 40) ?? null,
      outcome: v.outcome,
      amount: v.amount ?? null,
      expected_amount: v.expected ?? null,
      gateway_txn_id: v.txnId?.slice(0, 64) ?? null,
      detail: v.detail?.slice(0, 500) ?? null,
      flagged: FLAGGED.has(v.outcome),
      resolved_by: null,
      resolved_at: null,
      resolution: null,
    }).execute();

  let notify;
  try {
    notify = await gateway.verifyNotify(headers, body);
  } catch (err) {
    if (!(err instanceof NotifyRejected)) throw err;
    log.warn("notify refused", { method: gateway.method, err: err.message });
    await record({ orderNo: err.orderNo, outcome: "bad_signature", detail: err.message });
    return gateway.answer(false, "签名验证失败");
  }
  if (!notify.paid) {
    await record({
      orderNo: notify.orderNo,
      outcome: "not_paid",
      amount: notify.amount,
      txnId: notify.txnId,
      detail: notify.state,
    });
    return gateway.answer(true, "OK");
  }
  const outcome = await settlePaid(deps, {
    method: gateway.method,
    orderNo: notify.orderNo,
    txnId: notify.txnId,
    amount: notify.amount,
  });
  const order = await findOrder(db, notify.orderNo);
  await record({
    orderNo: notify.orderNo,
    outcome,
    amount: notify.amount,
    expected: order?.amount ?? null,
    txnId: notify.txnId,
    detail: notify.state,
  });
  if (FLAGGED.has(outcome)) {
    log.warn("notify flagged for finance", { orderNo: notify.orderNo, outcome });
  }
  // Taken and recorded: a retry would change nothing, so the gateway may stop sending it.
  return gateway.answer(true, "OK");
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
  try {
    const q = await gateway.query(order.order_no);
    if (q.state === "paid") {
      await settlePaid(deps, {
        method: order.method,
        orderNo: order.order_no,
        txnId: q.txnId,
        amount: q.amount,
      });
    } else if (q.state === "closed" || (q.state === "unknown" && order.expires_at <= now)) {
      await markClosed(db, order.id);
    } else if (order.expires_at <= now) {
      const closed = await gateway.close(order.order_no);
      if (closed === "closed") await markClosed(db, order.id);
      else {
        const again = await gateway.query(order.order_no);
        if (again.state === "paid") {
          await settlePaid(deps, {
            method: order.method,
            orderNo: order.order_no,
            txnId: again.txnId,
            amount: again.amount,
          });
        }
      }
    }
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err;
    log.warn("order check failed", { orderNo: order.order_no, err: err.message });
  }
  const after = await findOrder(db, order.order_no);
  return after?.state ?? order.state;
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

/** Notifies finance should look at, newest first. */
export async function listFlaggedNotifies(
  db: Db,
  options: { includeResolved?: boolean; limit?: number } = {},
) {
  let q = db.selectFrom("topup_notifies").selectAll().where("flagged", "=", true);
  if (!options.includeResolved) q = q.where("resolved_at", "is", null);
  return await q.orderBy("id", "desc").limit(options.limit ?? 200).execute();
}

/** Marks a flagged notify as looked at, with what finance decided (call inside the audit transaction). */
export async function resolveFlaggedNotify(
  db: Db,
  id: number,
  staffId: number,
  resolution: string,
): Promise<boolean> {
  const r = await db.updateTable("topup_notifies").set({
    resolved_by: staffId,
    resolved_at: new Date(),
    resolution,
  })
    .where("id", "=", id).where("flagged", "=", true).where("resolved_at", "is", null)
    .executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

/** Orders flagged for finance, newest first. */
export async function listFlaggedOrders(db: Db, limit = 200): Promise<TopupOrder[]> {
  return await db.selectFrom("topup_orders").selectAll().where("flagged", "=", true)
    .orderBy("id", "desc").limit(limit).execute();
}

/** Paid orders of a period (by paid time), for reconciliation with a gateway's statement. */
export async function paidOrdersBetween(
  db: Db,
  method: TopupMethod,
  from: Date,
  to: Date,
): Promise<TopupOrder[]> {
  return await db.selectFrom("topup_orders").selectAll()
    .where("method", "=", method).where("state", "=", "paid")
    .where("paid_at", ">=", from).where("paid_at", "<", to).orderBy("paid_at").execute();
}

/** Orders by their numbers (reconciliation looks up what the statement names). */
export async function ordersByNumbers(db: Db, orderNos: string[]): Promise<TopupOrder[]> {
  if (orderNos.length === 0) return [];
  return await db.selectFrom("topup_orders").selectAll().where("order_no", "in", orderNos)
    .execute();
}

/** Recent orders for the staff list, newest first, optionally only one card account's. */
export async function listOrders(
  db: Db,
  filter: { cardAccountId?: number; orderNo?: string; limit?: number } = {},
) {
  let q = db.selectFrom("topup_orders").selectAll();
  if (filter.cardAccountId) q = q.where("card_account_id", "=", filter.cardAccountId);
  if (filter.orderNo) q = q.where("order_no", "=", filter.orderNo);
  return await q.orderBy("id", "desc").limit(filter.limit ?? 100).execute();
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
