import assert from "node:assert/strict";
import { getBalance, ReferenceConflictError } from "../wallet/mod.ts";
import { openDatabase } from "../platform/database.ts";
import { makeStudent, setupApp, type TestWorld } from "../testkit/mod.ts";
import { assertLedgerBalanced, countingMoney, makeRooms } from "./_testing.ts";
import {
  backoffMs,
  DEFAULT_POLICY,
  runDueJobs,
  startDeliveryWorker,
  type UtilityMoney,
  wakeDeliveryWorkers,
} from "./delivery.ts";
import { MeterError } from "./errors.ts";
import { type MeterAdapter, type MeterOrder, setSimulatedFault, SimulatedMeter } from "./meters.ts";
import { findPurchase, purchaseUtility } from "./purchases.ts";
import { chooseRoom } from "./rooms.ts";
import { walletMoney } from "./wallet_link.ts";

const POLICY = { maxAttempts: 3, baseDelayMs: 1_000, leaseMs: 30_000, payingGraceMs: 120_000 };

/** A clock tests move by hand. */
function clock(start = Date.now()) {
  let t = start;
  return { now: () => new Date(t), advance: (ms: number) => (t += ms) };
}

async function paidPurchase(
  w: TestWorld,
  amount = 20_00,
  money: UtilityMoney = walletMoney,
  balance = 100_00,
) {
  const { r101 } = await makeRooms(w.db);
  const s = await makeStudent(w, { balance });
  await chooseRoom(w.db, s.accountId, r101.id);
  const p = await purchaseUtility(w.db, money, {
    payer: { accountId: s.accountId, cardAccountId: s.cardAccountId!, name: "张三" },
    utility: "electricity",
    amount,
    token: `tok-${crypto.randomUUID()}`,
  });
  return { s, p, room: r101 };
}

async function jobOf(w: TestWorld, purchaseId: number) {
  return await w.db.selectFrom("billing_delivery_jobs").selectAll().where(
    "purchase_id",
    "=",
    purchaseId,
  )
    .executeTakeFirstOrThrow();
}

Deno.test("when the meter keeps failing, two racing workers refund exactly once after the retries", async () => {
  await using w = await setupApp();
  const { s, p } = await paidPurchase(w);
  assert.equal((await getBalance(w.db, s.cardAccountId!)).balance, 80_00);
  await setSimulatedFault(w.db, null, true);
  const c = clock();
  // The first refund reaches the wallet, then its worker dies before recording it.
  let crashOnce = true;
  const money = countingMoney();
  const flaky: UtilityMoney = {
    ...money,
    pay: money.pay,
    isInsufficientFunds: money.isInsufficientFunds,
    async refund(db, input) {
      const r = await money.refund(db, input);
      if (crashOnce) {
        crashOnce = false;
        throw new Error("worker died after the wallet refund");
      }
      return r;
    },
  };
  const ctx = {
    db: w.db,
    meter: new SimulatedMeter(w.db),
    money: flaky,
    policy: POLICY,
    now: c.now,
  };
  for (let round = 0; round < 12; round++) {
    if (round === 1) {
      // A worker on another instance claims the job and dies: nobody may touch it until its lease ends.
      await w.db.updateTable("billing_delivery_jobs")
        .set({
          lease_token: "dead-worker",
          lease_expires_at: new Date(c.now().getTime() + POLICY.leaseMs),
        })
        .where("purchase_id", "=", p.id).execute();
      assert.deepEqual(await Promise.all([runDueJobs(ctx), runDueJobs(ctx)]), [0, 0]);
      c.advance(POLICY.leaseMs);
    }
    await Promise.all([runDueJobs(ctx), runDueJobs(ctx)]);
    c.advance(60_000);
  }
  const job = await jobOf(w, p.id);
  assert.equal(job.state, "refunded");
  assert.equal(
    job.attempts,
    POLICY.maxAttempts + 1,
    "three deliveries, then one more try at the refund",
  );
  assert.equal((await findPurchase(w.db, p.id))?.status, "refunded");
  assert.equal(money.refunds, 2, "the refund was asked twice (one worker died)");
  assert.equal(
    (await getBalance(w.db, s.cardAccountId!)).balance,
    100_00,
    "but the money came back once",
  );
  assert.equal(await runDueJobs(ctx), 0);
  const meter = await w.db.selectFrom("billing_sim_meters").select("balance").executeTakeFirst();
  assert.equal(meter, undefined, "nothing reached the failing meter");
  await assertLedgerBalanced(w.db);
});

