/**
 * Purses (补助 lots and cash) beyond the table of rules_test.ts: the order lots are drawn in, the
 * split a payment records, refunds and reversals of mixed payments, shower holds over lots, the
 * expiry worker, a grant's reversal, 销户, and the verifier's purse checks. PGlite, and PostgreSQL
 * with DATABASE_URL; the races are in purses_race_test.ts.
 */
import assert from "node:assert/strict";
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { setup } from "./_test_support.ts";
import {
  applyOfflinePayment,
  expireHolds,
  expireLots,
  getBalance,
  holdFunds,
  payFromCard,
  payFromCardsRecorded,
  payUtility,
  purseLines,
  refundTransfer,
  refundUtility,
  releaseHold,
  reverseByReference,
  reverseGrant,
  settleHold,
  verifyLedger,
} from "./mod.ts";

let seq = 0;
const ref = (what: string) => `purses-${what}-${++seq}`;

/** Each lot's remaining and held, in grant order. */
async function lotsOf(db: Db, card: number) {
  const { rows } = await sql<{ remaining: number; held: number }>`
    select remaining, held from purse_lots where card_account_id = ${card} order by id`
    .execute(db);
  return rows.map((r) => [Number(r.remaining), Number(r.held)]);
}

/** The legs of a transfer, by the order its lots were granted. */
async function legsOf(db: Db, transferId: number) {
  const { rows } = await sql<{ amount: number }>`
    select g.amount from purse_legs g join purse_lots l on l.id = g.lot_id
    where g.transfer_id = ${transferId} order by l.id`.execute(db);
  return rows.map((r) => Number(r.amount));
}

async function assertBooks(db: Db) {
  assert.deepEqual((await verifyLedger(db)).problems, []);
}

