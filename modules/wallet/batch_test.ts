import assert from "node:assert/strict";
import { sql } from "kysely";
import { createMerchant } from "../merchant/mod.ts";
import { setup } from "./_test_support.ts";
import {
  type BatchPayment,
  getBalance,
  payFromCard,
  payFromCardsRecorded,
  updatePaySettings,
  verifyLedger,
} from "./mod.ts";
import type { Db } from "../platform/database.ts";
import { ensureMerchantAccount } from "./_common.ts";

/** A batch whose payer is the card account id itself, recorded nowhere but in the ledger. */
async function payBatch(db: Db, payments: BatchPayment[]) {
  return await payFromCardsRecorded(db, {
    payments,
    cardAccountOf: (payer) => sql<number | null>`${payer}::bigint`,
    record: (paid) => sql`select ord from ${paid}`,
  });
}

Deno.test("a batch pays each card that can pay and leaves the refused ones untouched", async () => {
  const w = await setup();
  try {
    await ensureMerchantAccount(w.db, w.merchant.id);
    const rich = await w.card(10_000);
    const poor = await w.card(300);
    const limited = await w.card(10_000);
    await updatePaySettings(w.db, limited, { payLimit: 1000, dailyLimit: 1500, codeFrozen: false });
    const other = await w.card(5_000);
    const none = await w.card(0);
    const pay = (card: number, amount: number, reference: string): BatchPayment => ({
      payer: String(card),
      merchantId: w.merchant.id,
      amount,
      reference,
      terminalId: null,
    });
    const out = await payBatch(w.db, [
      pay(rich, 1200, "b-1"),
      pay(poor, 500, "b-2"),
      pay(limited, 1200, "b-3"),
      pay(other, 700, "b-4"),
      pay(none, 100, "b-5"),
      pay(999_999, 100, "b-6"),
    ]);
    assert.deepEqual(out.map((r) => r?.balanceAfter ?? null), [8800, null, null, 4300, null, null]);
    assert.equal((await getBalance(w.db, rich)).balance, 8800);
    assert.equal((await getBalance(w.db, poor)).balance, 300);
    assert.equal((await getBalance(w.db, limited)).balance, 10_000);
    assert.equal((await getBalance(w.db, other)).balance, 4300);
    // Within the limits the same card pays, and today's spending counts the batch's amount.
    const next = await payBatch(w.db, [pay(limited, 900, "b-7"), pay(rich, 100, "b-1")]);
    assert.deepEqual(next.map((r) => r?.balanceAfter ?? null), [9100, null]);
    const again = await payBatch(w.db, [pay(limited, 900, "b-8")]);
    assert.deepEqual(again, [null]);
    const transfers = await w.db.selectFrom("ledger_transfers").select(["reference", "amount"])
      .where("kind", "=", "purchase").orderBy("reference").execute();
    assert.deepEqual(transfers, [
      { reference: "b-1", amount: 1200 },
      { reference: "b-4", amount: 700 },
      { reference: "b-7", amount: 900 },
    ]);
    assert.deepEqual((await verifyLedger(w.db)).problems, []);
  } finally {
    await w.h.close();
  }
});

Deno.test("a card twice in one batch pays once; a duplicate reference in a batch writes nothing", async () => {
  const w = await setup();
  try {
    await ensureMerchantAccount(w.db, w.merchant.id);
    const card = await w.card(10_000);
    const other = await w.card(10_000);
    const pay = (c: number, amount: number, reference: string): BatchPayment => ({
      payer: String(c),
      merchantId: w.merchant.id,
      amount,
      reference,
      terminalId: null,
    });
    const out = await payBatch(w.db, [pay(card, 100, "d-1"), pay(card, 200, "d-2")]);
    assert.equal(out.filter((r) => r !== null).length, 1);
    const paid = out[0] ? 100 : 200;
    assert.equal((await getBalance(w.db, card)).balance, 10_000 - paid);
    await assert.rejects(
      payBatch(w.db, [pay(other, 100, "d-3"), pay(card, 100, "d-3")]),
      (err: { code?: string }) => err.code === "23505",
    );
    assert.equal((await getBalance(w.db, other)).balance, 10_000);
    assert.equal((await getBalance(w.db, card)).balance, 10_000 - paid);
    assert.deepEqual((await verifyLedger(w.db)).problems, []);
  } finally {
    await w.h.close();
  }
});