Deno.test("retries back off exponentially and recover when the meter comes back", async () => {
  await using w = await setupApp();
  const { p, room } = await paidPurchase(w);
  await setSimulatedFault(w.db, room.id, true);
  const c = clock();
  const ctx = {
    db: w.db,
    meter: new SimulatedMeter(w.db),
    money: walletMoney,
    policy: { ...POLICY, maxAttempts: 6 },
    now: c.now,
  };
  const t0 = c.now().getTime();
  assert.equal(await runDueJobs(ctx), 1);
  let job = await jobOf(w, p.id);
  assert.equal(job.state, "pending");
  assert.equal(job.next_attempt_at.getTime() - t0, 1_000);
  assert.match(job.last_error ?? "", /Simulated meter fault/);
  c.advance(999);
  assert.equal(await runDueJobs(ctx), 0, "not due before its backoff");
  c.advance(1);
  assert.equal(await runDueJobs(ctx), 1);
  job = await jobOf(w, p.id);
  assert.equal(job.next_attempt_at.getTime() - c.now().getTime(), 2_000);
  assert.equal(backoffMs({ ...DEFAULT_POLICY }, 3), 20_000);
  assert.equal(backoffMs({ ...DEFAULT_POLICY }, 30), DEFAULT_POLICY.maxDelayMs);
  await setSimulatedFault(w.db, room.id, false);
  c.advance(2_000);
  assert.equal(await runDueJobs(ctx), 1);
  assert.equal((await findPurchase(w.db, p.id))?.status, "delivered");
  const reading = await w.db.selectFrom("billing_room_meters").select("balance")
    .executeTakeFirstOrThrow();
  assert.equal(reading.balance, 20_00);
});

Deno.test("a delivery whose receipt was lost is credited once when retried", async () => {
  await using w = await setupApp();
  const { p } = await paidPurchase(w);
  const real = new SimulatedMeter(w.db);
  let lose = 1;
  const lossy: MeterAdapter = {
    name: "lossy",
    async deliver(order: MeterOrder) {
      const r = await real.deliver(order);
      if (lose-- > 0) throw new MeterError("connection reset before the receipt", true);
      return r;
    },
    lookup: (no) => real.lookup(no),
  };
  const c = clock();
  const ctx = { db: w.db, meter: lossy, money: walletMoney, policy: POLICY, now: c.now };
  await runDueJobs(ctx);
  assert.equal((await findPurchase(w.db, p.id))?.status, "delivering");
  c.advance(5_000);
  await runDueJobs(ctx);
  assert.equal((await findPurchase(w.db, p.id))?.status, "delivered");
  const meter = await w.db.selectFrom("billing_sim_meters").select("balance")
    .executeTakeFirstOrThrow();
  assert.equal(meter.balance, 20_00);
});

Deno.test("giving up checks the meter first: an order it applied is delivered, not refunded", async () => {
  await using w = await setupApp();
  const { s, p } = await paidPurchase(w);
  const real = new SimulatedMeter(w.db);
  const mute: MeterAdapter = {
    name: "mute",
    async deliver(order) {
      await real.deliver(order);
      throw new MeterError("timeout", true);
    },
    lookup: (no) => real.lookup(no),
  };
  const money = countingMoney();
  const c = clock();
  const ctx = { db: w.db, meter: mute, money, policy: POLICY, now: c.now };
  for (let i = 0; i < POLICY.maxAttempts; i++) {
    await runDueJobs(ctx);
    c.advance(60_000);
  }
  assert.equal((await findPurchase(w.db, p.id))?.status, "delivered");
  assert.equal(money.refunds, 0);
  assert.equal((await getBalance(w.db, s.cardAccountId!)).balance, 80_00);
});

