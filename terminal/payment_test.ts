import assert from "node:assert/strict";
import { MessageCode, Status } from "./messages.ts";
import { setupWorld } from "./_test_support.ts";

Deno.test("a card payment is approved and the reply carries the balance after", async () => {
  const w = await setupWorld();
  try {
    const card = await w.card({ balance: 5000 });
    const pos = await w.connect("canteen_pos");
    const r = await pos.request({
      code: MessageCode.CardPayment,
      chip: card.chip,
      amount: 1250,
      password: "",
    });
    assert.deepEqual(r.message, {
      code: MessageCode.CardPaymentReply,
      status: Status.Ok,
      amount: 1250,
      balance: 3750,
      triesLeft: 0,
      retryAfter: 0,
    });
    assert.equal(await w.balance(card.cardAccountId), 3750);
  } finally {
    await w.close();
  }
});
