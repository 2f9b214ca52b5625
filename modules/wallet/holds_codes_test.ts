import assert from "node:assert/strict";
import { sql } from "../platform/testing.ts";
import { onPostgres, setup } from "./_test_support.ts";
import { ensureMerchantAccount } from "./_common.ts";
import {
  expireHolds,
  getBalance,
  HoldAlreadySettledError,
  HoldBelowMinimumError,
  holdFunds,
  holdFundsRecorded,
  InsufficientFundsError,
  isPaymentCodeShape,
  issuePaymentCode,
  onPaymentCodeRedeemed,
  payFromCard,
  PaymentCodeExpiredError,
  PaymentCodeFrozenError,
  PaymentCodeOverLimitError,
  PaymentCodeUnknownError,
  PaymentCodeUsedError,
  redeemPaymentCode,
  releaseHold,
  settleHold,
  settleHoldRecorded,
  updatePaySettings,
  verifyLedger,
} from "./mod.ts";

const later = (ms = 60_000) => new Date(Date.now() + ms);

Deno.test("a hold reserves money; settle charges usage and releases the rest, once", async () => {
  const t = await setup();
  try {
    const card = await t.card(1000);
    const hold = await holdFunds(t.db, {
      cardAccountId: card,
      amount: 500,
      merchantId: t.shower.id,
      terminalId: 4,
      reference: "sh:1",
      expiresAt: later(),
    });
    assert.equal(hold.authorised, 500);
    assert.deepEqual(
      await holdFunds(t.db, {
        cardAccountId: card,
        amount: 500,
        merchantId: t.shower.id,
        reference: "sh:1",
        expiresAt: later(),
      }),
      { ...hold, duplicate: true },
    );
    assert.deepEqual(await getBalance(t.db, card), { balance: 1000, held: 500, available: 500 });
    await assert.rejects(
      payFromCard(t.db, {
        cardAccountId: card,
        merchantId: t.merchant.id,
        amount: 501,
        reference: "p",
      }),
      InsufficientFundsError,
    );
    const s = await settleHold(t.db, { holdId: hold.holdId, amount: 180, reference: "sh:2" });
    assert.equal(s.charged, 180);
    assert.equal(s.released, 320);
    assert.equal(s.balanceAfter, 820);
    const again = await settleHold(t.db, { holdId: hold.holdId, amount: 180, reference: "sh:2" });
    assert.equal(again.duplicate, true);
    assert.equal(again.charged, 180);
    await assert.rejects(
      settleHold(t.db, { holdId: hold.holdId, amount: 10, reference: "sh:3" }),
      HoldAlreadySettledError,
    );
    assert.deepEqual(await getBalance(t.db, card), { balance: 820, held: 0, available: 820 });
    assert.equal((await verifyLedger(t.db)).ok, true);
  } finally {
    await t.h.close();
  }
});

Deno.test("a hold authorises less when less is available, and refuses below the minimum", async () => {
  const t = await setup();
  try {
    const card = await t.card(300);
    const h = await holdFunds(t.db, {
      cardAccountId: card,
      amount: 500,
      merchantId: t.shower.id,
      reference: "a",
      expiresAt: later(),
    });
    assert.equal(h.authorised, 300);
    const err = await holdFunds(t.db, {
      cardAccountId: card,
      amount: 500,
      merchantId: t.shower.id,
      reference: "b",
      expiresAt: later(),
    }).catch((e) => e);
    assert.ok(err instanceof HoldBelowMinimumError);
    assert.equal(
      (await settleHold(t.db, { holdId: h.holdId, amount: 9999, reference: "c" })).charged,
      300,
    );
    assert.equal((await getBalance(t.db, card)).balance, 0);
    assert.equal((await verifyLedger(t.db)).ok, true);
  } finally {
    await t.h.close();
  }
});

