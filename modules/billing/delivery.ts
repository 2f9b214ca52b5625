import type { Db } from "../platform/database.ts";
import { DomainError } from "../platform/errors.ts";
import { logger } from "../platform/log.ts";
import {
  backoffMs as queueBackoffMs,
  type ClaimedJob,
  claimJobs,
  jobQueue,
  retryJobNow,
  settleJob,
  startJobWorker,
  wakeJobWorkers,
} from "../platform/jobs.ts";
import { MeterError } from "./errors.ts";
import type { MeterAdapter, MeterReceipt } from "./meters.ts";
import { recordMeterReading } from "./readings.ts";
import type { JobState, Utility } from "./tables.ts";
import "./tables.ts";

const log = logger("billing.delivery");

/** The wallet calls billing needs; the real ones are in `wallet_link.ts`, tests may wrap them. */
export interface UtilityMoney {
  pay(db: Db, input: {
    cardAccountId: number;
    amount: number;
    utility: Utility;
    reference: string;
    details: Record<string, unknown>;
  }): Promise<{ transferId: number; balanceAfter: number }>;
  refund(
    db: Db,
    input: { originalReference: string; reference: string },
  ): Promise<{ transferId: number }>;
  /** True for the wallet's insufficient-funds refusal. */
  isInsufficientFunds(err: unknown): boolean;
}

/** Wallet reference of a purchase's payment; its refund uses `refundReference`. */
export function payReference(orderNo: string): string {
  return `billing:${orderNo}`;
}

/** Wallet reference of a purchase's refund: one per order, so a refund happens at most once. */
export function refundReference(orderNo: string): string {
  return `billing-refund:${orderNo}`;
}

/** How the worker retries. */
export interface DeliveryPolicy {
  /** Delivery attempts before giving up and refunding. */
  maxAttempts: number;
  /** First retry delay; doubles each attempt up to `maxDelayMs`. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** How long a claimed job stays with one worker; longer than any meter request. */
  leaseMs: number;
  /** A purchase whose web request never finished paying is taken over after this long. */
  payingGraceMs: number;
  batchSize: number;
}

export const DEFAULT_POLICY: DeliveryPolicy = {
  maxAttempts: 6,
  baseDelayMs: 5_000,
  maxDelayMs: 10 * 60_000,
  leaseMs: 60_000,
  payingGraceMs: 2 * 60_000,
  batchSize: 20,
};

/** Everything a worker run needs. `now` is injected so tests move time instead of sleeping. */
export interface WorkerContext {
  db: Db;
  meter: MeterAdapter;
  money: UtilityMoney;
  policy?: Partial<DeliveryPolicy>;
  now?: () => Date;
}

/** Delay before retry number `attempt` (1-based): base × 2^(attempt−1), capped. */
export function backoffMs(policy: DeliveryPolicy, attempt: number): number {
  return queueBackoffMs(policy, attempt);
}

/**
 * The delivery queue (platform/jobs.ts) in billing's own table: a purchase's job is paying (the
 * web request that opened it may not have paid yet), pending (paid, to deliver) or refunding
 * while a worker has something to do; delivered, refunded or declined when it is over.
 */
export const DELIVERY_QUEUE = jobQueue<JobState>({
  name: "billing.delivery",
  table: "billing_delivery_jobs",
  key: "purchase_id",
  active: ["paying", "pending", "refunding"],
});

type Job = ClaimedJob<JobState>;

async function loadPurchase(db: Db, id: number) {
  return await db.selectFrom("billing_purchases")
    .innerJoin("billing_rooms", "billing_rooms.id", "billing_purchases.room_id")
    .innerJoin("billing_buildings", "billing_buildings.id", "billing_rooms.building_id")
    .select([
      "billing_purchases.id",
      "billing_purchases.order_no",
      "billing_purchases.card_account_id",
      "billing_purchases.room_id",
      "billing_purchases.room_label",
      "billing_purchases.utility",
      "billing_purchases.amount",
      "billing_purchases.milli_units",
      "billing_purchases.tariff_id",
      "billing_buildings.code as building_code",
      "billing_rooms.number as room_number",
    ])
    .where("billing_purchases.id", "=", id).executeTakeFirstOrThrow();
}

type Purchase = Awaited<ReturnType<typeof loadPurchase>>;

/** The details the wallet keeps with a utility transfer (shown in 交易记录). */
export function transferDetails(p: {
  order_no: string;
  utility: Utility;
  room_id: number;
  room_label: string;
  tariff_id: number;
  milli_units: number;
}): Record<string, unknown> {
  return {
    orderNo: p.order_no,
    utility: p.utility,
    roomId: p.room_id,
    room: p.room_label,
    label: `${p.utility === "electricity" ? "电费" : "冷水"} · ${p.room_label}`,
    tariffId: p.tariff_id,
    milliUnits: p.milli_units,
  };
}

