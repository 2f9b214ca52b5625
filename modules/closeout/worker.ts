/**
 * 毕业离校's worker: closes each queued card of a confirmed batch once, on any instance, resuming
 * after a crash (platform/jobs.ts: a card is claimed with a lease; a worker that lost it changes
 * nothing). A card is closed in two steps, each a transaction that records what it did:
 * 1. its money's plan is fixed (the cash purse then) with the refunds back to its recent WeChat
 *    top-ups (topup's `refundToOrigin`, references derived from the batch and the card, so a
 *    repeat opens nothing twice), committed only while this worker holds the card (a card with no
 *    top-up to refund when its round began, and none when asked again just before: the plan
 *    alone, one statement, and its money is not read again before step 2);
 * 2. the card is closed (card's `closeCardAccount`: chips cancelled and blocklisted, the login
 *    account unbound) with what is left paid out for the payout list (wallet's
 *    `closeCardWithPayout`, 补助 back to the school), or kept on the closed account when the
 *    balance was below the batch's threshold, or owed when offline payments overdrew it (the
 *    cash stays or is owed; the 补助 goes back to the school either way). Kept or
 *    owed is decided again from the wallet row locked in the close (wallet's `closeCardDeciding`):
 *    the card is active until then, and a payment, a shower start or an offline upload may have
 *    changed it since it was read.
 * A card with a shower hold running waits (retried later); one closed before the batch is
 * recorded as such.
 */
import type { Config } from "../platform/config.ts";
import type { Db } from "../platform/database.ts";
import { DomainError } from "../platform/errors.ts";
import {
  backoffMs,
  type ClaimedJob,
  claimJobs,
  type RetryPolicy,
  settleJob,
  startJobWorker,
} from "../platform/jobs.ts";
import { logger } from "../platform/log.ts";
import {
  CannotCloseError,
  closeCardDeciding,
  closeCardWithPayout,
  type ClosedMoney,
  closingState,
} from "../wallet/mod.ts";
import {
  buildGateways,
  type Gateways,
  refundableByCard,
  refundToOrigin,
  submitRefunds,
} from "../topup/mod.ts";
import { CLOSEOUT_QUEUE } from "./queue.ts";
import { type Batch, type BatchCard, planOf } from "./service.ts";
import "./tables.ts";

const log = logger("closeout");

const RETRY: RetryPolicy = { baseDelayMs: 30_000, maxDelayMs: 30 * 60_000 };
/** After this many attempts a card is failed (staff: 重试失败的卡). */
const MAX_ATTEMPTS = 8;
const LEASE_MS = 120_000;

/** The card is not ready yet (a shower hold running): try again later. */
class NotYet extends Error {}
/** Another worker took the card over: this one stops without changing anything. */
class LeaseLost extends Error {}

type Deps = { db: Db; config: Config };

/** Cards closed at once by one worker: each is a few short transactions of its own. */
const CONCURRENCY = 8;

/**
 * Runs one round: claims up to `limit` due cards and closes them, `concurrency` at a time. Returns
 * how many it claimed.
 */
export async function runCloseoutRound(
  deps: Deps,
  options: {
    gateways?: Gateways;
    now?: Date;
    limit?: number;
    leaseMs?: number;
    concurrency?: number;
  } = {},
): Promise<number> {
  const now = options.now ?? new Date();
  const gateways = options.gateways ?? buildGateways(deps);
  const jobs = await claimJobs(deps.db, CLOSEOUT_QUEUE, {
    now,
    leaseMs: options.leaseMs ?? LEASE_MS,
    limit: options.limit ?? 64,
  });
  if (jobs.length === 0) return 0;
  const rows = new Map(
    (await deps.db.selectFrom("closeout_cards").selectAll()
      .where("id", "in", jobs.map((j) => j.key)).execute()).map((r) => [r.id, r]),
  );
  const batchIds = [...new Set([...rows.values()].map((r) => r.batch_id))];
  const batches = new Map(
    (await deps.db.selectFrom("closeout_batches").selectAll().where("id", "in", batchIds)
      .execute()).map((b) => [b.id, b]),
  );
  // The cards with WeChat top-ups to refund, in one query: the others (most) skip step 1's
  // transaction and its lock on their orders. Unanswered, every card is unknown (null) and takes
  // the transaction, which asks per card.
  const refundable = await refundableOf(
    deps.db,
    gateways,
    [...rows.values()].filter((r) =>
      r.balance === null && batches.get(r.batch_id)?.refund_rule === "origin_first"
    ).map((r) => r.card_account_id),
  );
  let next = 0;
  const lane = async () => {
    while (next < jobs.length) {
      const job = jobs[next++];
      const row = rows.get(job.key);
      if (!row) continue;
      const card = {
        row,
        job,
        refundable: refundable ? refundable.get(row.card_account_id) ?? 0 : null,
      };
      await settleCard(deps, gateways, batches.get(row.batch_id), card);
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(options.concurrency ?? CONCURRENCY, jobs.length) }, lane),
  );
  return jobs.length;
}