Deno.test("a refusal the meter will not change (4xx) refunds at once", async () => {
  await using w = await setupApp();
  const { s, p } = await paidPurchase(w);
  const refusing: MeterAdapter = {
    name: "refusing",
    deliver: () => Promise.reject(new MeterError("unknown room", false)),
    lookup: () => Promise.resolve(null),
  };
  assert.equal(
    await runDueJobs({ db: w.db, meter: refusing, money: walletMoney, policy: POLICY }),
    1,
  );
  assert.equal((await findPurchase(w.db, p.id))?.status, "refunded");
  assert.equal((await getBalance(w.db, s.cardAccountId!)).balance, 100_00);
  await assertLedgerBalanced(w.db);
});

Deno.test("a purchase whose web request died after paying is finished by the worker, paid once", async () => {
  await using w = await setupApp();
  const dying: UtilityMoney = {
    ...walletMoney,
    async pay(db, input) {
      await walletMoney.pay(db, input);
      throw new Error("process killed after the wallet committed");
    },
  };
  await assert.rejects(paidPurchase(w, 20_00, dying), /process killed/);
  const p = await w.db.selectFrom("billing_purchases").select(["id", "card_account_id"])
    .executeTakeFirstOrThrow();
  assert.equal((await findPurchase(w.db, p.id))?.status, "paying");
  const c = clock();
  const money = countingMoney();
  const ctx = { db: w.db, meter: new SimulatedMeter(w.db), money, policy: POLICY, now: c.now };
  assert.equal(await runDueJobs(ctx), 0, "the web request gets its grace period");
  c.advance(POLICY.payingGraceMs);
  assert.equal(await runDueJobs(ctx), 1);
  assert.equal(await runDueJobs(ctx), 1);
  assert.equal((await findPurchase(w.db, p.id))?.status, "delivered");
  assert.equal(money.pays, 1);
  assert.equal((await getBalance(w.db, p.card_account_id)).balance, 80_00);
  await assertLedgerBalanced(w.db);
});

Deno.test("a purchase left paying whose wallet refused is declined by the worker", async () => {
  await using w = await setupApp();
  const never: UtilityMoney = { ...walletMoney, pay: () => Promise.reject(new Error("network")) };
  await assert.rejects(paidPurchase(w, 20_00, never, 5_00), /network/);
  const p = await w.db.selectFrom("billing_purchases").select("id").executeTakeFirstOrThrow();
  const c = clock();
  c.advance(POLICY.payingGraceMs);
  await runDueJobs({
    db: w.db,
    meter: new SimulatedMeter(w.db),
    money: walletMoney,
    policy: POLICY,
    now: c.now,
  });
  assert.equal((await findPurchase(w.db, p.id))?.status, "declined");
  assert.equal((await jobOf(w, p.id)).state, "declined");
});

Deno.test("the worker loop delivers when woken and stops cleanly", async () => {
  await using w = await setupApp();
  const real = new SimulatedMeter(w.db);
  let delivered!: () => void;
  const done = new Promise<void>((r) => (delivered = r));
  const signalling: MeterAdapter = {
    name: "signalling",
    async deliver(order) {
      const r = await real.deliver(order);
      delivered();
      return r;
    },
    lookup: (no) => real.lookup(no),
  };
  const worker = startDeliveryWorker({ db: w.db, meter: signalling, money: walletMoney }, {
    pollMs: 3_600_000,
  });
  const { p } = await paidPurchase(w);
  wakeDeliveryWorkers();
  await done;
  await worker.stop();
  assert.equal((await findPurchase(w.db, p.id))?.status, "delivered");
});

