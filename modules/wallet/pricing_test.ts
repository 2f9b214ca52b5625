/**
 * Card-type and meal-period pricing on the card payment paths (one at a time and group
 * committed): the price in force is charged, never above the list price nor below one fen, the
 * rule applied is recorded on the payment and survives a later edit, a period's cap refuses with
 * its own error, and concurrent payments of one card in one period never pass the cap.
 */
import assert from "node:assert/strict";
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { priceInForce } from "../card/mod.ts";
import { onPostgres, setup } from "./_test_support.ts";
import {
  issuePaymentCode,
  MealPeriodCapError,
  payFromCard,
  payFromCardsRecorded,
  redeemPaymentCode,
} from "./mod.ts";

async function typeId(db: Db, name: string): Promise<number> {
  const r = await db.selectFrom("card_types").select("id").where("name", "=", name)
    .executeTakeFirstOrThrow();
  return Number(r.id);
}

async function setType(db: Db, card: number, name: string) {
  await db.updateTable("card_accounts").set({ card_type_id: await typeId(db, name) })
    .where("id", "=", card).execute();
}

async function period(
  db: Db,
  merchantId: number,
  p: { starts: string; ends: string; maxCount?: number; maxAmount?: number },
): Promise<number> {
  const r = await db.insertInto("meal_periods").values({
    merchant_id: merchantId,
    name: "午餐",
    starts: p.starts,
    ends: p.ends,
    max_count: p.maxCount ?? null,
    max_amount: p.maxAmount ?? null,
  }).returning("id").executeTakeFirstOrThrow();
  return Number(r.id);
}

async function details(db: Db, reference: string) {
  const r = await db.selectFrom("ledger_transfers").select(["amount", "details"])
    .where("reference", "=", reference).executeTakeFirstOrThrow();
  return { amount: Number(r.amount), details: r.details as { price?: Record<string, unknown> } };
}

Deno.test("a meal period's price holds from its start (11:00:00 China time), not a second before", async () => {
  const t = await setup();
  try {
    const card = await t.card(0);
    await setType(t.db, card, "教职工");
    const id = await period(t.db, t.merchant.id, { starts: "11:00", ends: "13:00" });
    await t.db.insertInto("meal_period_prices").values({
      meal_period_id: id,
      card_type_id: await typeId(t.db, "教职工"),
      percent_off: 10,
      fen_off: 0,
    }).execute();
    const ask = { cardAccountId: card, merchantId: t.merchant.id, category: "canteen", list: 1250 };
    const before = await priceInForce(t.db, ask, new Date("2026-12-07T10:59:59+08:00"));
    const at = await priceInForce(t.db, ask, new Date("2026-12-07T11:00:00+08:00"));
    const last = await priceInForce(t.db, ask, new Date("2026-12-07T12:59:59+08:00"));
    const after = await priceInForce(t.db, ask, new Date("2026-12-07T13:00:00+08:00"));
    assert.deepEqual([before.amount, at.amount, last.amount, after.amount], [
      1250,
      1125,
      1125,
      1250,
    ]);
    assert.equal(before.periodId, null);
    assert.equal(at.periodId, id);
    assert.deepEqual(at.price, {
      list: 1250,
      off: 125,
      type: "教职工",
      period: "午餐",
      percentOff: 10,
      fenOff: 0,
    });
  } finally {
    await t.h.close();
  }
});

