/**
 * Purses under concurrency, on PostgreSQL (DATABASE_URL): many payments of one card at once drain
 * its 补助 and its cash and never take either below zero; the expiry worker racing payments sends
 * back exactly what they did not spend; showers and payments of one card at once keep the books;
 * refunds of a mixed payment at once give each purse back at most what it paid, cash first.
 */
import assert from "node:assert/strict";
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { onPostgres, setup } from "./_test_support.ts";
import {
  expireLots,
  holdFunds,
  InsufficientFundsError,
  payFromCard,
  payFromCardsRecorded,
  RefundExceedsOriginalError,
  refundTransfer,
  settleHold,
  verifyLedger,
} from "./mod.ts";

async function purses(db: Db, card: number) {
  const { rows: [r] } = await sql<{ cash: number; lots: number; held: number }>`
    select la.balance - la.overdraft - la.lots as cash,
      (select coalesce(sum(remaining), 0) from purse_lots where card_account_id = ${card}) as lots,
      la.held
    from ledger_accounts la where la.card_account_id = ${card}`.execute(db);
  return { cash: Number(r.cash), lots: Number(r.lots), held: Number(r.held) };
}

Deno.test({
  name: "60 payments of one card at once drain 补助 then cash, never below zero in either",
  ignore: !onPostgres,
  async fn() {
    const t = await setup({ poolSize: 40 });
    try {
      const card = await t.card(5000);
      await t.lot(card, 3000, { until: 86400_000 });
      await t.lot(card, 2000, { until: 2 * 86400_000 });
      // The merchant's account exists, so the group commit can pay.
      await payFromCard(t.db, {
        cardAccountId: await t.card(10),
        merchantId: t.merchant.id,
        amount: 1,
        reference: "race-first",
      });
      const amounts = Array.from({ length: 60 }, (_, i) => 150 + (i % 7) * 10);
      const results = await Promise.allSettled(
        amounts.map((amount, i) =>
          i % 3 === 0
            ? payFromCardsRecorded(t.db, {
              payments: [{
                payer: String(card),
                merchantId: t.merchant.id,
                amount,
                reference: `race-${i}`,
                terminalId: null,
              }],
              cardAccountOf: (payer) => sql<number | null>`${payer}::bigint`,
              record: (rows) => sql`select ord from ${rows}`,
            }).then(([p]) => {
              if (!p) throw new InsufficientFundsError(0, 0, amount);
              return p;
            })
            : payFromCard(t.db, {
              cardAccountId: card,
              merchantId: t.merchant.id,
              amount,
              reference: `race-${i}`,
            })
        ),
      );
      let paid = 0;
      for (const [i, r] of results.entries()) {
        if (r.status === "fulfilled") paid += amounts[i];
        else assert.ok(r.reason instanceof InsufficientFundsError, String(r.reason));
      }
      assert.ok(paid <= 10_000);
      // Every purse was drawn: the lots gave all they had before cash went below 5000.
      const p = await purses(t.db, card);
      assert.ok(p.cash >= 0 && p.lots >= 0, JSON.stringify(p));
      assert.equal(p.cash + p.lots, 10_000 - paid);
      if (p.cash < 5000) assert.equal(p.lots, 0);
      const { rows: [legs] } = await sql<{ drawn: number }>`
        select -coalesce(sum(g.amount), 0) as drawn from purse_legs g
        join ledger_transfers t on t.id = g.transfer_id
        where t.card_account_id = ${card} and t.kind = 'purchase'`.execute(t.db);
      assert.equal(Number(legs.drawn), 5000 - p.lots);
      assert.deepEqual((await verifyLedger(t.db)).problems, []);
    } finally {
      await t.h.close();
    }
  },
});

Deno.test({
  name: "the expiry worker racing payments sends back exactly what they did not spend",
  ignore: !onPostgres,
  async fn() {
    const t = await setup({ poolSize: 30 });
    try {
      const cards: number[] = [];
      for (let i = 0; i < 5; i++) {
        const card = await t.card(200);
        await t.lot(card, 1000, { until: 3600_000 });
        cards.push(card);
      }
      // The worker sees the lots past their end; the payments' own clock still sees them valid.
      const later = new Date(Date.now() + 2 * 3600_000);
      const expiries: Array<Promise<unknown>> = [];
      const payments = cards.flatMap((card, c) =>
        Array.from({ length: 8 }, (_, i) => {
          if (i === 3) expiries.push(expireLots(t.db, later));
          return payFromCard(t.db, {
            cardAccountId: card,
            merchantId: t.merchant.id,
            amount: 140,
            reference: `exp-${c}-${i}`,
          }).then(() => 140, (err) => {
            assert.ok(err instanceof InsufficientFundsError, String(err));
            return 0;
          });
        })
      );
      const spent = await Promise.all(payments);
      await Promise.all(expiries);
      await expireLots(t.db, later);
      const { rows } = await sql<{ card: number; granted: number; spent: number; expired: number }>`
        select l.card_account_id as card, l.granted,
          -coalesce(sum(g.amount) filter (where t.kind = 'purchase'), 0) as spent,
          -coalesce(sum(g.amount) filter (where t.kind = 'subsidy_expiry'), 0) as expired
        from purse_lots l join purse_legs g on g.lot_id = l.id
        join ledger_transfers t on t.id = g.transfer_id
        group by l.id order by l.id`.execute(t.db);
      for (const r of rows) {
        assert.equal(Number(r.spent) + Number(r.expired), Number(r.granted), JSON.stringify(r));
      }
      for (const [c, card] of cards.entries()) {
        const p = await purses(t.db, card);
        assert.equal(p.lots, 0);
        const mine = spent.slice(c * 8, c * 8 + 8).reduce((a, b) => a + b, 0);
        const fromLot = Number(rows.find((r) => Number(r.card) === card)!.spent);
        assert.equal(p.cash, 200 - (mine - fromLot));
        assert.ok(p.cash >= 0);
      }
      assert.deepEqual((await verifyLedger(t.db)).problems, []);
    } finally {
      await t.h.close();
    }
  },
});

