/**
 * The outbox rule: a message for every committed money or security fact, none for one that
 * rolled back, delivered exactly once whichever instance delivers it and whenever one dies.
 */
import assert from "node:assert/strict";
import { sql } from "kysely";
import { makeStudent } from "../testkit/mod.ts";
import { openDatabase } from "../platform/database.ts";
import { ensureSchool } from "../account/mod.ts";
import { DEMO_SCHOOL } from "../card/mod.ts";
import { creditTopUp, grantLots, payFromCard, subsidyFundingAccount } from "../wallet/mod.ts";
import { NOON, notifyWorld } from "./_testing.ts";
import { deriveMessages } from "./derive.ts";
import { deliverDue } from "./deliver.ts";
import { DEFAULT_SETTINGS, saveSettings } from "./settings.ts";

async function messagesOf(db: NotifyDb, accountId: number) {
  return await db.selectFrom("notify_messages").select([
    "kind",
    "state",
    "channel",
    "data",
    "source",
  ])
    .where("account_id", "=", accountId).orderBy("id").execute();
}
type NotifyDb = Awaited<ReturnType<typeof notifyWorld>>["db"];

Deno.test("a committed card payment is one 消费提醒 on WeChat; a rolled-back one is none", async () => {
  await using w = await notifyWorld();
  const s = await makeStudent(w, { balance: 100_00 });
  const openid = await w.bindWechat(s.accountId);
  await w.settle(NOON); // the binding's own security notice
  const before = w.standin.messages.length;
  await w.pay(s.cardAccountId, 12_50);
  await assert.rejects(
    w.db.transaction().execute(async (trx) => {
      await payFromCard(trx, {
        cardAccountId: s.cardAccountId,
        merchantId: w.merchant.id,
        amount: 5_00,
        reference: "rolled-back-payment",
      });
      throw new Error("the caller fails after paying");
    }),
    /the caller fails/,
  );
  await w.settle(NOON);
  const spends = w.standin.messages.slice(before);
  assert.equal(spends.length, 1, "one message: the committed payment only");
  assert.equal(spends[0].touser, openid);
  assert.equal(spends[0].template_id, "TPL_SPEND");
  assert.deepEqual(spends[0].data, {
    amount1: { value: "¥12.50" },
    thing2: { value: "第一食堂" },
    time3: { value: spends[0].data.time3.value },
    amount4: { value: "¥87.50" },
  });
  assert.match(spends[0].data.time3.value, /^\d{4}-\d\d-\d\d \d\d:\d\d$/);
  assert.equal(spends[0].url, "http://localhost:8000/wallet/transactions");
  const rows = (await messagesOf(w.db, s.accountId)).filter((m) => m.kind === "spend");
  assert.deepEqual(rows.map((m) => [m.state, m.channel]), [["sent", "wechat"]]);
  // Another round announces nothing again.
  await w.settle(NOON);
  assert.equal(w.standin.messages.length, before + 1);
});

Deno.test("top-ups and refunds are announced; a top-up paid by someone else names 代充", async () => {
  await using w = await notifyWorld();
  const s = await makeStudent(w);
  await w.bindWechat(s.accountId);
  await creditTopUp(w.db, {
    cardAccountId: s.cardAccountId,
    amount: 50_00,
    method: "wechat",
    reference: "topup:T1",
    details: { orderNo: "T1", proxy: true },
  });
  await w.settle(NOON);
  const topups = w.standin.messages.filter((m) => m.template_id === "TPL_TOPUP");
  assert.equal(topups.length, 1);
  assert.deepEqual(Object.values(topups[0].data).map((v) => v.value).slice(0, 2), [
    "¥50.00",
    "代充（微信支付）",
  ]);
});

