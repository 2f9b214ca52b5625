/**
 * The project's one job mechanism: work kept in a table, claimed by workers on every server
 * instance with a lease (`for update skip locked`, so two never claim the same job), retried with
 * backoff, and left in a final state the owner names. Billing's meter deliveries and the
 * notifier's messages both run on it.
 *
 * A queue lives in its owner's table (walls hold in SQL: the owner names it), which carries the
 * job columns beside its own: the key, `state`, `attempts`, `next_attempt_at`, `lease_token`,
 * `lease_expires_at`, `last_error`, `updated_at`. A job is due when its state is one of the
 * queue's active states, `next_attempt_at` has come and no live lease holds it. Every change a
 * worker makes after claiming goes through `settleJob`, which applies only while the worker still
 * holds the lease: a worker that lost it (it stalled past `leaseMs`, another took the job over)
 * changes nothing.
 */
import { type RawBuilder, sql } from "kysely";
import type { Db } from "./database.ts";
import { randomToken } from "./crypto.ts";
import type { Logger } from "./log.ts";
import { startLoop } from "./loop.ts";

/** Where a queue's jobs are kept and which of their states wait for a worker. */
export interface JobQueue<S extends string = string> {
  /** For logs and for waking this queue's workers. */
  name: string;
  /** The owner's table. */
  table: string;
  /** Its key column (a bigint). */
  key: string;
  /** States a worker claims (when due). */
  active: readonly S[];
}

/** Declares a queue (its table must carry the job columns, see above). */
export function jobQueue<S extends string>(def: JobQueue<S>): JobQueue<S> {
  if (!/^[a-z_][a-z0-9_]*$/.test(def.table) || !/^[a-z_][a-z0-9_]*$/.test(def.key)) {
    throw new Error(`Cannot declare job queue ${def.name}: bad table or key name`);
  }
  // Written into the claim as literals (claimStatement).
  if (!def.active.length || !def.active.every((s) => /^[a-z_]+$/.test(s))) {
    throw new Error(`Cannot declare job queue ${def.name}: bad active state`);
  }
  return def;
}

/** A job one worker holds until its lease runs out. */
export interface ClaimedJob<S extends string = string> {
  key: number;
  state: S;
  /** Attempts so far, this one included. */
  attempts: number;
  leaseToken: string;
}

/** How a queue's worker retries. */
export interface RetryPolicy {
  /** First retry delay; doubles each attempt up to `maxDelayMs`. */
  baseDelayMs: number;
  maxDelayMs: number;
}

/** Delay before retry number `attempt` (1-based): base × 2^(attempt−1), capped. */
export function backoffMs(policy: RetryPolicy, attempt: number): number {
  return Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt - 1));
}

/**
 * Claims up to `limit` due jobs for one worker, oldest due first, each for `leaseMs`, and counts
 * the attempt. `where` narrows the claim further (SQL over the owner's columns).
 */
export async function claimJobs<S extends string>(
  db: Db,
  queue: JobQueue<S>,
  options: ClaimOptions,
): Promise<ClaimedJob<S>[]> {
  const token = randomToken(12);
  const result = await claimStatement<S>(queue, options, token).execute(db);
  return result.rows.map((r) => ({ ...r, key: Number(r.key), leaseToken: token }));
}

/** What `claimJobs` takes: the clock, the lease, how many, and an owner's narrowing. */
export type ClaimOptions = {
  now: Date;
  leaseMs: number;
  limit: number;
  where?: RawBuilder<boolean>;
};

/** `claimJobs`'s one statement, leasing with `token` (tests read its plan). */
export function claimStatement<S extends string>(
  queue: JobQueue<S>,
  options: ClaimOptions,
  token: string,
): RawBuilder<{ key: number; state: S; attempts: number }> {
  const { now } = options;
  const leaseUntil = new Date(now.getTime() + options.leaseMs);
  const t = sql.table(queue.table);
  const k = sql.ref(queue.key);
  const extra = options.where ? sql`and (${options.where})` : sql``;
  // The active states are literals, not parameters: a queue's due index is partial (where state
  // = 'queued'), and a plan made without the values (platform/database.ts) can use it only so.
  const active = sql.join(queue.active.map((s) => sql.lit(s)));
  return sql<{ key: number; state: S; attempts: number }>`
    with due as (
      select ${k} from ${t}
      where state in (${active})
        and next_attempt_at <= ${now}
        and (lease_expires_at is null or lease_expires_at <= ${now})
        ${extra}
      order by next_attempt_at
      limit ${options.limit}
      for update skip locked
    )
    update ${t} j
       set lease_token = ${token}, lease_expires_at = ${leaseUntil}, updated_at = ${now},
           attempts = j.attempts + 1
      from due
     where j.${k} = due.${k}
    returning j.${k} as key, j.state, j.attempts`;
}

/** What settling a held job changes: its state, when it is next due, the error, owner columns. */
export interface JobChange<S extends string> {
  state?: S;
  /** When the job is next due (with an active state). */
  nextAttemptAt?: Date;
  /** The error of this attempt (kept to 500 characters), or null to clear it. */
  lastError?: string | null;
  /** The owner's own columns of the job's row. */
  set?: Record<string, unknown>;
}

