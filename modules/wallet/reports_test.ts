import assert from "node:assert/strict";
import { setup } from "./_test_support.ts";
import {
  dailyMerchantTotals,
  listTransfers,
  payFromCard,
  refundTransfer,
  verifyLedger,
} from "./mod.ts";

Deno.test("finance sees payments with what was refunded, and daily totals per merchant and terminal", async () => {
  const t = await setup();
  try {
    const card = await t.card(10_000);
    const a = await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 700,
      reference: "a",
      terminalId: 1,
    });
    await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: 300,
      reference: "b",
      terminalId: 2,
    });
    await refundTransfer(t.db, {
      transferId: a.transferId,
      amount: 200,
      reference: "ra",
      reason: "多扣",
      staffId: null,
    });
    const [view] = await listTransfers(t.db, { id: a.transferId });
    assert.equal(view.amount, 700);
    assert.equal(view.returned, 200);
    assert.equal(view.merchantName, "第一食堂");
    assert.equal(
      (await listTransfers(t.db, { cardAccountId: card, kinds: ["purchase"] })).length,
      2,
    );
    const rows = await dailyMerchantTotals(t.db, {
      from: new Date(Date.now() - 86400_000),
      to: new Date(Date.now() + 60_000),
    });
    const byTerminal = Object.fromEntries(rows.map((r) => [r.terminalId, r]));
    assert.equal(byTerminal[1].count, 1);
    assert.equal(byTerminal[1].amount, 700);
    assert.equal(byTerminal[1].returned, 200);
    assert.equal(byTerminal[2].amount, 300);
    assert.match(rows[0].day, /^\d{4}-\d{2}-\d{2}$/);
    assert.equal((await verifyLedger(t.db)).ok, true);
  } finally {
    await t.h.close();
  }
});