Deno.test("lots are drawn soonest end first, then the older one, then cash; one transfer, its legs", async () => {
  const t = await setup();
  try {
    const card = await t.card(1000);
    await t.lot(card, 300, { until: 10 * 86400_000 });
    await t.lot(card, 300, { until: 2 * 86400_000 });
    await t.lot(card, 200, { until: 2 * 86400_000 });
    const paid = await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 700,
      reference: ref("pay"),
    });
    // The two ending in 2 days first (the older of them first), then 200 of the 10-day lot.
    assert.deepEqual(await lotsOf(t.db, card), [[100, 0], [0, 0], [0, 0]]);
    assert.deepEqual(await legsOf(t.db, paid.transferId), [-200, -300, -200]);
    // One transfer of the whole amount; the card's balance counts every purse.
    assert.equal(paid.balanceAfter, 1000 + 800 - 700);
    assert.equal(paid.balanceHere, 1000 + 100);
    const lines = await purseLines(t.db, card);
    assert.deepEqual(lines.map((l) => [l.code, l.amount]), [["cash", 1000], ["subsidy", 100]]);
    // A bigger payment finishes the lot and takes the rest from cash.
    await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 400,
      reference: ref("pay"),
    });
    assert.deepEqual(await lotsOf(t.db, card), [[0, 0], [0, 0], [0, 0]]);
    assert.equal((await getBalance(t.db, card)).balance, 700);
    await assertBooks(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("a purse kind of a lower spend order is drawn before 补助: a third purse is data", async () => {
  const t = await setup();
  try {
    await t.db.insertInto("purse_kinds").values({
      code: "water_aid",
      name: "水电补贴",
      spend_order: 10,
      categories: sql`'{utilities}'::text[]` as unknown as string[],
      lots: true,
    }).execute();
    const card = await t.card(500);
    await t.lot(card, 300, { until: 86400_000 });
    // The 水电补贴 lot ends later, but its purse comes first at a utility.
    const { rows: [k] } = await sql<{ id: number }>`
      select id from purse_lots where card_account_id = ${card}`.execute(t.db);
    await t.db.transaction().execute(async (trx) => {
      const { grantLots, subsidyFundingAccount } = await import("./lots.ts");
      await grantLots(trx, {
        purse: "water_aid",
        fundingAccountId: await subsidyFundingAccount(trx, { id: 999, name: "测试" }),
        batchId: null,
        validFrom: new Date(Date.now() - 1000),
        validUntil: new Date(Date.now() + 30 * 86400_000),
        categories: ["utilities"],
      }, [{ cardAccountId: card, amount: 200, reference: ref("water-aid") }]);
    });
    const paid = await payUtility(t.db, {
      cardAccountId: card,
      amount: 250,
      utility: "electricity",
      reference: ref("util"),
    });
    assert.deepEqual(await lotsOf(t.db, card), [[250, 0], [0, 0]]);
    assert.deepEqual(await legsOf(t.db, paid.transferId), [-50, -200]);
    assert.ok(k);
    // At the canteen the 水电补贴 lot is not money; a grant outside its purse's places is refused.
    assert.equal((await getBalance(t.db, card, "canteen")).available, 500 + 250);
    await assert.rejects(
      () =>
        t.db.transaction().execute(async (trx) => {
          const { grantLots } = await import("./lots.ts");
          await grantLots(trx, {
            purse: "water_aid",
            fundingAccountId: 1,
            batchId: null,
            validFrom: new Date(),
            validUntil: new Date(Date.now() + 1000),
            categories: ["canteen"],
          }, [{ cardAccountId: card, amount: 1, reference: ref("bad") }]);
        }),
      /Cannot grant/,
    );
    await assertBooks(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("refunds of a mixed payment go back to the purses that paid: cash first, then the lots", async () => {
  const t = await setup();
  try {
    const card = await t.card(1000);
    await t.lot(card, 500);
    const paid = await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 800,
      reference: ref("meal"),
    });
    assert.deepEqual(await lotsOf(t.db, card), [[0, 0]]);
    const refund = (amount: number) =>
      refundTransfer(t.db, {
        transferId: paid.transferId,
        amount,
        reference: ref("refund"),
        reason: "退菜",
        staffId: null,
      });
    // 200 of the 300 cash first: what stays paid is what the rule would draw for 600.
    const r1 = await refund(200);
    assert.deepEqual(await legsOf(t.db, r1.transferId), []);
    assert.deepEqual(await lotsOf(t.db, card), [[0, 0]]);
    // Then the last 100 of cash and 150 back to the lot.
    const r2 = await refund(250);
    assert.deepEqual(await legsOf(t.db, r2.transferId), [150]);
    assert.deepEqual(await lotsOf(t.db, card), [[150, 0]]);
    // The rest: the lot gets back all it gave, cash all it gave, never more.
    await refund(350);
    assert.deepEqual(await lotsOf(t.db, card), [[500, 0]]);
    const lines = await purseLines(t.db, card);
    assert.deepEqual(lines.map((l) => [l.code, l.amount]), [["cash", 1000], ["subsidy", 500]]);
    await assert.rejects(() => refund(1), /more than|exceed/i);
    await assertBooks(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("a reader's reversal and a utility refund of mixed payments give back each purse's part", async () => {
  const t = await setup();
  try {
    const card = await t.card(100);
    await t.lot(card, 300);
    const reference = ref("qr");
    await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 350,
      reference,
    });
    const reversed = await reverseByReference(t.db, {
      originalReference: reference,
      reference: ref("rev"),
    });
    assert.equal(reversed.amount, 350);
    assert.deepEqual(await legsOf(t.db, reversed.transferId!), [300]);
    assert.deepEqual(await lotsOf(t.db, card), [[300, 0]]);

    const utility = ref("util");
    await payUtility(t.db, {
      cardAccountId: card,
      amount: 320,
      utility: "water",
      reference: utility,
    });
    assert.deepEqual(await lotsOf(t.db, card), [[0, 0]]);
    const back = await refundUtility(t.db, { originalReference: utility, reference: ref("ur") });
    assert.deepEqual(await legsOf(t.db, back.transferId), [300]);
    assert.equal((await getBalance(t.db, card)).balance, 400);
    await assertBooks(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("a shower hold sets 补助 aside first; its end charges it first and frees the rest", async () => {
  const t = await setup();
  try {
    const card = await t.card(1000);
    await t.lot(card, 300, { categories: ["shower"] });
    const hold = await holdFunds(t.db, {
      cardAccountId: card,
      amount: 500,
      merchantId: t.shower.id,
      reference: ref("start"),
      expiresAt: new Date(Date.now() + 3600_000),
    });
    assert.deepEqual(await lotsOf(t.db, card), [[300, 300]]);
    // Held 补助 is no one's to spend; cash less its held part still is.
    assert.equal((await getBalance(t.db, card, "shower")).available, 800);
    assert.equal((await getBalance(t.db, card, "canteen")).available, 800);
    const end = await settleHold(t.db, {
      holdId: hold.holdId,
      amount: 350,
      reference: ref("end"),
    });
    assert.equal(end.charged, 350);
    assert.equal(end.released, 150);
    assert.deepEqual(await lotsOf(t.db, card), [[0, 0]]);
    assert.deepEqual(await legsOf(t.db, end.transferId!), [-300]);
    assert.equal((await getBalance(t.db, card)).balance, 950);

    // A hold given back (released, or timed out) gives its lot back its part.
    await t.lot(card, 200, { categories: ["shower"] });
    const second = await holdFunds(t.db, {
      cardAccountId: card,
      amount: 500,
      merchantId: t.shower.id,
      reference: ref("start"),
      expiresAt: new Date(Date.now() + 3600_000),
    });
    assert.deepEqual((await lotsOf(t.db, card))[1], [200, 200]);
    await releaseHold(t.db, { holdId: second.holdId, reason: "test" });
    assert.deepEqual((await lotsOf(t.db, card))[1], [200, 0]);
    const third = await holdFunds(t.db, {
      cardAccountId: card,
      amount: 500,
      merchantId: t.shower.id,
      reference: ref("start"),
      expiresAt: new Date(Date.now() - 1000),
    });
    assert.equal(await expireHolds(t.db, new Date()), 1);
    assert.deepEqual((await lotsOf(t.db, card))[1], [200, 0]);
    // Its late end takes what is free then, by the rule: the lot first.
    const late = await settleHold(t.db, {
      holdId: third.holdId,
      amount: 250,
      reference: ref("late"),
    });
    assert.equal(late.charged, 250);
    assert.deepEqual(await legsOf(t.db, late.transferId!), [-200]);
    await assertBooks(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("an offline upload takes the lots that may pay at its merchant, then cash, then owes", async () => {
  const t = await setup();
  try {
    const card = await t.card(100);
    await t.lot(card, 200);
    await t.lot(card, 500, { categories: ["supermarket"] });
    const paid = await applyOfflinePayment(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      terminalId: 1,
      amount: 450,
      reference: ref("offline"),
      occurredAt: new Date(),
    });
    assert.deepEqual(await lotsOf(t.db, card), [[0, 0], [500, 0]]);
    assert.deepEqual(await legsOf(t.db, paid.transferId), [-200]);
    // 200 补助, 100 cash, 150 owed: the cash purse is negative, the supermarket 补助 untouched.
    const lines = await purseLines(t.db, card);
    assert.deepEqual(lines.map((l) => [l.code, l.amount]), [["cash", -150], ["subsidy", 500]]);
    assert.equal((await getBalance(t.db, card, "supermarket")).available, 0);
    await assertBooks(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("the expiry worker sends what is left back to the funding account, once, audited", async () => {
  const t = await setup();
  try {
    const card = await t.card(100);
    const grant = await t.lot(card, 500, { until: 3600_000 });
    await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 200,
      reference: ref("pay"),
    });
    // Not due yet.
    assert.deepEqual(await expireLots(t.db, new Date()), []);
    const later = new Date(Date.now() + 2 * 3600_000);
    const [done, ...rest] = await expireLots(t.db, later);
    assert.deepEqual(rest, []);
    assert.equal(done.amount, 300);
    assert.deepEqual(await lotsOf(t.db, card), [[0, 0]]);
    assert.equal((await getBalance(t.db, card)).balance, 100);
    // Idempotent: a second round has nothing to do.
    assert.deepEqual(await expireLots(t.db, later), []);
    const audit = await t.db.selectFrom("audit_log").select(["action", "staff_id", "after"])
      .where("action", "=", "wallet.subsidy_expired").execute();
    assert.equal(audit.length, 1);
    assert.equal(audit[0].staff_id, null);
    // A refund after the end puts the money back in the lot; the next round sends it back too.
    const t2 = await t.db.selectFrom("ledger_transfers").select("id")
      .where("card_account_id", "=", card).where("kind", "=", "purchase").executeTakeFirstOrThrow();
    await refundTransfer(t.db, {
      transferId: t2.id,
      amount: 200,
      reference: ref("refund"),
      reason: "test",
      staffId: null,
    });
    assert.deepEqual(await lotsOf(t.db, card), [[200, 0]]);
    assert.equal((await expireLots(t.db, later))[0].amount, 200);
    const { rows: [f] } = await sql<{ net: number }>`
      select coalesce(sum(case when credit_account_id = l.funding_account_id then amount
        else -amount end), 0) as net
      from purse_lots l join ledger_transfers t
        on l.funding_account_id in (t.debit_account_id, t.credit_account_id)
      where l.reference = ${grant}`.execute(t.db);
    // Issued 500, spent 200 (refunded), expired 300 + 200: the funding account is whole again.
    assert.equal(Number(f.net), 0);
    await assertBooks(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("an expiring lot keeps what a running shower set aside until the shower ends", async () => {
  const t = await setup();
  try {
    const card = await t.card(0);
    await t.lot(card, 500, { until: 3600_000 });
    const hold = await holdFunds(t.db, {
      cardAccountId: card,
      amount: 300,
      merchantId: t.shower.id,
      reference: ref("start"),
      expiresAt: new Date(Date.now() + 3 * 3600_000),
    });
    const later = new Date(Date.now() + 2 * 3600_000);
    assert.equal((await expireLots(t.db, later))[0].amount, 200);
    assert.deepEqual(await lotsOf(t.db, card), [[300, 300]]);
    const end = await settleHold(t.db, { holdId: hold.holdId, amount: 120, reference: ref("end") });
    assert.equal(end.charged, 120);
    assert.deepEqual(await lotsOf(t.db, card), [[180, 0]]);
    assert.equal((await expireLots(t.db, later))[0].amount, 180);
    assert.equal((await getBalance(t.db, card)).balance, 0);
    await assertBooks(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("an ended lot whose shower hold is given back without a charge goes back again", async () => {
  // The lot went back while a shower held part of it; the hold then ended with nothing drawn
  // from the lot, so the second return follows the first with no payment between: it still
  // needs a reference of its own.
  const t = await setup();
  try {
    const card = await t.card(0);
    await t.lot(card, 500, { until: 3600_000 });
    const hold = await holdFunds(t.db, {
      cardAccountId: card,
      amount: 250,
      merchantId: t.shower.id,
      reference: ref("start"),
      expiresAt: new Date(Date.now() + 3 * 3600_000),
    });
    const later = new Date(Date.now() + 2 * 3600_000);
    assert.equal((await expireLots(t.db, later))[0].amount, 250);
    await releaseHold(t.db, { holdId: hold.holdId, reason: "test" });
    assert.deepEqual(await lotsOf(t.db, card), [[250, 0]]);
    // The same amount as the first return, with no movement between: a return of its own.
    const [again, ...rest] = await expireLots(t.db, later);
    assert.deepEqual(rest, []);
    assert.equal(again.amount, 250);
    assert.deepEqual(await lotsOf(t.db, card), [[0, 0]]);
    assert.equal((await getBalance(t.db, card)).balance, 0);
    assert.deepEqual(await expireLots(t.db, later), []);
    await assertBooks(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("a grant is reversed for one card by a new transfer of what it still holds", async () => {
  const t = await setup();
  try {
    const card = await t.card(0);
    const grant = await t.lot(card, 500);
    await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 120,
      reference: ref("pay"),
    });
    const back = await t.db.transaction().execute((trx) =>
      reverseGrant(trx, { grantReference: grant, reason: "发错了", staffId: 1 })
    );
    assert.equal(back?.amount, 380);
    const again = await t.db.transaction().execute((trx) =>
      reverseGrant(trx, { grantReference: grant, reason: "发错了", staffId: 1 })
    );
    assert.equal(again, null);
    assert.equal((await getBalance(t.db, card)).balance, 0);
    const kinds = await t.db.selectFrom("ledger_transfers").select(["kind", "amount"])
      .where("card_account_id", "=", card).orderBy("id").execute();
    assert.deepEqual(kinds.map((k) => [k.kind, k.amount]), [
      ["subsidy", 500],
      ["purchase", 120],
      ["subsidy_reversal", 380],
    ]);
    await assertBooks(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("a group-committed batch takes 补助 first and tells each reader what its merchant sees", async () => {
  const t = await setup();
  try {
    const mixed = await t.card(1000);
    await t.lot(mixed, 500);
    const elsewhere = await t.card(1000);
    await t.lot(elsewhere, 500, { categories: ["supermarket"] });
    // The merchant's ledger account exists after its first payment (a batch does not create it).
    await payFromCard(t.db, {
      cardAccountId: await t.card(100),
      merchantId: t.merchant.id,
      amount: 1,
      reference: ref("first"),
    });
    const paid = await payFromCardsRecorded(t.db, {
      payments: [mixed, elsewhere].map((card) => ({
        payer: String(card),
        merchantId: t.merchant.id,
        amount: 700,
        reference: ref("batch"),
        terminalId: null,
      })),
      cardAccountOf: (payer) => sql<number | null>`${payer}::bigint`,
      record: (rows) => sql`select ord from ${rows}`,
    });
    assert.deepEqual(paid.map((p) => p && [p.balanceAfter, p.balanceHere]), [
      [800, 800],
      [800, 300],
    ]);
    assert.deepEqual(await lotsOf(t.db, mixed), [[0, 0]]);
    assert.deepEqual(await lotsOf(t.db, elsewhere), [[500, 0]]);
    assert.deepEqual(await legsOf(t.db, paid[0]!.transferId), [-500]);
    await assertBooks(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("the verifier finds a lot that is not its legs and a funding account that is not its grants", async () => {
  const t = await setup();
  try {
    const card = await t.card(100);
    await t.lot(card, 500);
    await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 300,
      reference: ref("pay"),
    });
    await assertBooks(t.db);
    await sql`alter table ledger_accounts drop constraint ledger_accounts_lots`.execute(t.db);
    await sql`update purse_lots set remaining = remaining + 1`.execute(t.db);
    await sql`update ledger_accounts set lots = lots + 1, balance = balance + 1
      where card_account_id = ${card}`.execute(t.db);
    const problems = (await verifyLedger(t.db)).problems.join("\n");
    assert.match(problems, /a lot is its legs: lot \d+: remaining 201 fen, its legs sum to 200/);
    assert.match(problems, /a subsidy funding account is its grants/);
    await sql`update purse_lots set remaining = remaining - 1`.execute(t.db);
    await sql`update ledger_accounts set lots = lots - 1 where card_account_id = ${card}`
      .execute(t.db);
    const cash = (await verifyLedger(t.db)).problems.join("\n");
    assert.match(
      cash,
      /the cash purse is its entries: card account \d+: cash purse 101 fen, its entries sum to 100/,
    );
  } finally {
    await t.h.close();
  }
});
