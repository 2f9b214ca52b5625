/**
 * Amounts and chip lookups (PROTOCOL.md §4.3, §4.5): what is checked before a chip is looked up,
 * and the terminal's allowance of answers that tell whether a chip exists.
 */
import assert from "node:assert/strict";
import { type Message, MessageCode, Status } from "./messages.ts";
import { LookupAllowance } from "./limits.ts";
import type { TerminalClient } from "./sim/client.ts";
import { status, withWorld } from "./_test_support.ts";

function pay(chip: string, amount: number, password = ""): Message {
  return { code: MessageCode.CardPayment, chip, amount, password };
}

Deno.test("amounts: InvalidAmount comes before the chip and the password; 100 000 000 fen passes the amount check", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 5000 });
    const pos = await w.connect("canteen_pos");
    const answer = async (m: Message) => {
      const r = (await pos.request(m)).message as { status: number; amount: number };
      return [r.status, r.amount];
    };
    assert.deepEqual(await answer(pay(card.chip, 100_000_001)), [
      Status.InvalidAmount,
      100_000_001,
    ]);
    assert.deepEqual(await answer(pay("NOSUCHCHIP", 100_000_001)), [
      Status.InvalidAmount,
      100_000_001,
    ]);
    assert.deepEqual(await answer(pay("NOSUCHCHIP", 0)), [Status.InvalidAmount, 0]);
    assert.deepEqual(await answer(pay(card.chip, 0xffff_ffff, card.password)), [
      Status.InvalidAmount,
      0xffff_ffff,
    ]);
    assert.deepEqual(await answer(pay(card.chip, 100_000_000)), [
      Status.PasswordRequired,
      100_000_000,
    ]);
    // With the password it reaches the money: too little on the card, not InvalidAmount.
    const r = (await pos.request(pay(card.chip, 100_000_000, card.password))).message;
    assert.notEqual(status(r), Status.InvalidAmount);
    assert.equal(await w.balance(card.cardAccountId), 5000);
    const qr = await pos.request({
      code: MessageCode.QrPayment,
      paymentCode: "880000000000000000",
      amount: 100_000_001,
    });
    assert.equal(status(qr.message), Status.InvalidAmount);
  }));

Deno.test("card refusals cannot walk chip numbers: PasswordRequired before the lookup, then RateLimited whatever the chip", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 100 });
    const pos = await w.connect("canteen_pos");
    const shower = await w.connect("shower");
    const answer = async (reader: TerminalClient, m: Message) => {
      const r = (await reader.request(m)).message as { code: number; status: number };
      return r.status;
    };
    // Above the threshold without a password: the same answer for a known and an unknown chip.
    assert.equal(await answer(pos, pay(card.chip, 3000)), Status.PasswordRequired);
    assert.equal(await answer(pos, pay("NOSUCHCHIP", 3000)), Status.PasswordRequired);
    // Refusals after a lookup draw on the terminal's allowance (3 here), then every payment is
    // RateLimited before any lookup: a known chip, an unknown one, one that would pay.
    assert.equal(await answer(pos, pay("NOSUCHCHIP", 100)), Status.UnknownChip);
    assert.equal(await answer(pos, pay(card.chip, 500)), Status.InsufficientBalance);
    assert.equal(
      await answer(pos, { code: MessageCode.BalanceInquiry, chip: "NOSUCH02" }),
      Status.UnknownChip,
    );
    for (const m of [pay("NOSUCHCHIP", 100), pay(card.chip, 500), pay(card.chip, 50)]) {
      const r = await pos.request(m);
      assert.deepEqual(r.message, {
        code: MessageCode.CardPaymentReply,
        status: Status.RateLimited,
        amount: (m as { amount: number }).amount,
        balance: 0,
        triesLeft: 0,
        retryAfter: 0,
      });
    }
    assert.equal(
      await answer(pos, { code: MessageCode.BalanceInquiry, chip: card.chip }),
      Status.RateLimited,
    );
    assert.equal(await w.balance(card.cardAccountId), 100);
    // Another terminal has its own allowance; a shower start draws on it the same way.
    assert.equal(
      await answer(shower, { code: MessageCode.ShowerStart, chip: "NOSUCH01" }),
      Status.UnknownChip,
    );
    assert.equal(
      await answer(shower, { code: MessageCode.ShowerStart, chip: "NOSUCH03" }),
      Status.UnknownChip,
    );
    assert.equal(
      await answer(shower, { code: MessageCode.ShowerStart, chip: "NOSUCH04" }),
      Status.UnknownChip,
    );
    const held = await shower.request({ code: MessageCode.ShowerStart, chip: card.chip });
    assert.deepEqual(held.message, {
      code: MessageCode.ShowerStartReply,
      status: Status.RateLimited,
      holdId: 0,
      authorised: 0,
      balance: 0,
    });
  }, { limits: { lookupsPerMinute: 3 } }));

Deno.test("balance inquiries are rate-limited per terminal with RateLimited and an empty body", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 700 });
    const pos = await w.connect("canteen_pos");
    const ask = (reader: TerminalClient, chip: string) =>
      reader.request({ code: MessageCode.BalanceInquiry, chip });
    for (let i = 0; i < 10; i++) {
      const chip = i % 2 ? card.chip : `NOSUCH${i}0`;
      assert.notEqual(status((await ask(pos, chip)).message), Status.RateLimited, `inquiry ${i}`);
    }
    const limited = await ask(pos, card.chip);
    assert.deepEqual(limited.message, {
      code: MessageCode.BalanceInquiryReply,
      status: Status.RateLimited,
      balance: 0,
      available: 0,
      name: "",
    });
    // Until a lookup comes back, a payment at this terminal is RateLimited too, before any lookup
    // (§4.5); another terminal has its own allowance.
    const pay = { code: MessageCode.CardPayment, chip: card.chip, amount: 100, password: "" };
    assert.equal(status((await pos.request(pay as Message)).message), Status.RateLimited);
    assert.equal(await w.balance(card.cardAccountId), 700);
    const other = await w.connect("supermarket_pos");
    assert.equal(status((await ask(other, card.chip)).message), Status.Ok);
    assert.equal(status((await other.request(pay as Message)).message), Status.Ok);
  }));

Deno.test("the lookup allowance comes back at its rate, one every 60/n seconds", () => {
  let t = 0;
  const limiter = new LookupAllowance(10, () => t);
  for (let i = 0; i < 10; i++) assert.ok(limiter.has(1) && limiter.take(1));
  assert.equal(limiter.has(1), false);
  assert.equal(limiter.take(1), false);
  assert.ok(limiter.take(2));
  t += 5_999;
  assert.equal(limiter.take(1), false);
  t += 2;
  assert.ok(limiter.take(1));
  assert.equal(limiter.take(1), false);
  t += 600_000;
  for (let i = 0; i < 10; i++) assert.ok(limiter.take(1));
  assert.equal(limiter.take(1), false);
  assert.equal(new LookupAllowance(0).take(1), false);
  assert.equal(new LookupAllowance(0).has(1), false);
});