Deno.test("release and expiry give held money back; a late settle still charges once from what is there", async () => {
  const t = await setup();
  try {
    const card = await t.card(1000);
    const a = await holdFunds(t.db, {
      cardAccountId: card,
      amount: 400,
      merchantId: t.shower.id,
      reference: "a",
      expiresAt: later(),
    });
    assert.deepEqual(await releaseHold(t.db, { holdId: a.holdId, reason: "no water" }), {
      released: 400,
    });
    assert.deepEqual(await releaseHold(t.db, { holdId: a.holdId, reason: "again" }), {
      released: 0,
    });
    const b = await holdFunds(t.db, {
      cardAccountId: card,
      amount: 400,
      merchantId: t.shower.id,
      reference: "b",
      expiresAt: new Date(Date.now() - 1),
    });
    const c = await holdFunds(t.db, {
      cardAccountId: card,
      amount: 100,
      merchantId: t.shower.id,
      reference: "c",
      expiresAt: later(),
    });
    assert.equal(await expireHolds(t.db, new Date()), 1);
    assert.equal(await expireHolds(t.db, new Date()), 0);
    assert.deepEqual(await getBalance(t.db, card), { balance: 1000, held: 100, available: 900 });
    // The student spends most of it meanwhile; the late end of hold b can only collect what is left.
    await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 800,
      reference: "spend",
    });
    const late = await settleHold(t.db, { holdId: b.holdId, amount: 350, reference: "b-end" });
    assert.equal(late.charged, 100);
    assert.equal(late.uncollected, 250);
    assert.equal(late.released, 0);
    assert.equal(
      (await settleHold(t.db, { holdId: b.holdId, amount: 350, reference: "b-end" })).charged,
      100,
    );
    assert.deepEqual(await getBalance(t.db, card), { balance: 100, held: 100, available: 0 });
    await settleHold(t.db, { holdId: c.holdId, amount: 0, reference: "c-end" });
    assert.deepEqual(await getBalance(t.db, card), { balance: 100, held: 0, available: 100 });
    assert.equal((await verifyLedger(t.db)).ok, true);
  } finally {
    await t.h.close();
  }
});

Deno.test("payment codes are ours by shape, single use, and refused with distinct reasons", async () => {
  const t = await setup();
  try {
    const card = await t.card(5000);
    const { code } = await issuePaymentCode(t.db, card);
    assert.ok(isPaymentCodeShape(code));
    assert.match(code, /^88\d{16}$/);
    const seen: number[] = [];
    const off = onPaymentCodeRedeemed((e) => seen.push(e.amount));
    const r = await redeemPaymentCode(t.db, {
      code,
      amount: 1200,
      merchantId: t.merchant.id,
      terminalId: 5,
      reference: "q1",
    });
    off();
    assert.equal(r.cardAccountId, card);
    assert.equal(r.balanceAfter, 3800);
    assert.equal(r.merchantName, "第一食堂");
    assert.deepEqual(seen, [1200]);
    assert.equal(
      (await redeemPaymentCode(t.db, {
        code,
        amount: 1200,
        merchantId: t.merchant.id,
        terminalId: 5,
        reference: "q1",
      })).duplicate,
      true,
    );
    await assert.rejects(
      redeemPaymentCode(t.db, { code, amount: 1, merchantId: t.merchant.id, reference: "q2" }),
      PaymentCodeUsedError,
    );
    const flipped = code.slice(0, -1) + String((Number(code.at(-1)) + 1) % 10);
    await assert.rejects(
      redeemPaymentCode(t.db, {
        code: flipped,
        amount: 1,
        merchantId: t.merchant.id,
        reference: "q3",
      }),
      PaymentCodeUnknownError,
    );
    await assert.rejects(
      redeemPaymentCode(t.db, {
        code: "134567890123456789",
        amount: 1,
        merchantId: t.merchant.id,
        reference: "q4",
      }),
      PaymentCodeUnknownError,
    );
    const older = await issuePaymentCode(t.db, card);
    const newer = await issuePaymentCode(t.db, card);
    await assert.rejects(
      redeemPaymentCode(t.db, {
        code: older.code,
        amount: 1,
        merchantId: t.merchant.id,
        reference: "q5",
      }),
      PaymentCodeExpiredError,
    );
    await sql`update payment_codes set expires_at = now() - interval '1 second' where code = ${newer.code}`
      .execute(t.db);
    await assert.rejects(
      redeemPaymentCode(t.db, {
        code: newer.code,
        amount: 1,
        merchantId: t.merchant.id,
        reference: "q6",
      }),
      PaymentCodeExpiredError,
    );
    const limited = await issuePaymentCode(t.db, card);
    await updatePaySettings(t.db, card, { payLimit: 500, dailyLimit: 50_000, codeFrozen: false });
    // Changing the limits does not retire the live code; going over the limit refuses and keeps it.
    await assert.rejects(
      redeemPaymentCode(t.db, {
        code: limited.code,
        amount: 501,
        merchantId: t.merchant.id,
        reference: "q7",
      }),
      PaymentCodeOverLimitError,
    );
    const within = await redeemPaymentCode(t.db, {
      code: limited.code,
      amount: 499,
      merchantId: t.merchant.id,
      reference: "q7b",
    });
    assert.equal(within.balanceAfter, 3800 - 499);
    const frozenCode = await issuePaymentCode(t.db, card);
    await sql`update ledger_accounts set code_frozen = true where card_account_id = ${card}`
      .execute(t.db);
    await assert.rejects(
      redeemPaymentCode(t.db, {
        code: frozenCode.code,
        amount: 1,
        merchantId: t.merchant.id,
        reference: "q8",
      }),
      PaymentCodeFrozenError,
    );
    await assert.rejects(issuePaymentCode(t.db, card), PaymentCodeFrozenError);
    assert.equal((await getBalance(t.db, card)).balance, 3800 - 499);
    assert.equal((await verifyLedger(t.db)).ok, true);
  } finally {
    await t.h.close();
  }
});

