/**
 * The sandbox gateway: a stand-in payment provider for the embedded setup. The payer confirms or
 * cancels on a clearly labelled 测试支付 page; the gateway then owes us a notify, signed with
 * HMAC-SHA256 under APP_SECRET, which `deliverDue` posts to /pay/notify/sandbox. It can be told to
 * misbehave (duplicate, late, out-of-order, wrong-amount or badly signed notifies) so the whole
 * flow, and finance's flags, can be tried locally.
 */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { keyedHash, randomDigits, timingSafeEqual } from "../platform/crypto.ts";
import { logger } from "../platform/log.ts";
import { writeCsv } from "../platform/csv.ts";
import { chinaDateTime } from "../platform/china_time.ts";
import { fenToYuanText } from "../platform/money.ts";
import { writeAudit } from "../staff/mod.ts";
import {
  type GatewayOrder,
  type GatewayQuery,
  type GatewayRefund,
  type NotifyAnswer,
  NotifyRejected,
  type PaymentGateway,
  type PaymentStart,
  type RefundStatus,
  type VerifiedNotify,
} from "./gateway.ts";
import "./tables.ts";

/** How the sandbox sends its notifies after a payment. */
export const SANDBOX_MODES = {
  normal: "正常：支付后立即通知一次",
  duplicate: "重复：同一通知发送多次（含并发）",
  late: "延迟：通知在较长时间后才到达",
  out_of_order: "乱序：先到“支付成功”，后到过时的“未支付”通知",
  wrong_amount: "金额不符：通知中的金额比订单多1分",
  bad_signature: "签名错误：通知签名无效",
} as const;
export type SandboxMode = keyof typeof SANDBOX_MODES;

/** The path notifies are posted to. */
export const SANDBOX_NOTIFY_PATH = "/pay/notify/sandbox";

/** Gateway retries after a refused delivery, like WeChat's growing intervals (seconds). */
const RETRY_AFTER = [5, 15, 30, 180, 600];

const log = logger("sandbox");

/** Something that answers HTTP requests: the app itself, in-process. */
export interface Fetcher {
  fetch(req: Request): Response | Promise<Response>;
}

/** The sandbox payment gateway. */
export class SandboxGateway implements PaymentGateway {
  readonly method = "sandbox" as const;
  readonly label = "测试支付（沙箱）";

  constructor(
    private readonly db: Db,
    private readonly secret: string,
    private readonly options: { defaultMode?: string; lateSeconds?: number } = {},
  ) {}

  async createPayment(order: GatewayOrder): Promise<PaymentStart> {
    await this.db.insertInto("sandbox_payments").values({
      order_no: order.orderNo,
      amount: order.amount,
      txn_id: `SBX${Date.now()}${randomDigits(8)}`,
    }).execute();
    return { kind: "redirect", url: `/pay/sandbox/${order.orderNo}`, reference: null };
  }

  /** The sandbox's own record of a payment (for its page). */
  async payment(orderNo: string) {
    return await this.db.selectFrom("sandbox_payments").selectAll().where("order_no", "=", orderNo)
      .executeTakeFirst() ?? null;
  }

  /** The notify mode in force: the staff setting, else SANDBOX_NOTIFY_MODE, else normal. */
  async mode(db: Db = this.db): Promise<SandboxMode> {
    const row = await db.selectFrom("sandbox_settings").select("notify_mode").where(
      "id",
      "=",
      1,
    )
      .executeTakeFirst();
    const m = row?.notify_mode ?? this.options.defaultMode ?? "normal";
    return (m in SANDBOX_MODES ? m : "normal") as SandboxMode;
  }

  /** Changes the notify mode (staff page). */
  async setMode(mode: SandboxMode, db: Db = this.db): Promise<void> {
    await db.insertInto("sandbox_settings").values({ id: 1, notify_mode: mode })
      .onConflict((oc) =>
        oc.column("id").doUpdateSet({ notify_mode: mode, updated_at: new Date() })
      )
      .execute();
  }