Deno.test("a type's canteen rule is charged and recorded; a later edit leaves history alone", async () => {
  const t = await setup();
  try {
    const staff = await t.card(10_000);
    const student = await t.card(10_000);
    await setType(t.db, staff, "教职工");
    const staffType = await typeId(t.db, "教职工");
    await t.db.insertInto("card_type_prices").values({
      card_type_id: staffType,
      category: "canteen",
      percent_off: 10,
      fen_off: 50,
    }).execute();
    const paid = await payFromCard(t.db, {
      cardAccountId: staff,
      merchantId: t.merchant.id,
      amount: 1000,
      reference: "price-1",
    });
    assert.equal(paid.charged, 850);
    await payFromCard(t.db, {
      cardAccountId: student,
      merchantId: t.merchant.id,
      amount: 1000,
      reference: "price-2",
    });
    // Batched: the same rule; a fixed amount above the price leaves one fen, never below.
    await t.db.updateTable("card_type_prices").set({ percent_off: 0, fen_off: 5000 })
      .where("card_type_id", "=", staffType).execute();
    const [batched] = await payFromCardsRecorded(t.db, {
      payments: [{
        payer: String(staff),
        merchantId: t.merchant.id,
        amount: 1000,
        reference: "price-3",
        terminalId: null,
      }],
      cardAccountOf: (payer) => sql<number>`(${payer})::bigint`,
      record: () => sql`select 1`,
    });
    assert.equal(batched?.charged, 1);
    const first = await details(t.db, "price-1");
    assert.equal(first.amount, 850);
    assert.deepEqual(first.details.price, {
      list: 1000,
      off: 150,
      type: "教职工",
      period: null,
      percentOff: 10,
      fenOff: 50,
    });
    assert.deepEqual(await details(t.db, "price-2"), { amount: 1000, details: null as never });
    assert.equal((await details(t.db, "price-3")).amount, 1);
    // A retry of the first payment (its list price) is the same request, not a conflict.
    const again = await payFromCard(t.db, {
      cardAccountId: staff,
      merchantId: t.merchant.id,
      amount: 1000,
      reference: "price-1",
    });
    assert.equal(again.duplicate, true);
  } finally {
    await t.h.close();
  }
});

Deno.test("a 付款码 pays the price in force and obeys the meal period's cap", async () => {
  const t = await setup();
  try {
    const card = await t.card(10_000);
    await setType(t.db, card, "教职工");
    await t.db.insertInto("card_type_prices").values({
      card_type_id: await typeId(t.db, "教职工"),
      category: "canteen",
      percent_off: 20,
      fen_off: 0,
    }).execute();
    await period(t.db, t.merchant.id, { starts: "00:00", ends: "23:59:59.999999", maxCount: 1 });
    const redeem = async (reference: string) =>
      redeemPaymentCode(t.db, {
        code: (await issuePaymentCode(t.db, card)).code,
        amount: 1000,
        merchantId: t.merchant.id,
        reference,
      });
    const paid = await redeem("qr-price-1");
    assert.equal(paid.charged, 800);
    assert.equal((await details(t.db, "qr-price-1")).details.price?.list, 1000);
    await assert.rejects(redeem("qr-price-2"), (e) => e instanceof MealPeriodCapError);
  } finally {
    await t.h.close();
  }
});

Deno.test("a meal period's cap refuses the payment past it, with its own error, nothing taken", async () => {
  const t = await setup();
  try {
    const card = await t.card(10_000);
    await period(t.db, t.merchant.id, {
      starts: "00:00",
      ends: "23:59:59.999999",
      maxCount: 2,
      maxAmount: 1500,
    });
    const pay = (reference: string, amount: number) =>
      payFromCard(t.db, { cardAccountId: card, merchantId: t.merchant.id, amount, reference });
    await pay("cap-1", 600);
    await assert.rejects(
      pay("cap-2", 1000),
      (e) => e instanceof MealPeriodCapError && e.cap === "amount",
    );
    await pay("cap-3", 900);
    await assert.rejects(
      pay("cap-4", 1),
      (e) => e instanceof MealPeriodCapError && e.cap === "count" && /次数/.test(e.userMessage),
    );
    const n = await t.db.selectFrom("ledger_transfers").select("reference")
      .where("reference", "like", "cap-%").execute();
    assert.deepEqual(n.map((r) => r.reference).sort(), ["cap-1", "cap-3"]);
  } finally {
    await t.h.close();
  }
});

Deno.test({
  name: "20 payments of one card at once in one meal period never pass its cap of 3",
  ignore: !onPostgres,
  async fn() {
    const t = await setup({ poolSize: 20 });
    try {
      const card = await t.card(100_000);
      await period(t.db, t.merchant.id, { starts: "00:00", ends: "23:59:59.999999", maxCount: 3 });
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) =>
          payFromCard(t.db, {
            cardAccountId: card,
            merchantId: t.merchant.id,
            amount: 100,
            reference: `race-${i}`,
          })),
      );
      const paid = results.filter((r) => r.status === "fulfilled").length;
      assert.equal(paid, 3);
      for (const r of results) {
        if (r.status === "rejected") assert.ok(r.reason instanceof MealPeriodCapError);
      }
    } finally {
      await t.h.close();
    }
  },
});
