import assert from "node:assert/strict";
import { MAC_SIZE, type Message, MessageCode, Status } from "./messages.ts";
import { parseBody, Parser, type RawFrame } from "./parser.ts";
import { computeMac, encodeFrame, encodeUnsealedFrame } from "./serializer.ts";
import { allowedFor } from "./kinds.ts";
import { vectorKeys as keys, vectorKinds as kinds, vectors } from "./_vectors.ts";

Deno.test("PROTOCOL.md has a test vector for every message type", async () => {
  const codes = new Set((await vectors()).map((v) => v.message.code));
  for (
    const code of [
      0x01,
      0x02,
      0x10,
      0x11,
      0x12,
      0x20,
      0x21,
      0x30,
      0x40,
      0x50,
      0x51,
      0x52,
      0x7f,
      0x81,
      0x82,
      0x90,
      0x91,
      0x92,
      0xa0,
      0xa1,
      0xb0,
      0xc0,
      0xc1,
      0xd0,
      0xd1,
      0xd2,
    ]
  ) {
    assert.ok(codes.has(code as Message["code"]), `no vector for 0x${code.toString(16)}`);
  }
});

Deno.test("every PROTOCOL.md vector decodes to its message and encodes to its bytes", async () => {
  const all = await vectors();
  const keyOf = await keys();
  assert.deepEqual([...keyOf.keys()], [10001, 10004]);
  assert.ok(all.length >= 40);
  for (const v of all) {
    const KEY = keyOf.get(v.terminalId);
    assert.ok(KEY, `${v.name}: no key stated for terminal ${v.terminalId}`);
    const frames: RawFrame[] = [];
    new Parser().parse(v.bytes, (f) => frames.push(f));
    assert.equal(frames.length, 1, v.name);
    const f = frames[0];
    assert.equal(f.type, v.message.code, v.name);
    assert.deepEqual([f.terminalId, f.sequence, f.timestamp], [
      v.terminalId,
      v.sequence,
      v.timestamp,
    ], v.name);
    assert.deepEqual(parseBody(f.type, f.body), v.message, v.name);
    if (v.sealed) assert.deepEqual(computeMac(KEY, f.signed), f.mac, `${v.name}: MAC`);
    else assert.deepEqual(f.mac, new Uint8Array(MAC_SIZE), `${v.name}: zero MAC`);
    const header = { terminalId: v.terminalId, sequence: v.sequence, timestamp: v.timestamp };
    const encoded = v.sealed
      ? encodeFrame(KEY, header, v.message)
      : encodeUnsealedFrame(header, v.message);
    assert.deepEqual(encoded, v.bytes, `${v.name}: bytes`);
  }
});

Deno.test("PROTOCOL.md has vectors of the Errors a reader must tell apart and a refusal of each money message", async () => {
  const all = await vectors();
  const has = (code: number, status?: (s: number) => boolean) =>
    all.some((v) =>
      v.message.code === code &&
      (!status || status((v.message as { status: number }).status))
    );
  for (
    const s of [
      Status.WrongTerminal,
      Status.TerminalDisabled,
      Status.StaleTimestamp,
      Status.BadMac,
      Status.SequenceReused,
    ]
  ) {
    assert.ok(has(MessageCode.Error, (x) => x === s), `no Error vector for 0x${s.toString(16)}`);
  }
  for (
    const code of [
      MessageCode.CardPaymentReply,
      MessageCode.QrPaymentReply,
      MessageCode.ShowerStartReply,
      MessageCode.ShowerEndReply,
      MessageCode.ReversalReply,
    ]
  ) {
    assert.ok(has(code, (x) => x !== Status.Ok), `no refusal vector for 0x${code.toString(16)}`);
  }
  assert.ok(has(MessageCode.BalanceInquiryReply, (x) => x === Status.RateLimited));
});

Deno.test("PROTOCOL.md vectors tell one story: each request comes from a terminal of a kind that may send it", async () => {
  const all = await vectors();
  const kindOf = await kinds();
  assert.deepEqual(Object.fromEntries(kindOf), { 10001: "canteen_pos", 10004: "shower" });
  for (const v of all) {
    const kind = kindOf.get(v.terminalId);
    assert.ok(kind, `${v.name}: terminal ${v.terminalId} is not one of §6's`);
    if (v.message.code < 0x7f) {
      assert.ok(allowedFor(kind, v.message.code), `${v.name}: ${kind} may not send it`);
    }
  }
  // A reply answers a request of the same terminal and sequence number, with its timestamp.
  for (const v of all.filter((v) => v.message.code > 0x80 && v.sequence !== 0)) {
    const request = all.find((r) =>
      r.message.code === v.message.code - 0x80 && r.terminalId === v.terminalId &&
      r.sequence === v.sequence && r.timestamp === v.timestamp
    );
    assert.ok(request, `${v.name}: no request vector it answers`);
  }
  // The retry differs from its first request only in its timestamp (and so its MAC).
  const retry = all.find((v) => v.name.startsWith("CardPayment (retry"))!;
  const first = all.find((v) =>
    v.message.code === MessageCode.CardPayment && v.sequence === retry.sequence && v !== retry
  )!;
  assert.deepEqual(retry.message, first.message);
  assert.notEqual(retry.timestamp, first.timestamp);
  assert.deepEqual(retry.bytes.subarray(0, 12), first.bytes.subarray(0, 12));
  assert.deepEqual(retry.bytes.subarray(16, -MAC_SIZE), first.bytes.subarray(16, -MAC_SIZE));
});