Deno.test("a 补助 reaching the card is one 补助到账 with the 补助 and the new balance", async () => {
  await using w = await notifyWorld();
  const s = await makeStudent(w, { balance: 10_00 });
  await w.bindWechat(s.accountId);
  const school = await ensureSchool(w.db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  const grant = () =>
    w.db.transaction().execute(async (trx) =>
      grantLots(trx, {
        purse: "subsidy",
        fundingAccountId: await subsidyFundingAccount(trx, school),
        batchId: null,
        validFrom: new Date(NOON.getTime() - 3600_000),
        validUntil: new Date(NOON.getTime() + 30 * 86_400_000),
        categories: ["canteen"],
      }, [{ cardAccountId: s.cardAccountId, amount: 15_00, reference: "subsidy-notice-1" }])
    );
  await grant();
  await grant(); // the same grant again credits nothing and announces nothing
  await w.settle(NOON);
  const sent = w.standin.messages.filter((m) => m.template_id === "TPL_SUBSIDY");
  assert.equal(sent.length, 1);
  const values = Object.values(sent[0].data).map((v) => v.value);
  assert.equal(values[0], "¥15.00");
  assert.equal(values.at(-1), "¥25.00");
  const kinds = (await messagesOf(w.db, s.accountId)).map((m) => m.kind);
  assert.deepEqual(kinds.filter((k) => k === "subsidy"), ["subsidy"]);
});

Deno.test("a transfer that commits after a later one is still announced, once (PostgreSQL)", {
  ignore: !Deno.env.get("DATABASE_URL"),
}, async () => {
  await using w = await notifyWorld();
  const a = await makeStudent(w, { balance: 100_00 });
  const b = await makeStudent(w, { balance: 100_00 });
  await w.pay(b.cardAccountId, 1_00); // the canteen's ledger account exists before A's transaction
  await w.settle(NOON);
  const second = await openDatabase({ databaseUrl: w.url, poolSize: 2 });
  try {
    // A draws its transfer id first and stays open while B pays and commits.
    let release = () => {};
    const held = new Promise<void>((r) => (release = r));
    let paid = () => {};
    const aPaid = new Promise<void>((r) => (paid = r));
    const slow = second.db.transaction().execute(async (trx) => {
      await payFromCard(trx, {
        cardAccountId: a.cardAccountId,
        merchantId: w.merchant.id,
        amount: 1_00,
        reference: "slow-commit",
      });
      paid();
      await held;
    });
    await aPaid;
    await w.pay(b.cardAccountId, 2_00);
    const ids = await w.db.selectFrom("ledger_transfers").select(["id", "reference"])
      .where("reference", "in", ["slow-commit"]).execute();
    assert.equal(ids.length, 0, "A's transfer is not visible yet");
    // While A is open the horizon stays below it: B waits too (nothing is skipped).
    assert.equal(await deriveMessages(w.db, NOON), 0);
    release();
    await slow;
    await w.caughtUp();
    await deriveMessages(w.db, NOON);
    const spends = await w.db.selectFrom("notify_messages").select(["account_id", "source"])
      .where("kind", "=", "spend").execute();
    assert.deepEqual(
      spends.map((m) => m.account_id).sort(),
      [a.accountId, b.accountId, b.accountId].sort(),
    );
    const [ta, tb] = await Promise.all(
      ["slow-commit"].map((r) =>
        w.db.selectFrom("ledger_transfers").select("id").where("reference", "=", r)
          .executeTakeFirstOrThrow()
      ).concat([
        w.db.selectFrom("ledger_transfers").select("id").where(
          "card_account_id",
          "=",
          b.cardAccountId,
        )
          .where("kind", "=", "purchase").orderBy("id", "desc").limit(1).executeTakeFirstOrThrow(),
      ]),
    );
    assert.ok(ta.id < tb.id, "A's id is the lower one, committed last");
  } finally {
    await second.close();
  }
});

Deno.test("two instances deriving and delivering at once announce each payment exactly once", async () => {
  await using w = await notifyWorld();
  const students = await Promise.all([1, 2, 3].map(() => makeStudent(w, { balance: 100_00 })));
  for (const s of students) await w.bindWechat(s.accountId);
  await w.settle(NOON);
  const before = w.standin.messages.length;
  const other = w.url ? await openDatabase({ databaseUrl: w.url, poolSize: 4 }) : null;
  try {
    const payments = students.flatMap((s) =>
      [1_00, 2_00, 3_00].map((a) => w.pay(s.cardAccountId, a))
    );
    const second = { ...w.ctx, db: other?.db ?? w.db };
    // Both instances race through rounds while the payments commit.
    const race = async (ctx: typeof w.ctx) => {
      for (let i = 0; i < 6; i++) {
        await deriveMessages(ctx.db, NOON);
        await deliverDue({ ...ctx, now: () => NOON });
      }
    };
    await Promise.all([...payments, race(w.ctx), race(second)]);
    await w.settle(NOON);
  } finally {
    await other?.close();
  }
  const spends = w.standin.messages.slice(before);
  assert.equal(spends.length, 9);
  const ids = await w.db.selectFrom("notify_messages").select(sql<number>`count(*)::int`.as("n"))
    .where("kind", "=", "spend").where("state", "=", "sent").executeTakeFirstOrThrow();
  assert.equal(ids.n, 9);
});

Deno.test(
  "a worker killed after WeChat took its messages: another instance finishes, each shown once",
  {
    ignore: !Deno.env.get("DATABASE_URL"),
  },
  async () => {
    await using w = await notifyWorld();
    const s = await makeStudent(w, { balance: 100_00 });
    await w.bindWechat(s.accountId);
    // The worker process runs on the real clock: without quiet hours its messages go out at
    // any hour this test runs (the default's 23:00–07:00 China time would hold them).
    await saveSettings(w.db, s.accountId, { ...DEFAULT_SETTINGS, quiet: false });
    await w.settle(NOON);
    const before = w.standin.messages.length;
    // WeChat takes the next three messages but the answers never reach the worker.
    w.standin.control.lostReplies = 3;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("./_worker_process.ts", import.meta.url).pathname],
      env: {
        ...w.config.env,
        DATABASE_URL: w.url!,
        WECHAT_MP_TIMEOUT_MS: "600000",
        LOG_LEVEL: "error",
      },
      stdout: "null",
      stderr: "inherit",
    }).spawn();
    try {
      for (const amount of [1_00, 2_00, 3_00]) await w.pay(s.cardAccountId, amount);
      await w.standin.waitForMessages(before + 3);
      const leased = await w.db.selectFrom("notify_messages").select(["state", "lease_token"])
        .where("kind", "=", "spend").execute();
      assert.equal(leased.length, 3);
      assert.ok(leased.every((m) => m.state === "queued" && m.lease_token !== null));
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
    // This instance takes the messages over once their leases have run out.
    const later = new Date(Date.now() + 61_000);
    await deliverDue({ ...w.ctx, now: () => later });
    const rows = await w.db.selectFrom("notify_messages").select(["state", "channel"])
      .where("kind", "=", "spend").execute();
    assert.deepEqual(rows.map((r) => `${r.state}/${r.channel}`), Array(3).fill("sent/wechat"));
    assert.equal(w.standin.messages.length, before + 3, "each payment shown once");
    assert.equal(w.standin.log.filter((l) => l === "send 0 duplicate").length, 3);
  },
);

Deno.test("a worker that stalls past its lease cannot record; the one that took over does, once", async () => {
  await using w = await notifyWorld();
  const s = await makeStudent(w, { balance: 100_00 });
  await w.bindWechat(s.accountId);
  await w.settle(NOON);
  const before = w.standin.messages.length;
  await w.pay(s.cardAccountId, 4_00);
  await w.caughtUp();
  await deriveMessages(w.db, NOON);
  // The first worker is answered only after its lease ran out (a lost reply, then a timeout).
  w.standin.control.lostReplies = 1;
  const stalled = deliverDue({ ...w.ctx, now: () => NOON });
  await w.standin.waitForMessages(before + 1);
  const later = new Date(NOON.getTime() + 61_000);
  assert.equal(await deliverDue({ ...w.ctx, now: () => later }), 1);
  await stalled;
  const rows = await w.db.selectFrom("notify_messages").select(["state", "attempts", "error_code"])
    .where("kind", "=", "spend").execute();
  assert.deepEqual(rows, [{ state: "sent", attempts: 2, error_code: null }]);
  assert.equal(w.standin.messages.length, before + 1);
});