/** Marks a paid purchase delivering and its job due now; a no-op unless it was still paying. */
export async function markPaid(
  db: Db,
  purchaseId: number,
  transferId: number,
  now: Date,
): Promise<boolean> {
  return await db.transaction().execute(async (trx) => {
    const job = await trx.updateTable("billing_delivery_jobs")
      .set({
        state: "pending",
        next_attempt_at: now,
        lease_token: null,
        lease_expires_at: null,
        updated_at: now,
      })
      .where("purchase_id", "=", purchaseId).where("state", "=", "paying").executeTakeFirst();
    if (Number(job.numUpdatedRows) === 0) return false;
    await trx.updateTable("billing_purchases")
      .set({ status: "delivering", transfer_id: transferId, paid_at: now })
      .where("id", "=", purchaseId).where("status", "=", "paying").execute();
    return true;
  });
}

/** Marks a purchase the wallet refused (insufficient balance); a no-op unless still paying. */
export async function markDeclined(db: Db, purchaseId: number, now: Date): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const job = await trx.updateTable("billing_delivery_jobs")
      .set({ state: "declined", lease_token: null, lease_expires_at: null, updated_at: now })
      .where("purchase_id", "=", purchaseId).where("state", "=", "paying").executeTakeFirst();
    if (Number(job.numUpdatedRows) === 0) return;
    await trx.updateTable("billing_purchases").set({ status: "declined" })
      .where("id", "=", purchaseId).where("status", "=", "paying").execute();
  });
}

/** Records a meter receipt: the job and purchase delivered, the room's reported credit. */
async function markDelivered(
  db: Db,
  job: Job,
  p: Purchase,
  receipt: MeterReceipt,
  now: Date,
): Promise<boolean> {
  return await db.transaction().execute(async (trx) => {
    const held = await settleJob(trx, DELIVERY_QUEUE, job, {
      state: "delivered",
      lastError: null,
    }, { now, states: ["pending", "refunding"] });
    if (!held) return false;
    await trx.updateTable("billing_purchases").set({ status: "delivered", delivered_at: now })
      .where("id", "=", p.id).execute();
    await recordMeterReading(trx, p.room_id, p.utility, receipt);
    return true;
  });
}

/** Leaves a job for a later attempt, recording why; only while this worker holds the lease. */
async function postpone(
  db: Db,
  job: Job,
  state: JobState,
  at: Date,
  error: string,
  now: Date,
) {
  await settleJob(db, DELIVERY_QUEUE, job, { state, nextAttemptAt: at, lastError: error }, { now });
}

/** Gives the money back, once: the wallet refund is idempotent on the refund reference. */
async function refund(ctx: WorkerContext, job: Job, p: Purchase, now: Date): Promise<void> {
  const { transferId } = await ctx.money.refund(ctx.db, {
    originalReference: payReference(p.order_no),
    reference: refundReference(p.order_no),
  });
  await ctx.db.transaction().execute(async (trx) => {
    const held = await settleJob(trx, DELIVERY_QUEUE, job, { state: "refunded" }, {
      now,
      states: ["refunding"],
    });
    if (!held) return;
    await trx.updateTable("billing_purchases")
      .set({ status: "refunded", refund_transfer_id: transferId, refunded_at: now })
      .where("id", "=", p.id).execute();
  });
  log.info("utility purchase refunded", { orderNo: p.order_no, amount: p.amount });
}

/** Gives up on delivery: unless the meter has the order after all, switch to refunding. */
async function giveUp(ctx: WorkerContext, job: Job, p: Purchase, reason: string, now: Date) {
  let found: MeterReceipt | null = null;
  try {
    found = await ctx.meter.lookup(p.order_no);
  } catch (err) {
    // The meter system cannot say; the order was never acknowledged, so the student gets the money back.
    log.warn("meter lookup failed before refund", {
      orderNo: p.order_no,
      err: (err as Error).message,
    });
  }
  if (found) {
    await markDelivered(ctx.db, job, p, found, now);
    return;
  }
  const held = await settleJob(ctx.db, DELIVERY_QUEUE, job, {
    state: "refunding",
    lastError: reason,
  }, { now, states: ["pending"], keepLease: true });
  if (!held) return;
  job.state = "refunding";
  await refund(ctx, job, p, now);
}

