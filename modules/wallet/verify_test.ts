import assert from "node:assert/strict";
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { setup } from "./_test_support.ts";
import {
  holdFunds,
  issuePaymentCode,
  payFromCard,
  redeemPaymentCode,
  refundTransfer,
  settleHold,
  verifyLedger,
} from "./mod.ts";

const later = () => new Date(Date.now() + 3600_000);
const ROLLBACK = new Error("rollback");

/** The verifier's problems with `corrupt` applied by direct SQL, rolled back afterwards. */
async function problemsAfter(db: Db, corrupt: (trx: Db) => Promise<unknown>): Promise<string[]> {
  let problems: string[] = [];
  await db.transaction().execute(async (trx) => {
    await corrupt(trx);
    problems = (await verifyLedger(trx)).problems;
    throw ROLLBACK;
  }).catch((err) => {
    if (err !== ROLLBACK) throw err;
  });
  return problems;
}

/** Books with one of everything the verifier reads: top-ups, a payment, a refund, holds, a code. */
async function books() {
  const t = await setup();
  const card = await t.card(10_000);
  const other = await t.card(5_000);
  const pay = await payFromCard(t.db, {
    cardAccountId: card,
    merchantId: t.merchant.id,
    amount: 350,
    reference: "v:pay",
    channel: "card",
  });
  const refund = await refundTransfer(t.db, {
    transferId: pay.transferId,
    amount: 200,
    reference: "v:refund",
    reason: "少打了菜",
    staffId: null,
  });
  const settled = await holdFunds(t.db, {
    cardAccountId: card,
    amount: 500,
    merchantId: t.shower.id,
    reference: "v:hold1",
    expiresAt: later(),
  });
  await settleHold(t.db, { holdId: settled.holdId, amount: 180, reference: "v:settle1" });
  const active = await holdFunds(t.db, {
    cardAccountId: other,
    amount: 300,
    merchantId: t.shower.id,
    reference: "v:hold2",
    expiresAt: later(),
  });
  const { code } = await issuePaymentCode(t.db, card);
  await redeemPaymentCode(t.db, {
    code,
    amount: 1200,
    merchantId: t.merchant.id,
    reference: "v:code",
  });
  const merchantAccount = (await t.db.selectFrom("ledger_accounts").select("id")
    .where("merchant_id", "=", t.merchant.id).executeTakeFirstOrThrow()).id;
  const wallet = (await t.db.selectFrom("ledger_accounts").select("id")
    .where("card_account_id", "=", card).executeTakeFirstOrThrow()).id;
  const topUp = (await t.db.selectFrom("ledger_transfers").select("id")
    .where("reference", "=", `seed-${card}`).executeTakeFirstOrThrow()).id;
  const last = (await t.db.selectFrom("ledger_transfers").select("id")
    .where("card_account_id", "=", card).orderBy("id", "desc").executeTakeFirstOrThrow()).id;
  return {
    t,
    card,
    other,
    pay: pay.transferId,
    refund: refund.transferId,
    topUp,
    last,
    code,
    settledHold: settled.holdId,
    activeHold: active.holdId,
    merchantAccount,
    wallet,
  };
}

Deno.test("the verifier passes clean books and catches each kind of corrupted row", async () => {
  const b = await books();
  try {
    const clean = await verifyLedger(b.t.db);
    assert.deepEqual(clean.problems, []);
    assert.equal(clean.totals.cardBalances, 10_000 + 5_000 - 350 + 200 - 180 - 1200);
    assert.equal(clean.totals.held, 300);
    assert.equal(clean.totals.externalIn, 15_000);

    const transfers = (trx: Db) => trx.updateTable("ledger_transfers");
    const cases: Array<[string, (trx: Db) => Promise<unknown>]> = [
      [
        "accounts exist",
        (trx) =>
          transfers(trx).set({ credit_account_id: 987_654 }).where("id", "=", b.pay).execute(),
      ],
      [
        "balance is the sum of entries",
        (trx) =>
          trx.updateTable("ledger_accounts").set({ balance: sql`balance + 1` })
            .where("card_account_id", "=", b.card).execute(),
      ],
      [
        "card side matches its leg",
        (trx) => transfers(trx).set({ card_delta: -349 }).where("id", "=", b.pay).execute(),
      ],
      [
        // With the stored balance moved to match: only the missing card name tells.
        "wallet legs name their card",
        async (trx) => {
          await trx.insertInto("ledger_transfers").values({
            reference: "v:unnamed",
            kind: "purchase",
            debit_account_id: b.wallet,
            credit_account_id: b.merchantAccount,
            amount: 1,
          }).execute();
          await trx.updateTable("ledger_accounts").set({ balance: sql`balance - 1` })
            .where("id", "=", b.wallet).execute();
        },
      ],
      [
        "balance-after chain",
        (trx) =>
          transfers(trx).set({ balance_after: sql`balance_after + 1` }).where("id", "=", b.pay)
            .execute(),
      ],
      [
        "balance-after chain ends at the balance",
        (trx) =>
          transfers(trx).set({
            balance_after: sql`balance_after + 1`,
            card_delta: sql`card_delta + 1`,
          })
            .where("id", "=", b.last).execute(),
      ],
      [
        "held is the active holds",
        (trx) =>
          trx.updateTable("ledger_holds").set({ amount: 301 }).where("id", "=", b.activeHold)
            .execute(),
      ],
      [
        "a settled hold's charge is its transfer",
        (trx) =>
          trx.updateTable("ledger_holds").set({ charged: 181 }).where("id", "=", b.settledHold)
            .execute(),
      ],
      [
        "give-backs follow their original",
        (trx) =>
          transfers(trx).set({ related_transfer_id: b.topUp }).where("id", "=", b.refund).execute(),
      ],
      [
        // A second refund booked consistently everywhere but against what was paid.
        "give-backs within their original",
        async (trx) => {
          await trx.insertInto("ledger_transfers").values({
            reference: "v:refund-again",
            kind: "refund",
            debit_account_id: b.merchantAccount,
            credit_account_id: b.wallet,
            amount: 200,
            card_account_id: b.card,
            card_delta: 200,
            balance_after: sql`(select balance + 200 from ledger_accounts where id = ${b.wallet})`,
            related_transfer_id: b.pay,
          }).execute();
          await trx.updateTable("ledger_accounts").set({ balance: sql`balance + 200` })
            .where("id", "=", b.wallet).execute();
        },
      ],
      [
        "a used payment code is its transfer",
        (trx) =>
          trx.updateTable("payment_codes").set({ transfer_id: b.pay }).where("code", "=", b.code)
            .execute(),
      ],
    ];
    for (const [check, corrupt] of cases) {
      const problems = await problemsAfter(b.t.db, corrupt);
      assert.ok(
        problems.some((p) => p.startsWith(`${check}: `)),
        `${check} did not fire: ${JSON.stringify(problems)}`,
      );
    }
    assert.deepEqual((await verifyLedger(b.t.db)).problems, [], "every corruption rolled back");
  } finally {
    await b.t.h.close();
  }
});