Deno.test("a code frozen together with a loss report is refused", async () => {
  const t = await setup();
  try {
    const card = await t.card(1000);
    const { code } = await issuePaymentCode(t.db, card);
    await t.db.updateTable("card_accounts").set({ payment_code_frozen: true }).where(
      "id",
      "=",
      card,
    ).execute();
    await assert.rejects(
      redeemPaymentCode(t.db, { code, amount: 100, merchantId: t.merchant.id, reference: "f" }),
      PaymentCodeFrozenError,
    );
    await t.db.updateTable("card_accounts").set({ payment_code_frozen: false }).where(
      "id",
      "=",
      card,
    ).execute();
    assert.equal(
      (await redeemPaymentCode(t.db, {
        code,
        amount: 100,
        merchantId: t.merchant.id,
        reference: "f2",
      })).balanceAfter,
      900,
    );
    assert.equal((await verifyLedger(t.db)).ok, true);
  } finally {
    await t.h.close();
  }
});

Deno.test("a refused redemption leaves the code usable", async () => {
  const t = await setup();
  try {
    const card = await t.card(100);
    const { code } = await issuePaymentCode(t.db, card);
    await assert.rejects(
      redeemPaymentCode(t.db, { code, amount: 101, merchantId: t.merchant.id, reference: "a" }),
      InsufficientFundsError,
    );
    const r = await redeemPaymentCode(t.db, {
      code,
      amount: 100,
      merchantId: t.merchant.id,
      reference: "b",
    });
    assert.equal(r.balanceAfter, 0);
    assert.equal((await verifyLedger(t.db)).ok, true);
  } finally {
    await t.h.close();
  }
});

