/**
 * A retry is answered with the recorded reply, byte for byte, after a server restart (PROTOCOL.md
 * §3), whichever way the request was first handled: in one statement (the card batch, a QR
 * payment, a shower start and end; their replies filled in by SQL where the serializer says) or
 * the ordinary way (a first payment at a merchant, a refusal, a password, a reversal, an upload).
 */
import assert from "node:assert/strict";
import { issuePaymentCode } from "../modules/wallet/mod.ts";
import { type Message, MessageCode, Status } from "./messages.ts";
import { setupWorld } from "./_test_support.ts";
import type { Received, TerminalClient } from "./sim/client.ts";

Deno.test("every recorded reply, one statement or ordinary, comes back byte for byte after a restart", async () => {
  const first = await setupWorld();
  const card = await first.card({ balance: 50_000 });
  const sent: Array<{ kind: "canteen_pos" | "shower"; bytes: Uint8Array; reply: Received }> = [];
  const readers = {
    canteen_pos: await first.connect("canteen_pos"),
    shower: await first.connect("shower"),
  };
  const send = async (kind: "canteen_pos" | "shower", m: Message) => {
    const { bytes, sequence } = readers[kind].frame(m);
    const reply = await readers[kind].sendFrame(bytes, sequence);
    sent.push({ kind, bytes, reply });
    return reply;
  };
  const pay = (amount: number, password = "", chip = card.chip): Message => ({
    code: MessageCode.CardPayment,
    chip,
    amount,
    password,
  });
  const now = Math.floor(Date.now() / 1000);
  let second: Awaited<ReturnType<typeof setupWorld>> | null = null;
  try {
    await send("canteen_pos", pay(1200)); // the merchant's first: ordinary
    await send("canteen_pos", pay(800)); // the card batch
    await send("canteen_pos", pay(3000, card.password)); // a password: ordinary
    await send("canteen_pos", pay(100, "", "NOSUCHCHIP")); // refused
    for (let i = 0; i < 2; i++) { // the first code ordinary, the second in one statement
      const { code } = await issuePaymentCode(first.db, card.cardAccountId);
      await send("canteen_pos", { code: MessageCode.QrPayment, paymentCode: code, amount: 300 });
    }
    const paid = sent[1].reply.header.sequence;
    await send("canteen_pos", { code: MessageCode.Reversal, originalSequence: paid });
    await send("canteen_pos", {
      code: MessageCode.OfflineUploadItemized,
      records: [
        { offlineSequence: 1, occurredAt: now - 60, chip: card.chip, amount: 500 },
        { offlineSequence: 2, occurredAt: now - 30, chip: card.chip, amount: 5000 },
      ],
    });
    for (let i = 0; i < 2; i++) { // the first shower ordinary, the second in one statement
      const start = await send("shower", { code: MessageCode.ShowerStart, chip: card.chip });
      const holdId = (start.message as { holdId: number }).holdId;
      await send("shower", { code: MessageCode.ShowerEnd, holdId, units: 40 });
    }
    assert.deepEqual(
      sent.map((s) => (s.reply.message as { status: number }).status),
      [0, 0, 0, Status.UnknownChip, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    const balance = await first.balance(card.cardAccountId);
    // The server stops; the database stays.
    for (const reader of Object.values(readers)) await reader.close();
    await first.server.close();

    second = await setupWorld({}, { h: first.h, terminals: first.terminals });
    const again: Record<string, TerminalClient> = {
      canteen_pos: await second.connect("canteen_pos"),
      shower: await second.connect("shower"),
    };
    for (const s of sent) {
      const retried = await again[s.kind].sendFrame(s.bytes, s.reply.header.sequence);
      assert.deepEqual(retried.bytes, s.reply.bytes, `sequence ${s.reply.header.sequence}`);
    }
    assert.equal(await second.balance(card.cardAccountId), balance);
  } finally {
    await second?.close();
    await first.server.close();
    await first.h.close();
  }
});
