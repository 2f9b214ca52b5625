/**
 * 退回微信: finance pays (part of) a paid top-up back to where it came from.
 *
 * The card is debited first, with the refund row, in one transaction (the money cannot be both on
 * the card and on its way back). Then the gateway is asked. Its answer settles the row: paid
 * (succeeded), closed unpaid (failed: the money goes back on the card, exactly once), abnormal
 * (the payer's account refused it; the gateway holds the money until finance handles it on the
 * merchant platform), or no answer yet (processing: the top-up loop asks again, and asks for the
 * refund again with the same refund number when the gateway never heard of it).
 */
import { type Selectable, sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { NotFoundError } from "../platform/errors.ts";
import { formatFen, parseYuan } from "../platform/money.ts";
import { logger } from "../platform/log.ts";
import { staffByIds, writeAudit } from "../staff/mod.ts";
import { refundTopUp, returnTopUpRefund } from "../wallet/mod.ts";
import { GatewayError, type RefundStatus } from "./gateway.ts";
import { TopupRefused } from "./errors.ts";
import type { Gateways, TopupDeps } from "./deployment.ts";
import type { TopupOrdersTable, TopupRefundsTable } from "./tables.ts";
import "./tables.ts";

const log = logger("topup-refund");

export type TopupRefund = Selectable<TopupRefundsTable>;

/** Form tokens are random URL-safe strings; one form, one refund. */
const TOKEN_RE = /^[A-Za-z0-9_-]{16,64}$/;

/** A processing refund is asked about again after this long. */
const CHECK_AFTER_MS = 60_000;

/** The refunds of one top-up order, oldest first. */
export async function refundsOfOrder(db: Db, orderId: number): Promise<TopupRefund[]> {
  return await db.selectFrom("topup_refunds").selectAll().where("order_id", "=", orderId)
    .orderBy("id").execute();
}

/** Recent refunds with their order numbers, newest first (finance's list). */
export async function listTopupRefunds(db: Db, limit = 100) {
  const rows = await db.selectFrom("topup_refunds")
    .innerJoin("topup_orders", "topup_orders.id", "topup_refunds.order_id")
    .selectAll("topup_refunds")
    .select(["topup_orders.order_no", "topup_orders.method"])
    .orderBy("topup_refunds.id", "desc").limit(limit).execute();
  const staff = await staffByIds(db, rows.map((r) => r.staff_id));
  return rows.map((r) => ({ ...r, staff_name: staff.get(r.staff_id)?.name ?? null }));
}

/** What is left to refund of an order: its amount less every refund not given back. */
export function refundable(orderAmount: number, refunds: TopupRefund[]): number {
  const out = refunds.filter((r) => r.state !== "failed").reduce((s, r) => s + r.amount, 0);
  return Math.max(0, orderAmount - out);
}

/**
 * Debits the card and records the refund, then asks the gateway. A second submit of the same
 * form (its token) returns the first refund and moves nothing.
 */
export async function requestTopupRefund(
  deps: TopupDeps,
  gateways: Gateways,
  actor: { staffId: number; ip: string | null },
  input: { orderNo: string; amountText: string; reason: string; token: string },
): Promise<{ refund: TopupRefund; duplicate: boolean }> {
  const { db } = deps;
  if (!TOKEN_RE.test(input.token)) {
    throw new TopupRefused("Bad form token", "表单已失效，请刷新页面后重试");
  }
  const reference = `topup-refund:${input.token}`;
  const first = await db.selectFrom("topup_refunds").selectAll()
    .where("reference", "=", reference).executeTakeFirst();
  if (first) return { refund: first, duplicate: true };
  const amount = parseYuan(input.amountText);
  if (amount === null || amount <= 0) {
    throw new TopupRefused("Bad amount", "请输入正确的退回金额（元，最多两位小数）", "amount");
  }
  const reason = input.reason.trim();
  if (reason.length < 2 || reason.length > 80) {
    throw new TopupRefused("Bad reason", "请填写原因（2至80字，会显示在微信退款消息中）", "reason");
  }
  let refund: TopupRefund;
  try {
    refund = await db.transaction().execute(async (trx) => {
      const order = await trx.selectFrom("topup_orders").selectAll()
        .where("order_no", "=", input.orderNo).forUpdate().executeTakeFirst();
      if (!order) throw new NotFoundError(`top-up order ${input.orderNo.slice(0, 40)}`);
      if (order.state !== "paid" || order.transfer_id === null) {
        throw new TopupRefused("Order not paid", "该订单未支付成功，不能退回");
      }
      if (!gateways.has(order.method)) {
        throw new TopupRefused(
          "Gateway not configured",
          "该订单的支付渠道未配置，不能原路退回",
        );
      }
      const earlier = await refundsOfOrder(trx, order.id);
      const left = refundable(order.amount, earlier);
      if (amount > left) {
        throw new TopupRefused(
          "Refund above what is left",
          `退回金额超过可退金额 ${formatFen(left)}`,
          "amount",
        );
      }
      return await openRefund(trx, order, earlier.length, {
        amount,
        reason,
        reference,
        staffId: actor.staffId,
        ip: actor.ip,
        audit: { refundable: left },
      });
    });
  } catch (err) {
    // The same form submitted twice at once: the second loses on the unique reference.
    if ((err as { code?: string }).code !== "23505") throw err;
    const again = await db.selectFrom("topup_refunds").selectAll()
      .where("reference", "=", reference).executeTakeFirst();
    if (!again) throw err;
    return { refund: again, duplicate: true };
  }
  return { refund: await submitRefund(deps, gateways, refund), duplicate: false };
}

/**
 * Inside `trx` (the order locked, `earlier` refunds of it before this one): takes `amount` off the
 * card to the gateway's clearing account and records the refund as processing, audited. The
 * gateway is asked once the caller committed (`submitRefund`, or the top-up loop).
 */
async function openRefund(
  trx: Db,
  order: Selectable<TopupOrdersTable>,
  earlier: number,
  input: {
    amount: number;
    reason: string;
    reference: string;
    staffId: number;
    ip: string | null;
    audit: Record<string, unknown>;
  },
): Promise<TopupRefund> {
  const refundNo = `${order.order_no}R${earlier + 1}`;
  // The wallet refuses when the card no longer holds the money (spent since the top-up).
  const debit = await refundTopUp(trx, {
    cardAccountId: order.card_account_id,
    amount: input.amount,
    method: order.method,
    reference: `topup-refund:${refundNo}`,
    details: { orderNo: order.order_no, refundNo },
  });
  const row = await trx.insertInto("topup_refunds").values({
    refund_no: refundNo,
    reference: input.reference,
    order_id: order.id,
    amount: input.amount,
    reason: input.reason,
    staff_id: input.staffId,
    transfer_id: debit.transferId,
  }).returningAll().executeTakeFirstOrThrow();
  await writeAudit(trx, {
    staffId: input.staffId,
    action: "finance.topup_refund",
    targetType: "topup_order",
    targetId: order.id,
    before: { amount: order.amount, ...input.audit },
    after: { refundNo, amount: input.amount, reason: input.reason },
    ip: input.ip,
  });
  return row;
}

/** How long after a top-up its gateway still takes a refund of it (WeChat Pay: a year). */
export const REFUNDABLE_DAYS = 360;

/**
 * 原路退回 for a card being closed (毕业离校), inside the caller's transaction: up to `amount` of
 * the card's money back through its paid top-ups, newest first, each as far as what is left of it
 * and only through a gateway this deployment has, within REFUNDABLE_DAYS. Returns the refunds
 * opened (processing: `submitRefunds` asks the gateway after the commit) and what they cover; the
 * rest is the caller's to pay out otherwise. References derive from `reference` and the order, so
 * a repeat of the same close-out opens nothing twice.
 */
export async function refundToOrigin(
  trx: Db,
  gateways: Gateways,
  input: {
    cardAccountId: number;
    amount: number;
    reason: string;
    reference: string;
    staffId: number;
    now?: Date;
  },
): Promise<{ refunds: TopupRefund[]; refunded: number }> {
  const since = new Date((input.now ?? new Date()).getTime() - REFUNDABLE_DAYS * 86_400_000);
  const orders = await trx.selectFrom("topup_orders").selectAll()
    .where("card_account_id", "=", input.cardAccountId).where("state", "=", "paid")
    .where("paid_at", ">=", since).where("method", "in", [...gateways.keys()])
    .orderBy("paid_at", "desc").orderBy("id", "desc").forUpdate().execute();
  const refunds: TopupRefund[] = [];
  let left = input.amount;
  for (const order of orders) {
    if (left <= 0) break;
    const reference = `${input.reference}:${order.order_no}`;
    const first = await trx.selectFrom("topup_refunds").selectAll()
      .where("reference", "=", reference).executeTakeFirst();
    if (first) {
      refunds.push(first);
      left -= first.amount;
      continue;
    }
    const earlier = await refundsOfOrder(trx, order.id);
    const amount = Math.min(left, refundable(order.amount, earlier));
    if (amount <= 0) continue;
    refunds.push(
      await openRefund(trx, order, earlier.length, {
        amount,
        reason: input.reason,
        reference,
        staffId: input.staffId,
        ip: null,
        audit: { refundable: refundable(order.amount, earlier), closeout: input.reference },
      }),
    );
    left -= amount;
  }
  return { refunds, refunded: input.amount - left };
}

/** Asks the gateway for each processing refund (after the transaction that opened them committed). */
export async function submitRefunds(
  deps: TopupDeps,
  gateways: Gateways,
  refunds: TopupRefund[],
): Promise<void> {
  for (const refund of refunds) {
    if (refund.state === "processing") await submitRefund(deps, gateways, refund);
  }
}

/** Asks the gateway to pay a processing refund (again, with the same number) and applies the answer. */
async function submitRefund(
  deps: TopupDeps,
  gateways: Gateways,
  refund: TopupRefund,
): Promise<TopupRefund> {
  const order = await deps.db.selectFrom("topup_orders").selectAll()
    .where("id", "=", refund.order_id).executeTakeFirstOrThrow();
  const gateway = gateways.get(order.method);
  if (!gateway) return refund;
  let status: RefundStatus;
  try {
    status = await gateway.refund({
      orderNo: order.order_no,
      refundNo: refund.refund_no,
      amount: refund.amount,
      total: order.amount,
      reason: refund.reason,
    });
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err;
    log.warn("refund request failed; asked again later", {
      refundNo: refund.refund_no,
      err: err.message,
    });
    status = { state: "processing", refundId: null, detail: err.message.slice(0, 200) };
  }
  return await applyRefundStatus(deps.db, refund, status);
}

/**
 * Settles a processing refund from the gateway's answer. Only a processing row changes, and only
 * once: a closed refund's money goes back on the card exactly once however many answers arrive.
 */
export async function applyRefundStatus(
  db: Db,
  refund: TopupRefund,
  status: RefundStatus,
): Promise<TopupRefund> {
  return await db.transaction().execute(async (trx) => {
    const row = await trx.selectFrom("topup_refunds").selectAll()
      .where("id", "=", refund.id).forUpdate().executeTakeFirstOrThrow();
    if (row.state !== "processing") return row;
    const now = new Date();
    switch (status.state) {
      case "succeeded":
      case "abnormal":
        return await trx.updateTable("topup_refunds").set({
          state: status.state,
          gateway_refund_id: status.refundId ?? row.gateway_refund_id,
          gateway_state: status.state === "succeeded" ? "SUCCESS" : "ABNORMAL",
          finished_at: now,
          last_checked_at: now,
        }).where("id", "=", row.id).returningAll().executeTakeFirstOrThrow();
      case "closed": {
        const order = await trx.selectFrom("topup_orders").select(["card_account_id", "method"])
          .where("id", "=", row.order_id).executeTakeFirstOrThrow();
        const back = await returnTopUpRefund(trx, {
          cardAccountId: order.card_account_id,
          amount: row.amount,
          method: order.method,
          reference: `topup-refund-return:${row.refund_no}`,
          refundTransferId: row.transfer_id,
          details: { refundNo: row.refund_no, why: status.detail },
        });
        return await trx.updateTable("topup_refunds").set({
          state: "failed",
          gateway_state: status.detail.slice(0, 200),
          return_transfer_id: back.transferId,
          finished_at: now,
          last_checked_at: now,
        }).where("id", "=", row.id).returningAll().executeTakeFirstOrThrow();
      }
      case "processing":
        return await trx.updateTable("topup_refunds").set({
          gateway_refund_id: status.refundId ?? row.gateway_refund_id,
          gateway_state: status.detail ?? "PROCESSING",
          last_checked_at: now,
        }).where("id", "=", row.id).returningAll().executeTakeFirstOrThrow();
      case "unknown":
        return await trx.updateTable("topup_refunds").set({ last_checked_at: now })
          .where("id", "=", row.id).returningAll().executeTakeFirstOrThrow();
    }
  });
}

/**
 * One round for the top-up loop: asks the gateway about processing refunds not checked for a
 * minute, and asks for the refund again when the gateway never heard of it.
 */
export async function checkRefunds(
  deps: TopupDeps,
  gateways: Gateways,
  now = new Date(),
): Promise<void> {
  const due = await deps.db.selectFrom("topup_refunds").selectAll()
    .where("state", "=", sql.lit("processing")) // a literal, for the partial index (jobs.ts)
    .where((eb) =>
      eb.or([
        eb("last_checked_at", "is", null),
        eb("last_checked_at", "<=", new Date(now.getTime() - CHECK_AFTER_MS)),
      ])
    )
    .orderBy("id").limit(50).execute();
  for (const refund of due) {
    const order = await deps.db.selectFrom("topup_orders").select("method")
      .where("id", "=", refund.order_id).executeTakeFirstOrThrow();
    const gateway = gateways.get(order.method);
    if (!gateway) continue;
    try {
      const status = await gateway.queryRefund(refund.refund_no);
      if (status.state === "unknown") await submitRefund(deps, gateways, refund);
      else await applyRefundStatus(deps.db, refund, status);
    } catch (err) {
      if (!(err instanceof GatewayError)) throw err;
      log.warn("refund check failed", { refundNo: refund.refund_no, err: err.message });
      await deps.db.updateTable("topup_refunds").set({ last_checked_at: new Date() })
        .where("id", "=", refund.id).execute();
    }
  }
}

/**
 * How much of each card's money could go back to where it came from now (`refundToOrigin`'s
 * reach): what is left of its paid top-ups through these gateways within REFUNDABLE_DAYS.
 */
export async function refundableByCard(
  db: Db,
  gateways: Gateways,
  cardAccountIds: number[],
  now = new Date(),
): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  const methods = [...gateways.keys()];
  if (methods.length === 0) return out;
  const since = new Date(now.getTime() - REFUNDABLE_DAYS * 86_400_000);
  for (let i = 0; i < cardAccountIds.length; i += 5000) {
    const ids = cardAccountIds.slice(i, i + 5000);
    const { rows } = await sql<{ card_account_id: number; left: number }>`
      select o.card_account_id,
        sum(greatest(0, o.amount - coalesce((select sum(r.amount) from topup_refunds r
          where r.order_id = o.id and r.state <> 'failed'), 0))) as left
      from topup_orders o
      where o.card_account_id = any(${ids}::bigint[]) and o.state = 'paid'
        and o.paid_at >= ${since} and o.method = any(${methods}::text[])
      group by o.card_account_id`.execute(db);
    for (const r of rows) out.set(Number(r.card_account_id), Number(r.left));
  }
  return out;
}
