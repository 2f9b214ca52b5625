import assert from "node:assert/strict";
import { sql } from "kysely";
import { openDatabase } from "./database.ts";
import { createTestDatabase } from "./testing.ts";
import {
  backoffMs,
  claimJobs,
  claimStatement,
  jobCounts,
  jobQueue,
  retryJobNow,
  settleJob,
  startJobWorker,
  wakeJobWorkers,
} from "./jobs.ts";
import { logger } from "./log.ts";

const QUEUE = jobQueue<"todo" | "done" | "failed">({
  name: "test.jobs",
  table: "test_jobs",
  key: "id",
  active: ["todo"],
});

const T0 = new Date();

/** A test database with `n` due jobs in a table of their own (dropped again at the end). */
async function withJobs(n: number) {
  const h = await createTestDatabase();
  // The embedded test database is reset, not dropped, between tests: no table may stay behind.
  await sql`drop table if exists test_jobs`.execute(h.db);
  await sql`create table test_jobs (
    id bigint primary key, state text not null, attempts int not null default 0,
    next_attempt_at timestamptz not null, lease_token text, lease_expires_at timestamptz,
    last_error text, updated_at timestamptz not null default now(), note text)`.execute(h.db);
  for (let i = 1; i <= n; i++) {
    await sql`insert into test_jobs (id, state, next_attempt_at)
      values (${i}, 'todo', ${new Date(T0.getTime() - 1000)})`.execute(h.db);
  }
  return {
    ...h,
    async [Symbol.asyncDispose]() {
      await sql`drop table test_jobs`.execute(h.db);
      await h.close();
    },
  };
}
const LEASE = { leaseMs: 60_000, limit: 100 };

Deno.test("two workers claiming at once never hold the same job", async () => {
  await using h = await withJobs(40);
  // On PostgreSQL a second pool is a second instance; PGlite has one connection anyway.
  const other = h.url ? await openDatabase({ databaseUrl: h.url, poolSize: 4 }) : null;
  try {
    const [a, b] = await Promise.all([
      claimJobs(h.db, QUEUE, { now: T0, ...LEASE, limit: 25 }),
      claimJobs(other?.db ?? h.db, QUEUE, { now: T0, ...LEASE, limit: 25 }),
    ]);
    const keys = [...a, ...b].map((j) => j.key);
    assert.equal(new Set(keys).size, keys.length, "no job claimed twice");
    assert.equal(keys.length, 40, "every due job claimed by one of them");
    assert.deepEqual(await claimJobs(h.db, QUEUE, { now: T0, ...LEASE }), [], "all leased");
  } finally {
    await other?.close();
  }
});

Deno.test("a lease that ran out is taken over, and the stalled worker can no longer settle", async () => {
  await using h = await withJobs(1);
  const [first] = await claimJobs(h.db, QUEUE, { now: T0, ...LEASE });
  assert.equal(first.attempts, 1);
  const later = new Date(T0.getTime() + LEASE.leaseMs + 1);
  const [second] = await claimJobs(h.db, QUEUE, { now: later, ...LEASE });
  assert.equal(second.key, first.key);
  assert.equal(second.attempts, 2);
  assert.equal(await settleJob(h.db, QUEUE, first, { state: "done" }, { now: later }), false);
  assert.equal(
    await settleJob(h.db, QUEUE, second, { state: "done", set: { note: "ok" } }, { now: later }),
    true,
  );
  const row = await sql<{ state: string; note: string; lease_token: string | null }>`
    select state, note, lease_token from test_jobs where id = 1`.execute(h.db);
  assert.deepEqual(row.rows[0], { state: "done", note: "ok", lease_token: null });
});

