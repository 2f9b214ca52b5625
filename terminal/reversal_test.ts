/**
 * Reversal (PROTOCOL.md §4.9) and what a retry says after one (§3): the money comes back once,
 * and the reply says what this Reversal gave back.
 */
import assert from "node:assert/strict";
import { type Message, MessageCode, Status } from "./messages.ts";
import { status, withWorld } from "./_test_support.ts";

function pay(chip: string, amount: number, password = ""): Message {
  return { code: MessageCode.CardPayment, chip, amount, password };
}

Deno.test("a reversal after the original gives the money back, once", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 5000 });
    const pos = await w.connect("canteen_pos");
    const paid = await pos.request(pay(card.chip, 1200));
    assert.equal(status(paid.message), Status.Ok);
    const rev = await pos.request({
      code: MessageCode.Reversal,
      originalSequence: paid.header.sequence,
    });
    assert.deepEqual(rev.message, {
      code: MessageCode.ReversalReply,
      status: Status.Ok,
      originalSequence: paid.header.sequence,
      amount: 1200,
      balance: 5000,
    });
    // Its retry (same number) is the same reply; a second Reversal under a new number gave
    // nothing back, and says so (§4.9).
    const retried = await pos.sendFrame(
      pos.frame({ code: MessageCode.Reversal, originalSequence: paid.header.sequence }, {
        sequence: rev.header.sequence,
      }).bytes,
      rev.header.sequence,
    );
    assert.deepEqual(retried.bytes, rev.bytes);
    const again = await pos.request({
      code: MessageCode.Reversal,
      originalSequence: paid.header.sequence,
    });
    assert.deepEqual(again.message, {
      code: MessageCode.ReversalReply,
      status: Status.Ok,
      originalSequence: paid.header.sequence,
      amount: 0,
      balance: 0,
    });
    assert.equal(await w.balance(card.cardAccountId), 5000);
  }));

Deno.test("a payment paid and then reversed, resent, gets its old Ok and moves no money", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 5000 });
    const pos = await w.connect("canteen_pos");
    const { bytes, sequence } = pos.frame(pay(card.chip, 1200));
    const paid = await pos.sendFrame(bytes, sequence);
    assert.equal(status(paid.message), Status.Ok);
    const rev = await pos.request({ code: MessageCode.Reversal, originalSequence: sequence });
    assert.equal((rev.message as { amount: number }).amount, 1200);
    // §3: a retry's reply is history. The ReversalReply is the final word on the number.
    const resent = await pos.sendFrame(bytes, sequence);
    assert.deepEqual(resent.bytes, paid.bytes);
    assert.equal(await w.balance(card.cardAccountId), 5000);
    const moves = await w.db.selectFrom("ledger_transfers").select(["kind", "amount"])
      .where("reference", "like", `T${w.terminals.canteen_pos.id}:%`).orderBy("id").execute();
    assert.deepEqual(moves.map((m) => [m.kind, Number(m.amount)]), [
      ["purchase", 1200],
      ["reversal", 1200],
    ]);
  }));

Deno.test("a shower start reversed twice releases the hold once; the second says 0", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 5000 });
    const shower = await w.connect("shower");
    const start = await shower.request({ code: MessageCode.ShowerStart, chip: card.chip });
    const authorised = (start.message as { authorised: number }).authorised;
    assert.ok(authorised > 0);
    const first = await shower.request({
      code: MessageCode.Reversal,
      originalSequence: start.header.sequence,
    });
    assert.deepEqual([status(first.message), (first.message as { amount: number }).amount], [
      Status.Ok,
      authorised,
    ]);
    const second = await shower.request({
      code: MessageCode.Reversal,
      originalSequence: start.header.sequence,
    });
    assert.deepEqual(second.message, {
      code: MessageCode.ReversalReply,
      status: Status.Ok,
      originalSequence: start.header.sequence,
      amount: 0,
      balance: 0,
    });
  }));

Deno.test("a reversal before the original makes the late original refused, charging nothing", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 5000 });
    const pos = await w.connect("canteen_pos", { sequence: 200 });
    const late = pos.frame(pay(card.chip, 700), { sequence: 100 });
    const rev = await pos.request({ code: MessageCode.Reversal, originalSequence: 100 });
    assert.equal(status(rev.message), Status.Ok);
    assert.equal((rev.message as { amount: number }).amount, 0);
    const r = await pos.sendFrame(late.bytes, 100);
    assert.equal(status(r.message), Status.Reversed);
    assert.equal(await w.balance(card.cardAccountId), 5000);
  }));