  /**
   * The payer confirms: the payment succeeds (once) and the notifies of the current mode are
   * queued. Returns false when the payment was no longer open.
   */
  async confirm(orderNo: string): Promise<boolean> {
    const mode = await this.mode();
    return await this.db.transaction().execute(async (trx) => {
      const paid = await trx.updateTable("sandbox_payments")
        .set({ state: "SUCCESS", paid_at: new Date() })
        .where("order_no", "=", orderNo).where("state", "=", "NOTPAY")
        .returning(["order_no", "amount", "txn_id"]).executeTakeFirst();
      if (!paid) return false;
      const now = Date.now();
      const success = (amount: number) =>
        JSON.stringify({
          order_no: paid.order_no,
          txn_id: paid.txn_id,
          amount,
          state: "SUCCESS",
          notify_id: `N${randomDigits(12)}`,
        });
      const rows: Array<{ body: string; due: number; tamper?: string }> = [];
      switch (mode) {
        case "duplicate":
          for (let i = 0; i < 4; i++) rows.push({ body: success(paid.amount), due: now });
          rows.push({ body: success(paid.amount), due: now + 3000 });
          break;
        case "late":
          rows.push({
            body: success(paid.amount),
            due: now + (this.options.lateSeconds ?? 30) * 1000,
          });
          break;
        case "out_of_order":
          rows.push({ body: success(paid.amount), due: now });
          rows.push({
            body: JSON.stringify({
              order_no: paid.order_no,
              txn_id: paid.txn_id,
              amount: paid.amount,
              state: "NOTPAY",
              notify_id: `N${randomDigits(12)}`,
            }),
            due: now + 1000,
          });
          break;
        case "wrong_amount":
          rows.push({ body: success(paid.amount + 1), due: now });
          break;
        case "bad_signature":
          rows.push({ body: success(paid.amount), due: now, tamper: "bad_signature" });
          break;
        default:
          rows.push({ body: success(paid.amount), due: now });
      }
      await trx.insertInto("sandbox_notifies").values(rows.map((r) => ({
        order_no: paid.order_no,
        body: r.body,
        tamper: r.tamper ?? null,
        due_at: new Date(r.due),
      }))).execute();
      return true;
    });
  }

  /** The payer cancels: the payment can no longer succeed. */
  async cancel(orderNo: string): Promise<boolean> {
    const r = await this.db.updateTable("sandbox_payments").set({ state: "CLOSED" })
      .where("order_no", "=", orderNo).where("state", "=", "NOTPAY").executeTakeFirst();
    return Number(r.numUpdatedRows) > 0;
  }

  /** Signs a notify body as the sandbox does. */
  async sign(timestamp: string, body: string): Promise<string> {
    return await keyedHash(this.secret, "sandbox-notify", `${timestamp}\n${body}`);
  }

  /**
   * Posts every notify that is due to the app, in due order; the ones refused are retried later.
   * Several due at the same moment (duplicate mode) are posted concurrently. Returns how many
   * were delivered.
   */
  async deliverDue(app: Fetcher, baseUrl: string, now = new Date()): Promise<number> {
    const due = await this.db.selectFrom("sandbox_notifies").selectAll()
      .where("delivered_at", "is", null).where("due_at", "<=", now)
      .where("attempts", "<", RETRY_AFTER.length + 1)
      .orderBy("due_at").orderBy("id").limit(50).execute();
    let delivered = 0;
    const groups = new Map<number, typeof due>();
    for (const n of due) {
      const k = n.due_at.getTime();
      groups.set(k, [...(groups.get(k) ?? []), n]);
    }
    for (const group of groups.values()) {
      await Promise.all(group.map(async (n) => {
        const ts = String(Math.floor(Date.now() / 1000));
        const signature = n.tamper === "bad_signature"
          ? await keyedHash("not-the-sandbox-secret", "sandbox-notify", `${ts}\n${n.body}`)
          : await this.sign(ts, n.body);
        let status = 0;
        try {
          const res = await app.fetch(
            new Request(baseUrl + SANDBOX_NOTIFY_PATH, {
              method: "POST",
              headers: {
                "content-type": "application/json",
                "x-sandbox-timestamp": ts,
                "x-sandbox-signature": signature,
              },
              body: n.body,
            }),
          );
          status = res.status;
          await res.body?.cancel();
        } catch (err) {
          log.warn("notify delivery failed", { orderNo: n.order_no, err: (err as Error).message });
        }
        const ok = status >= 200 && status < 300;
        if (ok) delivered++;
        const retry = RETRY_AFTER[Math.min(n.attempts, RETRY_AFTER.length - 1)];
        await this.db.updateTable("sandbox_notifies").set({
          attempts: sql`attempts + 1`,
          last_status: status,
          delivered_at: ok ? new Date() : null,
          due_at: ok ? n.due_at : new Date(Date.now() + retry * 1000),
        }).where("id", "=", n.id).execute();
      }));
    }
    return delivered;
  }

  async verifyNotify(headers: Headers, body: string): Promise<VerifiedNotify> {
    const ts = headers.get("x-sandbox-timestamp") ?? "";
    const sig = headers.get("x-sandbox-signature") ?? "";
    if (!/^\d{1,12}$/.test(ts) || Math.abs(Date.now() / 1000 - Number(ts)) > 300) {
      throw new NotifyRejected("sandbox notify timestamp missing or outside the allowed window");
    }
    if (!timingSafeEqual(sig, await this.sign(ts, body))) {
      let orderNo: string | null = null;
      try {
        orderNo = String(JSON.parse(body).order_no ?? "").slice(0, 40) || null;
      } catch { /* unreadable body: no order to name */ }
      throw new NotifyRejected("sandbox notify signature does not verify", orderNo);
    }
    let n: { order_no?: unknown; txn_id?: unknown; amount?: unknown; state?: unknown };
    try {
      n = JSON.parse(body);
    } catch {
      throw new NotifyRejected("sandbox notify body is not JSON");
    }
    if (
      typeof n.order_no !== "string" || typeof n.txn_id !== "string" ||
      !Number.isSafeInteger(n.amount)
    ) {
      throw new NotifyRejected("sandbox notify lacks order_no, txn_id or amount");
    }
    return {
      orderNo: n.order_no,
      txnId: n.txn_id,
      amount: n.amount as number,
      paid: n.state === "SUCCESS",
      state: String(n.state),
    };
  }