async function runJob(
  ctx: WorkerContext,
  policy: DeliveryPolicy,
  job: Job,
  now: Date,
): Promise<void> {
  const p = await loadPurchase(ctx.db, job.key);
  if (job.state === "paying") {
    // The web request that created it never finished: finish paying with the same reference.
    try {
      const { transferId } = await ctx.money.pay(ctx.db, {
        cardAccountId: p.card_account_id,
        amount: p.amount,
        utility: p.utility,
        reference: payReference(p.order_no),
        details: transferDetails(p),
      });
      await markPaid(ctx.db, p.id, transferId, now);
    } catch (err) {
      // The wallet's refusal is final (no money moved); anything else may be passing.
      if (ctx.money.isInsufficientFunds(err) || err instanceof DomainError) {
        log.warn("utility payment refused by the wallet", {
          orderNo: p.order_no,
          err: (err as Error).message,
        });
        return await markDeclined(ctx.db, p.id, now);
      }
      await postpone(
        ctx.db,
        job,
        "paying",
        new Date(now.getTime() + backoffMs(policy, job.attempts)),
        String(err),
        now,
      );
    }
    return;
  }
  if (job.state === "refunding") {
    try {
      await refund(ctx, job, p, now);
    } catch (err) {
      log.error("utility refund failed", { orderNo: p.order_no, err: (err as Error).message });
      await postpone(
        ctx.db,
        job,
        "refunding",
        new Date(now.getTime() + backoffMs(policy, Math.max(1, job.attempts - policy.maxAttempts))),
        String(err),
        now,
      );
    }
    return;
  }
  try {
    const receipt = await ctx.meter.deliver({
      orderNo: p.order_no,
      roomId: p.room_id,
      buildingCode: p.building_code,
      roomNumber: p.room_number,
      utility: p.utility,
      amount: p.amount,
      milliUnits: p.milli_units,
    });
    await markDelivered(ctx.db, job, p, receipt, now);
  } catch (err) {
    const message = (err as Error).message;
    const retryable = err instanceof MeterError ? err.retryable : true;
    if (!retryable || job.attempts >= policy.maxAttempts) {
      log.warn("utility delivery failed for good", {
        orderNo: p.order_no,
        attempts: job.attempts,
        err: message,
      });
      try {
        await giveUp(ctx, job, p, message, now);
      } catch (refundErr) {
        log.error("utility refund failed", {
          orderNo: p.order_no,
          err: (refundErr as Error).message,
        });
        await postpone(
          ctx.db,
          job,
          "refunding",
          new Date(now.getTime() + policy.baseDelayMs),
          String(refundErr),
          now,
        );
      }
      return;
    }
    const at = new Date(now.getTime() + backoffMs(policy, job.attempts));
    log.info("utility delivery will be retried", {
      orderNo: p.order_no,
      attempts: job.attempts,
      at,
      err: message,
    });
    await postpone(ctx.db, job, "pending", at, message, now);
  }
}

/** Runs every job due now once; returns how many were claimed. Safe to run on many instances. */
export async function runDueJobs(ctx: WorkerContext): Promise<number> {
  const policy = { ...DEFAULT_POLICY, ...ctx.policy };
  const now = ctx.now?.() ?? new Date();
  const jobs = await claimJobs(ctx.db, DELIVERY_QUEUE, {
    now,
    leaseMs: policy.leaseMs,
    limit: policy.batchSize,
  });
  // All at once: each job then finishes within one meter timeout, well inside its lease.
  await Promise.all(jobs.map(async (job) => {
    try {
      await runJob(ctx, policy, job, ctx.now?.() ?? new Date());
    } catch (err) {
      log.error("delivery job crashed", { purchaseId: job.key, err: (err as Error).stack });
    }
  }));
  return jobs.length;
}

/** Staff: try a failed or stuck job again now (a pending one with a fresh count of attempts). */
export async function retryJob(db: Db, purchaseId: number, now = new Date()): Promise<boolean> {
  return await retryJobNow(db, DELIVERY_QUEUE, purchaseId, {
    now,
    states: ["pending"],
    resetAttempts: true,
  }) || await retryJobNow(db, DELIVERY_QUEUE, purchaseId, {
    now,
    states: ["paying", "refunding"],
  });
}

/**
 * Staff: stop delivering a paid purchase and refund it (the worker does the refund, now).
 * Refused once delivered, refunded or never paid.
 */
export async function requestRefund(
  db: Db,
  purchaseId: number,
  now = new Date(),
): Promise<boolean> {
  return await retryJobNow(db, DELIVERY_QUEUE, purchaseId, {
    now,
    states: ["pending"],
    state: "refunding",
  });
}

/** Wakes this process's delivery workers (after a purchase was paid). */
export function wakeDeliveryWorkers(): void {
  wakeJobWorkers(DELIVERY_QUEUE);
}

/** A running worker loop. */
export interface DeliveryWorker {
  stop(): Promise<void>;
}

/**
 * Starts a worker that runs due jobs every `pollMs`, or at once when woken. Stop it on shutdown:
 * `stop` waits for the current run to finish.
 */
export function startDeliveryWorker(
  ctx: WorkerContext,
  options: { pollMs?: number } = {},
): DeliveryWorker {
  return startJobWorker(DELIVERY_QUEUE, {
    log,
    pollMs: options.pollMs ?? 1000,
    run: () => runDueJobs(ctx),
  });
}