Deno.test({
  name: "the same payment code redeemed from 20 connections at once succeeds exactly once",
  ignore: !onPostgres,
  async fn() {
    const t = await setup({ poolSize: 20 });
    try {
      const card = await t.card(10_000);
      for (let round = 0; round < 3; round++) {
        const { code } = await issuePaymentCode(t.db, card);
        const results = await Promise.allSettled(
          Array.from(
            { length: 20 },
            (_, i) =>
              redeemPaymentCode(t.db, {
                code,
                amount: 100,
                merchantId: t.merchant.id,
                terminalId: i + 1,
                reference: `r${round}-${i}`,
              }),
          ),
        );
        const ok = results.filter((r) => r.status === "fulfilled");
        assert.equal(ok.length, 1);
        for (const r of results) {
          if (r.status === "rejected") {
            assert.ok(r.reason instanceof PaymentCodeUsedError, String(r.reason));
          }
        }
      }
      assert.equal((await getBalance(t.db, card)).balance, 9_700);
      assert.equal((await verifyLedger(t.db)).ok, true);
    } finally {
      await t.h.close();
    }
  },
});

Deno.test({
  name:
    "concurrent holds and payments never overdraw; concurrent expiry and settle do not double-release",
  ignore: !onPostgres,
  async fn() {
    const t = await setup({ poolSize: 30 });
    try {
      const card = await t.card(3_000);
      const ops = await Promise.allSettled(
        Array.from({ length: 30 }, (_, i) =>
          i % 2
            ? holdFunds(t.db, {
              cardAccountId: card,
              amount: 300,
              merchantId: t.shower.id,
              reference: `h${i}`,
              expiresAt: new Date(Date.now() - 1),
            })
            : payFromCard(t.db, {
              cardAccountId: card,
              merchantId: t.merchant.id,
              amount: 300,
              reference: `p${i}`,
            })),
      );
      const holds = ops.flatMap((r) =>
        r.status === "fulfilled" && "holdId" in r.value ? [r.value.holdId] : []
      );
      const b = await getBalance(t.db, card);
      assert.ok(b.available >= 0);
      await Promise.all([
        expireHolds(t.db, new Date()),
        ...holds.map((id, i) => settleHold(t.db, { holdId: id, amount: 100, reference: `s${i}` })),
        expireHolds(t.db, new Date()),
      ]);
      assert.equal((await getBalance(t.db, card)).held, 0);
      assert.equal((await verifyLedger(t.db)).ok, true);
    } finally {
      await t.h.close();
    }
  },
});

/** Shower starts of a batch whose payer is the card account id itself, recorded nowhere else. */
async function holdBatch(
  t: Awaited<ReturnType<typeof setup>>,
  amount: number,
  starts: Array<{ card: number; reference: string }>,
) {
  return await holdFundsRecorded(t.db, {
    holds: starts.map((s) => ({
      payer: String(s.card),
      merchantId: t.shower.id,
      terminalId: 4,
      reference: s.reference,
      expiresAt: later(),
    })),
    cardAccountOf: (payer) => sql<number | null>`${payer}::bigint`,
    amount: sql<number>`${amount}::bigint`,
    record: (held) => [sql`select ord from ${held}`],
  });
}

/** Shower ends of a batch: `units` at 10 fen each. */
async function settleBatch(
  t: Awaited<ReturnType<typeof setup>>,
  ends: Array<{ holdId: number; units: number; reference: string }>,
) {
  return await settleHoldRecorded(t.db, {
    settlements: ends.map((e) => ({ ...e, terminalId: 4 })),
    usageOf: (s) => sql<number>`${s.units} * 10`,
    record: (settled) => [sql`select ord from ${settled}`],
  });
}

