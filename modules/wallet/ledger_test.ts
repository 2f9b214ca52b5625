import assert from "node:assert/strict";
import { createTestDatabase, sql } from "../platform/testing.ts";
import { preparedTexts } from "../platform/database.ts";
import { onPostgres, setup } from "./_test_support.ts";
import {
  adjustBalance,
  applyOfflinePayment,
  creditTopUp,
  getBalance,
  InsufficientFundsError,
  InvalidAmountError,
  LimitExceededError,
  listNegativeBalances,
  NegativeBalanceError,
  NotRefundableError,
  payFromCard,
  PaymentReversedError,
  payUtility,
  ReferenceConflictError,
  RefundExceedsOriginalError,
  refundTransfer,
  refundUtility,
  reverseByReference,
  UnknownCardAccountError,
  UnknownMerchantError,
  updatePaySettings,
  verifyLedger,
} from "./mod.ts";

async function assertBooksBalance(db: Parameters<typeof verifyLedger>[0]) {
  const report = await verifyLedger(db);
  assert.deepEqual(report.problems, []);
  assert.equal(report.ok, true);
}

Deno.test("a card payment moves money from the card to the merchant and is idempotent", async () => {
  const t = await setup();
  try {
    const card = await t.card(1000);
    const first = await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 350,
      reference: "T1:1",
      terminalId: 7,
      channel: "card",
    });
    assert.equal(first.balanceAfter, 650);
    assert.equal(first.duplicate, false);
    const again = await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 350,
      reference: "T1:1",
      terminalId: 7,
      channel: "card",
    });
    assert.deepEqual(again, { ...first, duplicate: true });
    assert.deepEqual(await getBalance(t.db, card), { balance: 650, held: 0, available: 650 });
    await assert.rejects(
      payFromCard(t.db, {
        cardAccountId: card,
        merchantId: t.merchant.id,
        amount: 351,
        reference: "T1:1",
      }),
      ReferenceConflictError,
    );
    await assertBooksBalance(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("a payment above the balance is refused with the balance and moves nothing", async () => {
  const t = await setup();
  try {
    const card = await t.card(500);
    const err = await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 501,
      reference: "r1",
    })
      .catch((e) => e);
    assert.ok(err instanceof InsufficientFundsError);
    assert.equal(err.balance, 500);
    assert.equal(err.code, "insufficient_funds");
    assert.equal((await getBalance(t.db, card)).balance, 500);
    await assertBooksBalance(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("per-payment and daily limits are enforced and lowered by the student", async () => {
  const t = await setup();
  try {
    const card = await t.card(100_000);
    const over = await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 20_001,
      reference: "a",
    }).catch((e) => e);
    assert.ok(over instanceof LimitExceededError);
    assert.equal(over.limit, "per_payment");
    for (let i = 0; i < 2; i++) {
      await payFromCard(t.db, {
        cardAccountId: card,
        merchantId: t.merchant.id,
        amount: 20_000,
        reference: `d${i}`,
      });
    }
    const daily = await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 10_001,
      reference: "d3",
    }).catch((e) => e);
    assert.ok(daily instanceof LimitExceededError);
    assert.equal(daily.limit, "daily");
    await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 10_000,
      reference: "d4",
    });
    const other = await t.card(10_000);
    await updatePaySettings(t.db, other, { payLimit: 1_000, dailyLimit: 1_500, codeFrozen: false });
    await assert.rejects(
      payFromCard(t.db, {
        cardAccountId: other,
        merchantId: t.merchant.id,
        amount: 1_001,
        reference: "o1",
      }),
      LimitExceededError,
    );
    await payFromCard(t.db, {
      cardAccountId: other,
      merchantId: t.merchant.id,
      amount: 1_000,
      reference: "o2",
    });
    await assert.rejects(
      payFromCard(t.db, {
        cardAccountId: other,
        merchantId: t.merchant.id,
        amount: 501,
        reference: "o3",
      }),
      LimitExceededError,
    );
    await assertBooksBalance(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("amounts that are not whole positive fen are refused everywhere", async () => {
  const t = await setup();
  try {
    const card = await t.card(1000);
    for (const amount of [0, -1, 0.001, 1.5, 1e9, NaN, Infinity, "100" as unknown as number]) {
      await assert.rejects(
        payFromCard(t.db, {
          cardAccountId: card,
          merchantId: t.merchant.id,
          amount,
          reference: `x${amount}`,
        }),
        InvalidAmountError,
      );
      await assert.rejects(
        creditTopUp(t.db, {
          cardAccountId: card,
          amount,
          method: "sandbox",
          reference: `y${amount}`,
        }),
        InvalidAmountError,
      );
      await assert.rejects(
        payUtility(t.db, {
          cardAccountId: card,
          amount,
          utility: "water",
          reference: `z${amount}`,
          details: {},
        }),
        InvalidAmountError,
      );
    }
    await assert.rejects(
      payFromCard(t.db, { cardAccountId: card, merchantId: 999999, amount: 1, reference: "m" }),
      UnknownMerchantError,
    );
    assert.equal((await getBalance(t.db, card)).balance, 1000);
    await assertBooksBalance(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("offline uploads may take a card below zero; it is refused online until topped up", async () => {
  const t = await setup();
  try {
    const card = await t.card(300);
    const r = await applyOfflinePayment(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      terminalId: 3,
      amount: 500,
      reference: "off:1",
      occurredAt: new Date(),
    });
    assert.equal(r.balanceAfter, -200);
    const dup = await applyOfflinePayment(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      terminalId: 3,
      amount: 500,
      reference: "off:1",
      occurredAt: new Date(),
    });
    assert.equal(dup.duplicate, true);
    assert.deepEqual(await getBalance(t.db, card), { balance: -200, held: 0, available: 0 });
    assert.deepEqual(await listNegativeBalances(t.db), [{
      cardAccountId: card,
      balance: -200,
      overdraft: 200,
    }]);
    await assert.rejects(
      payFromCard(t.db, {
        cardAccountId: card,
        merchantId: t.merchant.id,
        amount: 1,
        reference: "p",
      }),
      NegativeBalanceError,
    );
    await creditTopUp(t.db, {
      cardAccountId: card,
      amount: 150,
      method: "sandbox",
      reference: "top1",
    });
    await assert.rejects(
      payFromCard(t.db, {
        cardAccountId: card,
        merchantId: t.merchant.id,
        amount: 1,
        reference: "p2",
      }),
      NegativeBalanceError,
    );
    await creditTopUp(t.db, {
      cardAccountId: card,
      amount: 1000,
      method: "sandbox",
      reference: "top2",
    });
    assert.deepEqual(await getBalance(t.db, card), { balance: 950, held: 0, available: 950 });
    await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 50,
      reference: "p3",
    });
    assert.deepEqual(await listNegativeBalances(t.db), []);
    // The database itself refuses an online path below zero.
    await assert.rejects(
      sql`update ledger_accounts set balance = -1 where card_account_id = ${card}`.execute(t.db),
    );
    await assertBooksBalance(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("a reversal after the original gives the money back once", async () => {
  const t = await setup();
  try {
    const card = await t.card(1000);
    await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 400,
      reference: "T9:5",
    });
    const r = await reverseByReference(t.db, { originalReference: "T9:5", reference: "T9:6" });
    assert.equal(r.status, "reversed");
    assert.equal(r.amount, 400);
    assert.equal(r.balanceAfter, 1000);
    const again = await reverseByReference(t.db, { originalReference: "T9:5", reference: "T9:6" });
    assert.equal(again.duplicate, true);
    const other = await reverseByReference(t.db, { originalReference: "T9:5", reference: "T9:7" });
    assert.equal(other.duplicate, true);
    assert.equal((await getBalance(t.db, card)).balance, 1000);
    await assertBooksBalance(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("a reversal before the original leaves a tombstone: the late original is refused", async () => {
  const t = await setup();
  try {
    const card = await t.card(1000);
    const r = await reverseByReference(t.db, { originalReference: "T9:8", reference: "T9:9" });
    assert.equal(r.status, "tombstoned");
    assert.equal(
      (await reverseByReference(t.db, { originalReference: "T9:8", reference: "T9:9" })).status,
      "tombstoned",
    );
    await assert.rejects(
      payFromCard(t.db, {
        cardAccountId: card,
        merchantId: t.merchant.id,
        amount: 100,
        reference: "T9:8",
      }),
      PaymentReversedError,
    );
    assert.equal((await getBalance(t.db, card)).balance, 1000);
    await assertBooksBalance(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("refunds are partial or full, never more than the original, idempotent", async () => {
  const t = await setup();
  try {
    const card = await t.card(1000);
    const pay = await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 600,
      reference: "buy",
    });
    const r1 = await refundTransfer(t.db, {
      transferId: pay.transferId,
      amount: 200,
      reference: "rf1",
      reason: "少打了菜",
      staffId: null,
    });
    assert.equal(r1.balanceAfter, 600);
    assert.equal(
      (await refundTransfer(t.db, {
        transferId: pay.transferId,
        amount: 200,
        reference: "rf1",
        reason: "x",
        staffId: null,
      })).duplicate,
      true,
    );
    const over = await refundTransfer(t.db, {
      transferId: pay.transferId,
      amount: 401,
      reference: "rf2",
      reason: "x",
      staffId: null,
    }).catch((e) => e);
    assert.ok(over instanceof RefundExceedsOriginalError);
    assert.equal(over.refundable, 400);
    await refundTransfer(t.db, {
      transferId: pay.transferId,
      amount: 400,
      reference: "rf3",
      reason: "x",
      staffId: null,
    });
    await assert.rejects(
      refundTransfer(t.db, {
        transferId: pay.transferId,
        amount: 1,
        reference: "rf4",
        reason: "x",
        staffId: null,
      }),
      RefundExceedsOriginalError,
    );
    const top = await creditTopUp(t.db, {
      cardAccountId: card,
      amount: 100,
      method: "sandbox",
      reference: "tp",
    });
    await assert.rejects(
      refundTransfer(t.db, {
        transferId: top.transferId,
        amount: 1,
        reference: "rf5",
        reason: "x",
        staffId: null,
      }),
      NotRefundableError,
    );
    assert.equal((await getBalance(t.db, card)).balance, 1100);
    await assertBooksBalance(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("utility payments and their refund happen exactly once", async () => {
  const t = await setup();
  try {
    const card = await t.card(5000);
    const p = await payUtility(t.db, {
      cardAccountId: card,
      amount: 3000,
      utility: "electricity",
      reference: "elec-1",
      details: { room: "3-101" },
    });
    assert.equal(p.balanceAfter, 2000);
    assert.equal(
      (await payUtility(t.db, {
        cardAccountId: card,
        amount: 3000,
        utility: "electricity",
        reference: "elec-1",
        details: {},
      })).duplicate,
      true,
    );
    const r = await refundUtility(t.db, {
      originalReference: "elec-1",
      reference: "elec-1-refund",
    });
    assert.equal(r.balanceAfter, 5000);
    const r2 = await refundUtility(t.db, {
      originalReference: "elec-1",
      reference: "elec-1-refund-again",
    });
    assert.equal(r2.duplicate, true);
    assert.equal(r2.transferId, r.transferId);
    assert.equal((await getBalance(t.db, card)).balance, 5000);
    await assertBooksBalance(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("adjustments credit or debit, never below zero, idempotent", async () => {
  const t = await setup();
  try {
    const card = await t.card(100);
    await adjustBalance(t.db, {
      cardAccountId: card,
      amount: 250,
      reference: "adj1",
      reason: "补偿",
      staffId: null,
    });
    await adjustBalance(t.db, {
      cardAccountId: card,
      amount: 250,
      reference: "adj1",
      reason: "补偿",
      staffId: null,
    });
    await adjustBalance(t.db, {
      cardAccountId: card,
      amount: -50,
      reference: "adj2",
      reason: "冲正",
      staffId: null,
    });
    await assert.rejects(
      adjustBalance(t.db, {
        cardAccountId: card,
        amount: -1000,
        reference: "adj3",
        reason: "x",
        staffId: null,
      }),
      InsufficientFundsError,
    );
    assert.equal((await getBalance(t.db, card)).balance, 300);
    await assertBooksBalance(t.db);
  } finally {
    await t.h.close();
  }
});

Deno.test("the verifier detects a tampered balance and a missing transfer", async () => {
  const t = await setup();
  try {
    const card = await t.card(1000);
    await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 100,
      reference: "v1",
    });
    await assertBooksBalance(t.db);
    await sql`update ledger_accounts set balance = balance + 1 where card_account_id = ${card}`
      .execute(t.db);
    const report = await verifyLedger(t.db);
    assert.equal(report.ok, false);
    assert.match(
      report.problems.join("\n"),
      new RegExp(`card account ${card}: stored balance 901`),
    );
    await sql`update ledger_accounts set balance = balance - 1 where card_account_id = ${card}`
      .execute(t.db);
    await assertBooksBalance(t.db);
    await sql`delete from ledger_transfers where reference = 'v1'`.execute(t.db);
    assert.equal((await verifyLedger(t.db)).ok, false);
  } finally {
    await t.h.close();
  }
});

Deno.test({
  name: "50 concurrent debits beyond the balance never take it below zero",
  ignore: !onPostgres,
  async fn() {
    const t = await setup({ poolSize: 50 });
    try {
      const card = await t.card(10_000);
      await updatePaySettings(t.db, card, {
        payLimit: 20_000,
        dailyLimit: 50_000,
        codeFrozen: false,
      });
      const results = await Promise.allSettled(
        Array.from(
          { length: 50 },
          (_, i) =>
            payFromCard(t.db, {
              cardAccountId: card,
              merchantId: t.merchant.id,
              amount: 300 + i,
              reference: `c${i}`,
            }),
        ),
      );
      const accepted = results.flatMap((r, i) => r.status === "fulfilled" ? [300 + i] : []);
      for (const r of results) {
        if (r.status === "rejected") {
          assert.ok(r.reason instanceof InsufficientFundsError, String(r.reason));
        }
      }
      const total = accepted.reduce((a, b) => a + b, 0);
      assert.ok(total <= 10_000);
      assert.ok(accepted.length >= 20);
      const b = await getBalance(t.db, card);
      assert.equal(b.balance, 10_000 - total);
      assert.ok(b.balance >= 0);
      await assertBooksBalance(t.db);
    } finally {
      await t.h.close();
    }
  },
});

Deno.test({
  name: "the same reference sent concurrently moves money once",
  ignore: !onPostgres,
  async fn() {
    const t = await setup({ poolSize: 20 });
    try {
      const card = await t.card(10_000);
      const results = await Promise.all(
        Array.from(
          { length: 20 },
          () =>
            payFromCard(t.db, {
              cardAccountId: card,
              merchantId: t.merchant.id,
              amount: 100,
              reference: "same",
            }),
        ),
      );
      assert.equal(results.filter((r) => !r.duplicate).length, 1);
      assert.equal(new Set(results.map((r) => r.transferId)).size, 1);
      assert.equal((await getBalance(t.db, card)).balance, 9_900);
      await assertBooksBalance(t.db);
    } finally {
      await t.h.close();
    }
  },
});

Deno.test({
  name: "a reversal racing its original: either the original is refused or it is reversed",
  ignore: !onPostgres,
  async fn() {
    const t = await setup({ poolSize: 20 });
    try {
      const card = await t.card(10_000);
      for (let i = 0; i < 10; i++) {
        const [pay, rev] = await Promise.allSettled([
          payFromCard(t.db, {
            cardAccountId: card,
            merchantId: t.merchant.id,
            amount: 100,
            reference: `race${i}`,
          }),
          reverseByReference(t.db, { originalReference: `race${i}`, reference: `race${i}-rev` }),
        ]);
        assert.equal(rev.status, "fulfilled");
        if (pay.status === "rejected") {
          assert.ok(pay.reason instanceof PaymentReversedError);
          assert.equal(rev.value.status, "tombstoned");
        } else {
          assert.equal(rev.value.status, "reversed");
        }
      }
      assert.equal((await getBalance(t.db, card)).balance, 10_000);
      await assertBooksBalance(t.db);
    } finally {
      await t.h.close();
    }
  },
});

Deno.test("a top-up is credited once per reference; a different request under it is refused", async () => {
  const t = await setup();
  try {
    const card = await t.card(0);
    const a = await creditTopUp(t.db, {
      cardAccountId: card,
      amount: 5000,
      method: "wechat",
      reference: "WX1",
    });
    const b = await creditTopUp(t.db, {
      cardAccountId: card,
      amount: 5000,
      method: "wechat",
      reference: "WX1",
    });
    assert.equal(b.duplicate, true);
    assert.equal(b.transferId, a.transferId);
    await assert.rejects(
      creditTopUp(t.db, { cardAccountId: card, amount: 6000, method: "wechat", reference: "WX1" }),
      ReferenceConflictError,
    );
    await assert.rejects(
      creditTopUp(t.db, { cardAccountId: card, amount: 1, method: "Bad Method", reference: "WX2" }),
      InvalidAmountError,
    );
    await assert.rejects(
      creditTopUp(t.db, { cardAccountId: 987654, amount: 1, method: "wechat", reference: "WX3" }),
      UnknownCardAccountError,
    );
    await assert.rejects(
      creditTopUp(t.db, { cardAccountId: card, amount: 1, method: "wechat", reference: "" }),
      ReferenceConflictError,
    );
    assert.equal((await getBalance(t.db, card)).balance, 5000);
    const report = await verifyLedger(t.db);
    assert.equal(report.ok, true);
    assert.equal(report.totals.externalIn, 5000);
  } finally {
    await t.h.close();
  }
});

Deno.test("a card account with no money has a zero balance", async () => {
  const h = await createTestDatabase();
  try {
    assert.deepEqual(await getBalance(h.db, 424242), { balance: 0, held: 0, available: 0 });
  } finally {
    await h.close();
  }
});

Deno.test({
  name:
    "the debit statement is prepared once per shape: other cards, amounts and references add no text",
  ignore: !onPostgres,
  fn: async () => {
    const t = await setup();
    try {
      const round = async (i: number) => {
        const card = await t.card(10_000);
        await payFromCard(t.db, {
          cardAccountId: card,
          merchantId: t.merchant.id,
          amount: 100 + i,
          reference: `prep-pay-${i}`,
          terminalId: i,
          details: { i },
        });
        await payUtility(t.db, {
          cardAccountId: card,
          amount: 200 + i,
          utility: i % 2 ? "water" : "electricity",
          reference: `prep-util-${i}`,
          details: { room: `3-${i}` },
        });
        await adjustBalance(t.db, {
          cardAccountId: card,
          amount: -(50 + i),
          reference: `prep-adj-${i}`,
          reason: `调账 ${i}`,
          staffId: null,
        });
      };
      await round(1);
      await round(2);
      // A shape each (the payment's, the utility's, the adjustment's), prepared.
      const debits = () => preparedTexts().filter((t) => t.includes("select 1 as ord"));
      assert.ok(debits().length >= 3);
      const shapes = preparedTexts().length;
      for (let i = 3; i < 8; i++) await round(i);
      assert.equal(preparedTexts().length, shapes);
      await assertBooksBalance(t.db);
    } finally {
      await t.h.close();
    }
  },
});