Deno.test({
  name: "showers and payments of one card with 补助 at once keep every purse and the books",
  ignore: !onPostgres,
  async fn() {
    const t = await setup({ poolSize: 30 });
    try {
      const card = await t.card(2000);
      await t.lot(card, 1500);
      await payFromCard(t.db, {
        cardAccountId: await t.card(10),
        merchantId: t.shower.id,
        amount: 1,
        reference: "shower-first",
      });
      const work = Array.from({ length: 24 }, async (_, i) => {
        if (i % 2 === 0) {
          const hold = await holdFunds(t.db, {
            cardAccountId: card,
            amount: 300,
            merchantId: t.shower.id,
            reference: `sh-${i}`,
            expiresAt: new Date(Date.now() + 3600_000),
          }).catch(() => null);
          if (hold) {
            await settleHold(t.db, { holdId: hold.holdId, amount: 170, reference: `she-${i}` });
          }
        } else {
          await payFromCard(t.db, {
            cardAccountId: card,
            merchantId: t.merchant.id,
            amount: 160,
            reference: `pay-${i}`,
          }).catch((err) => assert.ok(err instanceof InsufficientFundsError, String(err)));
        }
      });
      await Promise.all(work);
      const p = await purses(t.db, card);
      assert.equal(p.held, 0);
      assert.ok(p.cash >= 0 && p.lots >= 0);
      assert.deepEqual((await verifyLedger(t.db)).problems, []);
    } finally {
      await t.h.close();
    }
  },
});

Deno.test({
  name:
    "refunds of a mixed payment at once, beside payments of its card, give each purse back its part",
  ignore: !onPostgres,
  async fn() {
    const t = await setup({ poolSize: 30 });
    try {
      const card = await t.card(1600);
      await t.lot(card, 400);
      // 400 from the lot, 600 of cash: a refund gives back cash first, then the lot.
      const meal = await payFromCard(t.db, {
        cardAccountId: card,
        merchantId: t.merchant.id,
        amount: 1000,
        reference: "mixed-meal",
      });
      const refunds = Array.from({ length: 20 }, (_, i) =>
        refundTransfer(t.db, {
          transferId: meal.transferId,
          amount: 60,
          reference: `mixed-refund-${i}`,
          reason: "退菜",
          staffId: null,
        }).then(() => 60, (err) => {
          assert.ok(err instanceof RefundExceedsOriginalError, String(err));
          return 0;
        }));
      // The card keeps paying while its refunds come in: cash only now (the lot is empty until
      // a refund reaches it, and then the next payment may take that back).
      const payments = Array.from({ length: 10 }, (_, i) =>
        payFromCard(t.db, {
          cardAccountId: card,
          merchantId: t.merchant.id,
          amount: 90,
          reference: `mixed-pay-${i}`,
        }).then(() => 90, (err) => {
          assert.ok(err instanceof InsufficientFundsError, String(err));
          return 0;
        }));
      const refunded = (await Promise.all(refunds)).reduce((a, b) => a + b, 0);
      const paid = (await Promise.all(payments)).reduce((a, b) => a + b, 0);
      // 16 refunds of 60 fit in 1000, never a 17th.
      assert.equal(refunded, 960);
      const { rows: [back] } = await sql<{ lots: number }>`
        select coalesce(sum(g.amount), 0) as lots
        from ledger_transfers r join purse_legs g on g.transfer_id = r.id
        where r.related_transfer_id = ${meal.transferId} and r.kind = 'refund'`.execute(t.db);
      // Cash got its 600 back first; the lot the other 360, never more than it gave.
      assert.equal(Number(back.lots), 360);
      const { rows: [lot] } = await sql<{ granted: number; remaining: number; legs: number }>`
        select l.granted, l.remaining,
          (select sum(amount) from purse_legs where lot_id = l.id) as legs
        from purse_lots l where l.card_account_id = ${card}`.execute(t.db);
      assert.equal(Number(lot.remaining), Number(lot.legs));
      assert.ok(Number(lot.remaining) >= 0 && Number(lot.remaining) <= Number(lot.granted));
      const p = await purses(t.db, card);
      assert.ok(p.cash >= 0 && p.lots >= 0, JSON.stringify(p));
      assert.equal(p.cash + p.lots, 2000 - 1000 + refunded - paid);
      assert.deepEqual((await verifyLedger(t.db)).problems, []);
    } finally {
      await t.h.close();
    }
  },
});