/** What of each card's WeChat top-ups could be refunded now; null when the query failed. */
async function refundableOf(
  db: Db,
  gateways: Gateways,
  cardAccountIds: number[],
): Promise<Map<number, number> | null> {
  if (cardAccountIds.length === 0) return new Map();
  try {
    return await refundableByCard(db, gateways, cardAccountIds);
  } catch (err) {
    log.warn("refundable top-ups unknown; each card asks in its own step 1", { err: String(err) });
    return null;
  }
}

/**
 * A claimed card: its row, its job, and what of its WeChat top-ups could be refunded when the
 * round began (0: none, asked again just before step 1; null: unknown, step 1's transaction asks).
 */
interface Claimed {
  row: BatchCard;
  job: ClaimedJob;
  refundable: number | null;
}

/** Closes one claimed card and records the outcome, or when it is tried again and why. */
async function settleCard(
  deps: Deps,
  gateways: Gateways,
  batch: Batch | undefined,
  card: Claimed,
): Promise<void> {
  const { job } = card;
  try {
    if (!batch || batch.state !== "scheduled") throw new Error("batch not scheduled");
    const done = await closeOne(deps, gateways, batch, card);
    await settleJob(deps.db, CLOSEOUT_QUEUE, job, {
      state: "done",
      lastError: null,
      set: { ...done, finished_at: new Date() },
    }, { now: new Date(), states: ["queued"] });
  } catch (err) {
    if (err instanceof LeaseLost) return;
    const why = err instanceof NotYet
      ? err.message
      : err instanceof DomainError
      ? err.userMessage
      : "系统错误，稍后自动重试";
    if (!(err instanceof NotYet) && !(err instanceof DomainError)) {
      log.error("closing a card failed", { cardJob: job.key, err: String(err) });
    }
    const last = job.attempts >= MAX_ATTEMPTS;
    await settleJob(deps.db, CLOSEOUT_QUEUE, job, {
      state: last ? "failed" : "queued",
      nextAttemptAt: new Date(Date.now() + backoffMs(RETRY, job.attempts)),
      lastError: why,
    }, { now: new Date(), states: ["queued"] });
  }
}