Deno.test("two server instances on one database deliver each job exactly once", async () => {
  const w = await setupApp();
  // On PostgreSQL the second instance has its own connection pool; PGlite has one connection.
  const other = w.url ? await openDatabase({ databaseUrl: w.url, poolSize: 4 }) : null;
  try {
    const { r101, r102 } = await makeRooms(w.db);
    const payers = [];
    for (const room of [r101, r101, r102, r102]) {
      const s = await makeStudent(w, { balance: 500_00 });
      await chooseRoom(w.db, s.accountId, room.id);
      payers.push(s);
    }
    let n = 0;
    for (const s of payers) {
      for (const utility of ["electricity", "water"] as const) {
        await purchaseUtility(w.db, walletMoney, {
          payer: { accountId: s.accountId, cardAccountId: s.cardAccountId!, name: "x" },
          utility,
          amount: 10_00 + n,
          token: `instance-token-${n++}-aaaaaaaa`,
        });
      }
    }
    const calls = new Map<string, number>();
    const counting = (db: typeof w.db): MeterAdapter => {
      const real = new SimulatedMeter(db);
      return {
        name: "counting",
        deliver(order) {
          calls.set(order.orderNo, (calls.get(order.orderNo) ?? 0) + 1);
          return real.deliver(order);
        },
        lookup: (no) => real.lookup(no),
      };
    };
    const dbs = [w.db, other?.db ?? w.db];
    const policy = { batchSize: 3 };
    while (true) {
      const claimed = await Promise.all(
        dbs.flatMap((
          db,
        ) => [
          runDueJobs({ db, meter: counting(db), money: walletMoney, policy }),
          runDueJobs({ db, meter: counting(db), money: walletMoney, policy }),
        ]),
      );
      if (claimed.every((c) => c === 0)) break;
    }
    assert.equal(calls.size, 8);
    assert.deepEqual([...new Set(calls.values())], [1], "no order was sent twice");
    const statuses = await w.db.selectFrom("billing_purchases").select("status").execute();
    assert.deepEqual([...new Set(statuses.map((s) => s.status))], ["delivered"]);
    const meters = await w.db.selectFrom("billing_sim_meters").select([
      "room_id",
      "utility",
      "balance",
    ])
      .orderBy("room_id").orderBy("utility").execute();
    assert.deepEqual(meters.map((m) => m.balance), [
      10_00 + 0 + 10_00 + 2,
      10_00 + 1 + 10_00 + 3,
      10_00 + 4 + 10_00 + 6,
      10_00 + 5 + 10_00 + 7,
    ]);
    await assertLedgerBalanced(w.db);
  } finally {
    await other?.close();
    await w.close();
  }
});

Deno.test("a wallet refusal other than the balance declines the purchase instead of retrying it", async () => {
  await using w = await setupApp();
  const refusing: UtilityMoney = {
    ...walletMoney,
    pay: () => Promise.reject(new ReferenceConflictError("billing:x")),
  };
  await assert.rejects(paidPurchase(w, 20_00, refusing), ReferenceConflictError);
  const first = await w.db.selectFrom("billing_purchases").select(["id", "status"])
    .executeTakeFirstOrThrow();
  assert.equal(first.status, "declined");

  // The same refusal met by the worker (the web request had died before asking).
  const dying: UtilityMoney = { ...walletMoney, pay: () => Promise.reject(new Error("killed")) };
  const s = await makeStudent(w, { balance: 100_00 });
  const room = await w.db.selectFrom("billing_rooms").select("id").executeTakeFirstOrThrow();
  await chooseRoom(w.db, s.accountId, room.id);
  await assert.rejects(
    purchaseUtility(w.db, dying, {
      payer: { accountId: s.accountId, cardAccountId: s.cardAccountId!, name: "x" },
      utility: "water",
      amount: 5_00,
      token: "refusal-token-aaaaaaaa",
    }),
    /killed/,
  );
  const c = clock();
  c.advance(POLICY.payingGraceMs);
  await runDueJobs({
    db: w.db,
    meter: new SimulatedMeter(w.db),
    money: refusing,
    policy: POLICY,
    now: c.now,
  });
  const statuses = await w.db.selectFrom("billing_purchases").select("status").orderBy("id")
    .execute();
  assert.deepEqual(statuses.map((r) => r.status), ["declined", "declined"]);
  assert.equal((await getBalance(w.db, s.cardAccountId!)).balance, 100_00);
});