Deno.test("a merchant without a ledger account yet, or inactive, is left to the ordinary path", async () => {
  const w = await setup();
  try {
    const card = await w.card(10_000);
    const fresh = await createMerchant(w.db, {
      code: "NEW-1",
      name: "新窗口",
      category: "canteen",
    });
    await ensureMerchantAccount(w.db, w.merchant.id);
    await payBatch(w.db, [{
      payer: String(card),
      merchantId: w.merchant.id,
      amount: 1,
      reference: "m-0",
      terminalId: null,
    }]);
    const out = await payBatch(w.db, [
      {
        payer: String(card),
        merchantId: fresh.id,
        amount: 100,
        reference: "m-1",
        terminalId: null,
      },
    ]);
    assert.deepEqual(out, [null]);
    assert.equal((await getBalance(w.db, card)).balance, 10_000 - 1);
  } finally {
    await w.h.close();
  }
});

Deno.test({
  name:
    "the batch and debit statements are planned once per connection; a lot read uses its partial index",
  ignore: !Deno.env.get("DATABASE_URL"),
  fn: async () => {
    const w = await setup({ poolSize: 1 });
    try {
      await ensureMerchantAccount(w.db, w.merchant.id);
      const card = await w.card(100_000);
      for (let i = 0; i < 8; i++) {
        const [paid] = await payBatch(w.db, [{
          payer: String(card),
          merchantId: w.merchant.id,
          amount: 100 + i,
          reference: `generic-b-${i}`,
          terminalId: null,
        }]);
        assert.ok(paid);
        await payFromCard(w.db, {
          cardAccountId: card,
          merchantId: w.merchant.id,
          amount: 10 + i,
          reference: `generic-p-${i}`,
        });
      }
      const { rows } = await sql<
        { statement: string; generic_plans: number; custom_plans: number }
      >`
        select statement, generic_plans, custom_plans from pg_prepared_statements
        where statement like '/*prepared*/%' order by statement`.execute(w.db);
      const batch = rows.find((r) => r.statement.includes("with ordinality"));
      const debit = rows.find((r) => r.statement.includes("select 1 as ord"));
      for (const s of [batch, debit]) {
        assert.ok(s, "the statement was prepared");
        assert.deepEqual([Number(s.custom_plans), Number(s.generic_plans)], [0, 8]);
      }
      // Every statement is planned without its values (platform/database.ts): with its 0 a
      // literal, a read of a card's lots is served by their partial index (where remaining > 0)
      // in a generic plan; with the 0 a parameter, it cannot be (lots.ts, purses.ts).
      const planOf = async (zero: string) => {
        await sql`prepare lots_read(bigint, bigint) as select id from purse_lots
          where card_account_id = $1 and remaining > ${sql.raw(zero)} order by id`.execute(w.db);
        const plan = await sql<{ "QUERY PLAN": string }>`explain execute lots_read(${
          sql.lit(card)
        }, 0)`.execute(w.db);
        await sql`deallocate lots_read`.execute(w.db);
        return plan.rows.map((r) => r["QUERY PLAN"]).join("\n");
      };
      await sql`set enable_seqscan = off`.execute(w.db);
      assert.match(await planOf("0"), /purse_lots_card/);
      assert.doesNotMatch(await planOf("$2"), /purse_lots_card/);
      await sql`reset enable_seqscan`.execute(w.db);
    } finally {
      await w.h.close();
    }
  },
});