/**
 * Applies `change` to a job this worker still holds and releases its lease (unless `keepLease`:
 * the worker goes on with the job); with `states`, only while the job is in one of them. False
 * (nothing changed) when the lease was lost.
 */
export async function settleJob<S extends string>(
  db: Db,
  queue: JobQueue<S>,
  job: ClaimedJob<S>,
  change: JobChange<S>,
  options: { now: Date; states?: readonly S[]; keepLease?: boolean },
): Promise<boolean> {
  const sets = [sql`updated_at = ${options.now}`];
  if (!options.keepLease) sets.push(sql`lease_token = null`, sql`lease_expires_at = null`);
  if (change.state !== undefined) sets.push(sql`state = ${change.state}`);
  if (change.nextAttemptAt !== undefined) sets.push(sql`next_attempt_at = ${change.nextAttemptAt}`);
  if (change.lastError !== undefined) {
    sets.push(
      sql`last_error = ${change.lastError === null ? null : change.lastError.slice(0, 500)}`,
    );
  }
  for (const [column, value] of Object.entries(change.set ?? {})) {
    sets.push(sql`${sql.ref(column)} = ${value}`);
  }
  const inStates = options.states ? sql`and state in (${sql.join(options.states)})` : sql``;
  const r = await sql`update ${sql.table(queue.table)} set ${sql.join(sets)}
    where ${sql.ref(queue.key)} = ${job.key} and lease_token = ${job.leaseToken} ${inStates}`
    .execute(db);
  return Number(r.numAffectedRows ?? 0) > 0;
}

/**
 * Makes a job due now (staff: 重试), released from any lease; only while it is in one of `states`
 * (default: the active ones), and moved to `state` when given. `resetAttempts` starts its count
 * of attempts again. False when the job is not in such a state.
 */
export async function retryJobNow<S extends string>(
  db: Db,
  queue: JobQueue<S>,
  key: number,
  options: { now: Date; states?: readonly S[]; state?: S; resetAttempts?: boolean },
): Promise<boolean> {
  const sets = [
    sql`next_attempt_at = ${options.now}`,
    sql`lease_token = null`,
    sql`lease_expires_at = null`,
    sql`updated_at = ${options.now}`,
  ];
  if (options.state) sets.push(sql`state = ${options.state}`);
  if (options.resetAttempts) sets.push(sql`attempts = 0`);
  const r = await sql`update ${sql.table(queue.table)} set ${sql.join(sets)}
    where ${sql.ref(queue.key)} = ${key}
      and state in (${sql.join(options.states ?? queue.active)})`.execute(db);
  return Number(r.numAffectedRows ?? 0) > 0;
}

/** How many jobs a queue holds in each state, and how many of the active ones are due now. */
export async function jobCounts<S extends string>(
  db: Db,
  queue: JobQueue<S>,
  now: Date,
): Promise<{ byState: Partial<Record<S, number>>; due: number; leased: number }> {
  const { rows } = await sql<{ state: S; n: number; due: number; leased: number }>`
    select state, count(*)::int as n,
           count(*) filter (where next_attempt_at <= ${now}
             and (lease_expires_at is null or lease_expires_at <= ${now}))::int as due,
           count(*) filter (where lease_expires_at > ${now})::int as leased
      from ${sql.table(queue.table)} group by state`.execute(db);
  const active = new Set<string>(queue.active);
  const byState: Partial<Record<S, number>> = {};
  let due = 0;
  let leased = 0;
  for (const r of rows) {
    byState[r.state] = r.n;
    if (active.has(r.state)) {
      due += r.due;
      leased += r.leased;
    }
  }
  return { byState, due, leased };
}

const wakers = new Map<string, Set<() => void>>();

/** Wakes this process's workers of a queue (after new work was committed). */
export function wakeJobWorkers(queue: JobQueue): void {
  for (const w of wakers.get(queue.name) ?? []) w();
}

/** A running worker. */
export interface JobWorker {
  stop(): Promise<void>;
}

/**
 * Starts a worker of `queue`: `run` claims and runs what is due (returning how many it claimed)
 * every `pollMs`, at once when woken, and again without a wait while it finds work. `stop` (for
 * onShutdown) waits for the run in progress; a process killed mid-run leaves its jobs leased
 * until their leases run out, then any instance takes them over.
 */
export function startJobWorker(
  queue: JobQueue,
  options: { log: Logger; pollMs: number; run: () => Promise<number> },
): JobWorker {
  const loop = startLoop({
    name: `${queue.name} worker run`,
    log: options.log,
    everyMs: options.pollMs,
    startAtOnce: true,
    round: async () => await options.run() > 0,
  });
  const waker = () => loop.wake();
  if (!wakers.has(queue.name)) wakers.set(queue.name, new Set());
  wakers.get(queue.name)!.add(waker);
  return {
    async stop() {
      wakers.get(queue.name)?.delete(waker);
      await loop.stop();
    },
  };
}