async function closeOne(
  deps: Deps,
  gateways: Gateways,
  batch: Batch,
  { row, job, refundable: known }: Claimed,
): Promise<Partial<BatchCard>> {
  const { db } = deps;
  const actor = { staffId: batch.scheduled_by!, ip: null };
  const reason = `毕业离校：${batch.name}`;
  const s = await closingState(db, row.card_account_id);
  if (!s) throw new DomainError("No card", "一卡通账户不存在");
  if (s.card.status === "cancelled") {
    if (row.balance === null) {
      // Closed before the batch came to it (at the counter, say): nothing of ours to do.
      return { outcome: "already_closed", disposition: "none", balance: 0, refunded: 0 };
    }
    // This batch closed it and the worker stopped before it wrote so: record what was done.
    const plan = planOf(batch, {
      cash: row.balance,
      overdraft: s.overdraft,
      refundable: row.refunded ?? 0,
    });
    const paid = s.payouts.find((p) => batch.scheduled_at && p.createdAt >= batch.scheduled_at);
    return paid
      ? { outcome: "closed", disposition: "payout", left_on_card: paid.amount }
      : { outcome: "closed", disposition: plan.disposition, left_on_card: plan.left };
  }
  if (s.held > 0) throw new NotYet("有进行中的热水预授权，结束后自动办理");

  let cash = row.balance;
  let refunded = row.refunded ?? 0;
  let now: Awaited<ReturnType<typeof closingState>> = s;
  let refundable = known;
  if (cash === null) {
    // Step 1: the plan's money is the cash purse now; refunds to origin in the same commit.
    cash = s.cash;
    const plan = planOf(batch, {
      cash,
      overdraft: s.overdraft,
      refundable: Number.MAX_SAFE_INTEGER,
    });
    // Paid since the round asked? A top-up paid after it read 0 is refunded to origin too.
    if (plan.refunded > 0 && refundable === 0) {
      const again = await refundableOf(db, gateways, [row.card_account_id]);
      refundable = again ? again.get(row.card_account_id) ?? 0 : null;
    }
    const opened = plan.refunded > 0 && refundable !== 0
      ? await db.transaction().execute(async (trx) => {
        const r = await refundToOrigin(trx, gateways, {
          cardAccountId: row.card_account_id,
          amount: plan.refunded,
          reason,
          reference: `closeout:${batch.id}:${row.card_account_id}`,
          staffId: actor.staffId,
        });
        await holdPlan(trx, job, cash!, r);
        return r;
      })
      // Nothing to refund, asked when the round began and again just now: the plan alone.
      : await holdPlan(db, job, cash, { refunds: [], refunded: 0 });
    refunded = opened.refunded;
    if (opened.refunds.length > 0) {
      try {
        await submitRefunds(deps, gateways, opened.refunds);
      } catch (err) {
        // The refunds are recorded as processing: the top-up loop asks the gateway again.
        log.warn("a close-out refund waits for the gateway", { err: String(err) });
      }
      // The refunds took money off the card: read what is left.
      now = await closingState(db, row.card_account_id);
    }
  }

  // Step 2: close the card with what is left.
  if (!now) throw new DomainError("No card", "一卡通账户不存在");
  if (now.overdraft > 0 || (cash > 0 && cash < Number(batch.threshold))) {
    // Kept or owed as the card closes, not as it was read: the plan's rule over the locked money.
    const closed = await waitingOnHold(() =>
      closeCardDeciding(db, actor, {
        cardAccountId: row.card_account_id,
        reason,
        choose: (m) => keeps(batch, m) ? "keep" : "payout",
      })
    );
    const m = closed.money;
    if (closed.choice === "keep") {
      return m.overdraft > 0
        ? { outcome: "closed", disposition: "debt", debt: m.overdraft, refunded }
        : { outcome: "closed", disposition: "kept", left_on_card: m.cash, refunded };
    }
    return paidOut(closed.paid, refunded);
  }
  const paid = await waitingOnHold(() =>
    closeCardWithPayout(db, actor, row.card_account_id, reason)
  );
  return paidOut(paid, refunded);
}

/** Whether a card with this money keeps it on its closed account (kept, or owed). */
function keeps(batch: Batch, money: ClosedMoney): boolean {
  const plan = planOf(batch, { cash: money.cash, overdraft: money.overdraft, refundable: 0 });
  return plan.disposition === "kept" || plan.disposition === "debt";
}

/** A shower hold found in the close: the card waits for it (NotYet), as for one found before. */
async function waitingOnHold<T>(close: () => Promise<T>): Promise<T> {
  try {
    return await close();
  } catch (err) {
    if (err instanceof CannotCloseError && err.why === "money on hold") {
      throw new NotYet("有进行中的热水预授权，结束后自动办理");
    }
    throw err;
  }
}

function paidOut(paid: number, refunded: number): Partial<BatchCard> {
  return {
    outcome: "closed",
    disposition: paid > 0 ? "payout" : refunded > 0 ? "refunded" : "none",
    left_on_card: paid,
    refunded,
  };
}

/** The refunds to origin step 1 opened. */
type Opened = Awaited<ReturnType<typeof refundToOrigin>>;

/**
 * Records a card's plan (its cash and what was refunded) while this worker holds the card: a
 * worker that lost it to another changes nothing.
 */
async function holdPlan(
  db: Db,
  job: ClaimedJob,
  cash: number,
  r: Opened,
): Promise<Opened> {
  const held = await db.updateTable("closeout_cards").set({
    balance: cash,
    refunded: r.refunded,
    refund_nos: r.refunds.map((x) => x.refund_no),
  }).where("id", "=", job.key).where("lease_token", "=", job.leaseToken).executeTakeFirst();
  if (Number(held.numUpdatedRows ?? 0) !== 1) throw new LeaseLost();
  return r;
}

/** Starts the worker (main.ts registers its stop with onShutdown). */
export function startCloseoutWorker(deps: Deps): () => Promise<void> {
  const gateways = buildGateways(deps);
  const setting = (name: string, fallback: number) => {
    const n = Number(deps.config.env[name] ?? fallback);
    return Number.isFinite(n) && n > 0 ? n : fallback;
  };
  const pollMs = setting("CLOSEOUT_POLL_MS", 10_000);
  const leaseMs = setting("CLOSEOUT_LEASE_MS", LEASE_MS);
  const worker = startJobWorker(CLOSEOUT_QUEUE, {
    log,
    pollMs,
    run: () => runCloseoutRound(deps, { gateways, leaseMs }),
  });
  return () => worker.stop();
}