Deno.test("a batch of shower starts holds on each card that can, and leaves the others to the ordinary path", async () => {
  const t = await setup();
  try {
    await ensureMerchantAccount(t.db, t.shower.id);
    const rich = await t.card(1000);
    const poor = await t.card(200);
    const mixed = await t.card(100);
    await t.lot(mixed, 400, { categories: ["shower"] });
    const used = await t.card(1000);
    await holdFunds(t.db, {
      cardAccountId: used,
      amount: 300,
      merchantId: t.shower.id,
      reference: "hb:used",
      expiresAt: later(),
    });
    const out = await holdBatch(t, 300, [
      { card: rich, reference: "hb:1" },
      { card: poor, reference: "hb:2" },
      { card: mixed, reference: "hb:3" },
      { card: rich, reference: "hb:4" },
      { card: 999_999, reference: "hb:5" },
      { card: used, reference: "hb:used" },
    ]);
    assert.deepEqual(
      out.map((h) => h && { authorised: h.authorised, balance: h.balance }),
      [
        { authorised: 300, balance: 1000 },
        null,
        { authorised: 300, balance: 500 },
        // The same card row twice in one statement: the second is not held, nothing written.
        null,
        null,
        null,
      ],
    );
    assert.deepEqual(await getBalance(t.db, rich), { balance: 1000, held: 300, available: 700 });
    assert.deepEqual(await getBalance(t.db, poor), { balance: 200, held: 0, available: 200 });
    assert.deepEqual(await getBalance(t.db, used), { balance: 1000, held: 300, available: 700 });
    // The lot that may pay at the shower is set aside first, then cash.
    const lots = await sql<{ held: number }>`select held from purse_lots
      where card_account_id = ${mixed}`.execute(t.db);
    assert.deepEqual(lots.rows.map((r) => Number(r.held)), [300]);
    const holds = await t.db.selectFrom("ledger_holds").select(["reference", "amount"])
      .where("reference", "like", "hb:%").orderBy("reference").execute();
    assert.deepEqual(holds, [
      { reference: "hb:1", amount: 300 },
      { reference: "hb:3", amount: 300 },
      { reference: "hb:used", amount: 300 },
    ]);
    // The refused ones, the ordinary way: less is held where less is available.
    const second = await holdFunds(t.db, {
      cardAccountId: poor,
      amount: 300,
      merchantId: t.shower.id,
      reference: "hb:2",
      expiresAt: later(),
    });
    assert.equal(second.authorised, 200);
    assert.deepEqual((await verifyLedger(t.db)).problems, []);
  } finally {
    await t.h.close();
  }
});

Deno.test("a batch of shower ends settles each active hold once; the others go the ordinary way", async () => {
  const t = await setup();
  try {
    const cards = await Promise.all([0, 1, 2, 3].map(() => t.card(1000)));
    await t.lot(cards[3], 100, { categories: ["shower"] });
    const hold = async (card: number, reference: string) =>
      (await holdFunds(t.db, {
        cardAccountId: card,
        amount: 500,
        merchantId: t.shower.id,
        reference,
        expiresAt: later(),
      })).holdId;
    const h0 = await hold(cards[0], "se:h0");
    const h1 = await hold(cards[1], "se:h1");
    const h2a = await hold(cards[2], "se:h2a");
    const h2b = await hold(cards[2], "se:h2b");
    const h3 = await hold(cards[3], "se:h3");
    const out = await settleBatch(t, [
      { holdId: h0, units: 18, reference: "se:e0" },
      // No usage: the ordinary path releases it.
      { holdId: h1, units: 0, reference: "se:e1" },
      // Two holds of one card in one statement: only the first settles here.
      { holdId: h2a, units: 5, reference: "se:e2a" },
      { holdId: h2b, units: 5, reference: "se:e2b" },
      // More than the hold: the hold is charged, the lot first.
      { holdId: h3, units: 70, reference: "se:e3" },
      { holdId: 999_999, units: 5, reference: "se:e4" },
      // The same hold again in the batch: only its first end goes in.
      { holdId: h0, units: 1, reference: "se:e5" },
    ]);
    assert.deepEqual(
      out.map((s) => s && { charged: s.charged, released: s.released, after: s.balanceAfter }),
      [
        { charged: 180, released: 320, after: 820 },
        null,
        { charged: 50, released: 450, after: 950 },
        null,
        { charged: 500, released: 0, after: 600 },
        null,
        null,
      ],
    );
    // Settled already: another end of it, in another batch, is not settled again.
    assert.deepEqual(await settleBatch(t, [{ holdId: h0, units: 3, reference: "se:e6" }]), [null]);
    assert.deepEqual(
      await settleBatch(t, [{ holdId: h2b, units: 5, reference: "se:e2b" }]).then((r) =>
        r.map((s) => s?.charged)
      ),
      [50],
    );
    assert.deepEqual(await getBalance(t.db, cards[0]), { balance: 820, held: 0, available: 820 });
    assert.deepEqual(await getBalance(t.db, cards[1]), {
      balance: 1000,
      held: 500,
      available: 500,
    });
    assert.deepEqual(await getBalance(t.db, cards[2]), { balance: 900, held: 0, available: 900 });
    assert.deepEqual(await getBalance(t.db, cards[3]), { balance: 600, held: 0, available: 600 });
    const lots = await sql<{ remaining: number; held: number }>`select remaining, held
      from purse_lots where card_account_id = ${cards[3]}`.execute(t.db);
    assert.deepEqual(lots.rows.map((r) => [Number(r.remaining), Number(r.held)]), [[0, 0]]);
    await assert.rejects(
      settleHold(t.db, { holdId: h0, amount: 30, reference: "se:e6" }),
      HoldAlreadySettledError,
    );
    const shower = await t.db.selectFrom("ledger_transfers").select(["reference", "amount"])
      .where("kind", "=", "shower").orderBy("reference").execute();
    assert.deepEqual(shower, [
      { reference: "se:e0", amount: 180 },
      { reference: "se:e2a", amount: 50 },
      { reference: "se:e2b", amount: 50 },
      { reference: "se:e3", amount: 500 },
    ]);
    assert.deepEqual((await verifyLedger(t.db)).problems, []);
  } finally {
    await t.h.close();
  }
});