Deno.test("a postponed job is not due before its time; staff retry makes it due now", async () => {
  await using h = await withJobs(1);
  const [job] = await claimJobs(h.db, QUEUE, { now: T0, ...LEASE });
  const policy = { baseDelayMs: 1000, maxDelayMs: 8000 };
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => backoffMs(policy, n)), [
    1000,
    2000,
    4000,
    8000,
    8000,
  ]);
  const at = new Date(T0.getTime() + backoffMs(policy, job.attempts));
  assert.ok(
    await settleJob(h.db, QUEUE, job, { nextAttemptAt: at, lastError: "x".repeat(900) }, {
      now: T0,
    }),
  );
  assert.deepEqual(await claimJobs(h.db, QUEUE, { now: T0, ...LEASE }), []);
  const counts = await jobCounts(h.db, QUEUE, T0);
  assert.deepEqual(counts, { byState: { todo: 1 }, due: 0, leased: 0 });
  assert.ok(await retryJobNow(h.db, QUEUE, 1, { now: T0, resetAttempts: true }));
  const [again] = await claimJobs(h.db, QUEUE, { now: T0, ...LEASE });
  assert.equal(again.attempts, 1);
  const err = await sql<{ n: number }>`select length(last_error) as n from test_jobs`.execute(h.db);
  assert.equal(err.rows[0].n, 500);
  assert.ok(await settleJob(h.db, QUEUE, again, { state: "failed" }, { now: T0 }));
  assert.equal(await retryJobNow(h.db, QUEUE, 1, { now: T0 }), false, "a final job stays final");
  assert.ok(await retryJobNow(h.db, QUEUE, 1, { now: T0, states: ["failed"], state: "todo" }));
});

Deno.test("a woken worker runs at once, and stop waits for its run", async () => {
  await using h = await withJobs(3);
  let runs = 0;
  const done = [Promise.withResolvers<void>(), Promise.withResolvers<void>()];
  const worker = startJobWorker(QUEUE, {
    log: logger("test"),
    pollMs: 3_600_000,
    run: async () => {
      runs++;
      const jobs = await claimJobs(h.db, QUEUE, { now: new Date(), ...LEASE });
      for (const j of jobs) await settleJob(h.db, QUEUE, j, { state: "done" }, { now: new Date() });
      if (runs === 2) done[0].resolve();
      if (runs === 3) done[1].resolve();
      return jobs.length;
    },
  });
  // Run 1 finds the three jobs, run 2 finds none and waits an hour; the wake starts run 3.
  await done[0].promise;
  wakeJobWorkers(QUEUE);
  await done[1].promise;
  await worker.stop();
  const counts = await jobCounts(h.db, QUEUE, new Date());
  assert.deepEqual(counts.byState, { done: 3 });
});

Deno.test("the claim names its active states as literals: a queue's partial due index serves it in a generic plan", async () => {
  await using h = await withJobs(5);
  await sql`insert into test_jobs (id, state, next_attempt_at)
    select g, 'done', now() - interval '1 day' from generate_series(100, 5099) g`.execute(h.db);
  await sql`create index test_jobs_due on test_jobs (next_attempt_at) where state = 'todo'`
    .execute(h.db);
  await sql`analyze test_jobs`.execute(h.db);
  const q = claimStatement(QUEUE, { now: T0, ...LEASE }, "plan-token").compile(h.db);
  assert.match(q.sql, /state in \('todo'\)/);
  // A plan made without the values, as every statement's is (platform/database.ts).
  await h.db.transaction().execute(async (trx) => {
    await sql`set local plan_cache_mode = force_generic_plan`.execute(trx);
    await sql`prepare claim_plan as ${sql.raw(q.sql)}`.execute(trx);
    const values = q.parameters.map((v) =>
      v instanceof Date ? sql.lit(v.toISOString()) : sql.lit(v as string | number)
    );
    const plan = await sql<{ "QUERY PLAN": string }>`explain execute claim_plan(${
      sql.join(values)
    })`.execute(trx);
    await sql`deallocate claim_plan`.execute(trx);
    assert.match(plan.rows.map((r) => r["QUERY PLAN"]).join("\n"), /test_jobs_due/);
  });
  // And it claims what is due, as before.
  assert.equal((await claimJobs(h.db, QUEUE, { now: T0, ...LEASE })).length, 5);
});

Deno.test("a queue whose active state is not a plain word is refused at its declaration", () => {
  assert.throws(
    () => jobQueue({ name: "bad", table: "test_jobs", key: "id", active: ["todo'; drop"] }),
    /bad active state/,
  );
});