  answer(ok: boolean, message: string): NotifyAnswer {
    return ok
      ? { status: 200, body: JSON.stringify({ code: "SUCCESS" }), contentType: "application/json" }
      : {
        status: 401,
        body: JSON.stringify({ code: "FAIL", message }),
        contentType: "application/json",
      };
  }

  async query(orderNo: string): Promise<GatewayQuery> {
    const p = await this.payment(orderNo);
    if (!p) return { state: "unknown" };
    if (p.state === "SUCCESS") return { state: "paid", txnId: p.txn_id, amount: p.amount };
    return p.state === "CLOSED" ? { state: "closed" } : { state: "pending" };
  }

  async close(orderNo: string): Promise<"closed" | "paid"> {
    await this.db.updateTable("sandbox_payments").set({ state: "CLOSED" })
      .where("order_no", "=", orderNo).where("state", "=", "NOTPAY").execute();
    const p = await this.payment(orderNo);
    return p?.state === "SUCCESS" ? "paid" : "closed";
  }

  /**
   * Refunds at once, like WeChat Pay for a payment from 零钱: never more than the payment in total,
   * never twice for one refund number.
   */
  async refund(r: GatewayRefund): Promise<RefundStatus> {
    return await this.db.transaction().execute(async (trx) => {
      const payment = await trx.selectFrom("sandbox_payments").selectAll()
        .where("order_no", "=", r.orderNo).forUpdate().executeTakeFirst();
      if (!payment || payment.state !== "SUCCESS") {
        return { state: "closed" as const, detail: "订单未支付，不能退款" };
      }
      const first = await trx.selectFrom("sandbox_refunds").select("refund_id")
        .where("refund_no", "=", r.refundNo).executeTakeFirst();
      if (first) return { state: "succeeded" as const, refundId: first.refund_id };
      const done = await trx.selectFrom("sandbox_refunds")
        .select((eb) => eb.fn.coalesce(eb.fn.sum<number>("amount"), eb.lit(0)).as("total"))
        .where("order_no", "=", r.orderNo).executeTakeFirstOrThrow();
      if (Number(done.total) + r.amount > payment.amount) {
        return { state: "closed" as const, detail: "退款金额超过订单可退金额" };
      }
      const refundId = `SBXR${Date.now()}${randomDigits(8)}`;
      await trx.insertInto("sandbox_refunds").values({
        refund_no: r.refundNo,
        order_no: r.orderNo,
        amount: r.amount,
        refund_id: refundId,
      }).execute();
      return { state: "succeeded" as const, refundId };
    });
  }

  async queryRefund(refundNo: string): Promise<RefundStatus> {
    const row = await this.db.selectFrom("sandbox_refunds").select("refund_id")
      .where("refund_no", "=", refundNo).executeTakeFirst();
    return row ? { state: "succeeded", refundId: row.refund_id } : { state: "unknown" };
  }

  /** The sandbox's statement of successful payments between two times, as the CSV finance uploads. */
  async statementCsv(from: Date, to: Date): Promise<string> {
    const rows = await this.db.selectFrom("sandbox_payments").selectAll()
      .where("state", "=", "SUCCESS").where("paid_at", ">=", from).where("paid_at", "<", to)
      .orderBy("paid_at").execute();
    return writeCsv([
      ["交易时间", "商户订单号", "微信支付订单号", "金额(元)", "状态"],
      ...rows.map((r) => [
        chinaDateTime(r.paid_at!),
        r.order_no,
        r.txn_id,
        fenToYuanText(r.amount),
        "SUCCESS",
      ]),
    ], { bom: false });
  }
}

/** Sets how the sandbox answers (its notify mode), with the staff member's audit record. */
export async function switchSandboxMode(
  db: Db,
  sandbox: SandboxGateway,
  actor: { staffId: number; ip: string | null },
  mode: SandboxMode,
): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const before = await sandbox.mode(trx);
    await sandbox.setMode(mode, trx);
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "topup.sandbox_mode",
      targetType: "sandbox",
      targetId: "notify_mode",
      before: { mode: before },
      after: { mode },
      ip: actor.ip,
    });
  });
}