Deno.test({
  name:
    "a batch end waits for a hold the sweep has locked and then leaves it to the ordinary path (hold, then card: no deadlock)",
  ignore: !onPostgres,
  async fn() {
    const t = await setup({ poolSize: 4 });
    try {
      const card = await t.card(1000);
      await t.lot(card, 100, { categories: ["shower"] });
      const { holdId } = await holdFunds(t.db, {
        cardAccountId: card,
        amount: 500,
        merchantId: t.shower.id,
        reference: "dl:h",
        expiresAt: new Date(Date.now() - 1),
      });
      let batch: ReturnType<typeof settleBatch> | undefined;
      // The sweep's transaction: the hold locked first (as expireHolds' `due`), then, while the
      // batch end for it is already waiting, its card (expireHolds' `lk`). A batch that locked
      // the card before the hold deadlocks here.
      const expired = await t.db.transaction().execute(async (trx) => {
        await sql`select id from ledger_holds where id = ${holdId} for update`.execute(trx);
        batch = settleBatch(t, [{ holdId, units: 20, reference: "dl:e" }]);
        batch.catch(() => {});
        for (let i = 0;; i++) {
          const { rows } = await sql<{ n: number }>`select count(*)::int as n
            from pg_stat_activity
            where wait_event_type = 'Lock' and query like '%ledger_holds%'
              and pid <> pg_backend_pid()`.execute(t.db);
          if (rows[0].n > 0) break;
          if (i > 200) throw new Error("the batch end never waited for the hold");
          await new Promise((r) => setTimeout(r, 10));
        }
        // Past deadlock_timeout (1 s): a lock cycle would be found by now.
        await new Promise((r) => setTimeout(r, 1_200));
        return await expireHolds(trx, new Date());
      });
      assert.equal(expired, 1);
      // The batch found the hold timed out: nothing written, the ordinary path's late end answers.
      assert.deepEqual(await batch!, [null]);
      const late = await settleHold(t.db, { holdId, amount: 200, reference: "dl:e" });
      assert.equal(late.charged, 200);
      assert.equal(late.released, 0);
      assert.deepEqual(await getBalance(t.db, card), { balance: 900, held: 0, available: 900 });
      assert.deepEqual((await verifyLedger(t.db)).problems, []);
    } finally {
      await t.h.close();
    }
  },
});
