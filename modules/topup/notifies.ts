/**
 * Payment notifies from the gateways: verified, acted on, recorded, answered in the gateway's own
 * terms; the ones finance must look at are flagged until someone resolves them.
 */
import type { Db } from "../platform/database.ts";
import { logger } from "../platform/log.ts";
import { NotifyRejected, type PaymentGateway } from "./gateway.ts";
import type { TopupDeps } from "./deployment.ts";
import { findOrder, settlePaid } from "./orders.ts";
import "./tables.ts";

const log = logger("topup");

/** Outcomes finance must look at. */
const FLAGGED: ReadonlySet<string> = new Set([
  "bad_signature",
  "amount_mismatch",
  "txn_mismatch",
  "unknown_order",
  "credited_after_close",
]);

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
