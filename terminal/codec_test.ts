import assert from "node:assert/strict";
import fc from "fast-check";
import {
  FrameError,
  HEADER_SIZE,
  MAC_SIZE,
  MAX_BODY_SIZE,
  type Message,
  MessageCode,
  messageName,
  Status,
} from "./messages.ts";
import { parseBody, Parser, type RawFrame } from "./parser.ts";
import { bodySlot, computeMac, encodeFrame, serializeBody } from "./serializer.ts";

const KEY = Uint8Array.from({ length: 32 }, (_, i) => i);
const HEADER = { terminalId: 10001, sequence: 7, timestamp: 1_764_000_000 };

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const i32 = fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u8 = fc.integer({ min: 0, max: 0xff });
const str = fc.string({ unit: "grapheme", maxLength: 16 }).filter((s) =>
  new TextEncoder().encode(s).length <= 64
);
const chip = fc.stringMatching(/^[0-9A-Z]{4,20}$/);
const chips = fc.array(chip, { maxLength: 20 });
const delta = fc.record({ version: u32, complete: fc.boolean(), added: chips, removed: chips });
const uint53 = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });

/** One arbitrary of every message type. */
const message: fc.Arbitrary<Message> = fc.oneof(
  fc.record({ code: fc.constant(0x01 as const), firmware: str }),
  fc.record({ code: fc.constant(0x02 as const), blocklistVersion: u32, offlineCount: u16 }),
  fc.record({ code: fc.constant(0x10 as const), chip, amount: u32, password: str }),
  fc.record({ code: fc.constant(0x11 as const), paymentCode: str, amount: u32 }),
  fc.record({ code: fc.constant(0x12 as const), chip }),
  fc.record({ code: fc.constant(0x20 as const), chip }),
  fc.record({ code: fc.constant(0x21 as const), holdId: uint53, units: u32 }),
  fc.record({ code: fc.constant(0x30 as const), originalSequence: u32 }),
  fc.record({ code: fc.constant(0x40 as const), fromVersion: u32 }),
  fc.record({
    code: fc.constant(0x50 as const),
    records: fc.array(
      fc.record({ offlineSequence: u32, occurredAt: u32, chip: str, amount: u32 }),
      { minLength: 1, maxLength: 64 },
    ),
  }),
  fc.record({ code: fc.constant(0x7f as const), status: u16, serverTime: u32 }),
  fc.record({
    code: fc.constant(0x81 as const),
    status: u16,
    serverTime: u32,
    merchantName: str,
    blocklistVersion: u32,
    offlinePaymentLimit: u32,
    offlineTotalLimit: u32,
    offlineMaxRecords: u16,
    passwordThreshold: u32,
    showerUnitPrice: u32,
    showerUnit: str,
    showerHoldAmount: u32,
    heartbeatSeconds: u16,
  }),
  fc.record({
    code: fc.constant(0x82 as const),
    status: u16,
    serverTime: u32,
    uploadOffline: fc.boolean(),
    blocklist: delta,
  }),
  fc.record({
    code: fc.constant(0x90 as const),
    status: u16,
    amount: u32,
    balance: i32,
    triesLeft: u8,
    retryAfter: u32,
  }),
  fc.record({ code: fc.constant(0x91 as const), status: u16, amount: u32, balance: i32 }),
  fc.record({
    code: fc.constant(0x92 as const),
    status: u16,
    balance: i32,
    available: i32,
    name: str,
  }),
  fc.record({
    code: fc.constant(0xa0 as const),
    status: u16,
    holdId: uint53,
    authorised: u32,
    balance: i32,
  }),
  fc.record({
    code: fc.constant(0xa1 as const),
    status: u16,
    charged: u32,
    released: u32,
    balance: i32,
  }),
  fc.record({
    code: fc.constant(0xb0 as const),
    status: u16,
    originalSequence: u32,
    amount: u32,
    balance: i32,
  }),
  fc.record({ code: fc.constant(0xc0 as const), status: u16, blocklist: delta }),
  fc.record({ code: fc.constant(0xc1 as const), fromVersion: u32, blocklist: delta }),
  fc.record({
    code: fc.constant(0xd0 as const),
    status: u16,
    ackedSequence: u32,
    applied: u8,
    duplicates: u8,
  }),
) as fc.Arbitrary<Message>;

/** fast-check builds null-prototype records; compare plain data. */
function plain(x: unknown): unknown {
  return JSON.parse(JSON.stringify(x));
}

function collect(parser: Parser, chunks: Uint8Array[]): RawFrame[] {
  const out: RawFrame[] = [];
  for (const c of chunks) parser.parse(c, (f) => out.push(f));
  return out;
}

Deno.test("every message survives encode then decode unchanged (property)", () => {
  fc.assert(
    fc.property(message, (m) => {
      const body = serializeBody(m);
      assert.deepEqual(parseBody(m.code, body), plain(m));
      const frame = encodeFrame(KEY, HEADER, m);
      const [f] = collect(new Parser(), [frame]);
      assert.equal(f.type, m.code);
      assert.deepEqual(parseBody(f.type, f.body), plain(m));
      assert.deepEqual(computeMac(KEY, f.signed), f.mac);
    }),
    { numRuns: 2000 },
  );
});

Deno.test("a frame split at every byte offset parses to the same frame", () => {
  const m: Message = {
    code: MessageCode.CardPayment,
    chip: "A1B2C3D4",
    amount: 1250,
    password: "123456",
  };
  const frame = encodeFrame(KEY, HEADER, m);
  for (let i = 0; i <= frame.length; i++) {
    const parser = new Parser();
    const frames = collect(parser, [frame.slice(0, i), frame.slice(i)]);
    assert.equal(frames.length, 1, `split at ${i}`);
    assert.deepEqual(parseBody(frames[0].type, frames[0].body), m);
    assert.equal(parser.buffered, 0);
  }
  // One byte at a time.
  const parser = new Parser();
  const frames = collect(parser, Array.from(frame, (b) => Uint8Array.of(b)));
  assert.equal(frames.length, 1);
});

Deno.test("coalesced frames split anywhere come out in order", () => {
  const ms: Message[] = [
    { code: MessageCode.Heartbeat, blocklistVersion: 3, offlineCount: 0 },
    { code: MessageCode.BalanceInquiry, chip: "CHIP0001" },
    { code: MessageCode.Reversal, originalSequence: 41 },
  ];
  const all = new Uint8Array(ms.reduce((n, m) => n + encodeFrame(KEY, HEADER, m).length, 0));
  let at = 0;
  for (const m of ms) {
    const f = encodeFrame(KEY, HEADER, m);
    all.set(f, at);
    at += f.length;
  }
  for (let i = 0; i <= all.length; i++) {
    for (const j of [i, Math.min(all.length, i + 1), Math.min(all.length, i + 17)]) {
      const frames = collect(new Parser(), [all.slice(0, i), all.slice(i, j), all.slice(j)]);
      assert.deepEqual(frames.map((f) => parseBody(f.type, f.body)), ms, `split at ${i}/${j}`);
    }
  }
});

Deno.test("the parser copies its tail, so the caller may reuse its read buffer", () => {
  const frame = encodeFrame(KEY, HEADER, { code: MessageCode.BalanceInquiry, chip: "CHIP0001" });
  const buffer = new Uint8Array(64);
  const parser = new Parser();
  const out: RawFrame[] = [];
  buffer.set(frame.subarray(0, 10));
  parser.parse(buffer.subarray(0, 10), (f) => out.push(f));
  buffer.fill(0xee);
  buffer.set(frame.subarray(10));
  parser.parse(buffer.subarray(0, frame.length - 10), (f) => out.push(f));
  assert.equal(out.length, 1);
  assert.deepEqual(parseBody(out[0].type, out[0].body), {
    code: MessageCode.BalanceInquiry,
    chip: "CHIP0001",
  });
});

Deno.test("bad magic, an unknown version and an oversize length are refused as unframeable", () => {
  const frame = encodeFrame(KEY, HEADER, { code: MessageCode.BlocklistSync, fromVersion: 0 });
  const badMagic = frame.slice();
  badMagic[0] = 0x47;
  assert.throws(
    () => collect(new Parser(), [badMagic]),
    (e: unknown) => e instanceof FrameError && e.close,
  );
  assert.throws(
    () => collect(new Parser(), [Uint8Array.of(0x59, 0x00)]),
    (e: unknown) => e instanceof FrameError && e.close,
  );
  const badVersion = frame.slice();
  badVersion[2] = 0x02;
  assert.throws(
    () => collect(new Parser(), [badVersion.subarray(0, 3)]),
    /unsupported version 0x02/,
  );
  const oversize = frame.slice(0, HEADER_SIZE);
  new DataView(oversize.buffer).setUint16(16, MAX_BODY_SIZE + 1);
  assert.throws(() => collect(new Parser(), [oversize]), /limit 4096/);
  // A maximal length is accepted and waited for, never more than one frame held.
  const max = frame.slice(0, HEADER_SIZE);
  new DataView(max.buffer).setUint16(16, MAX_BODY_SIZE);
  const p = new Parser();
  assert.equal(collect(p, [max, new Uint8Array(MAX_BODY_SIZE + MAC_SIZE - 1)]).length, 0);
  assert.equal(p.buffered, HEADER_SIZE + MAX_BODY_SIZE + MAC_SIZE - 1);
  assert.equal(collect(p, [new Uint8Array(1)]).length, 1);
});

Deno.test("an unknown message type fails with the code in hex", () => {
  assert.throws(
    () => parseBody(0x4e, new Uint8Array(0)),
    (e: unknown) =>
      e instanceof FrameError && e.status === Status.UnknownType && /0x4e/.test(e.message),
  );
});

Deno.test("truncated, padded and non-UTF-8 bodies are malformed, never misread", () => {
  const body = serializeBody({
    code: MessageCode.CardPayment,
    chip: "CHIP0001",
    amount: 100,
    password: "",
  });
  for (let i = 0; i < body.length; i++) {
    assert.throws(
      () => parseBody(MessageCode.CardPayment, body.subarray(0, i)),
      (e: unknown) => e instanceof FrameError && e.status === Status.MalformedBody,
    );
  }
  const padded = new Uint8Array(body.length + 1);
  padded.set(body);
  assert.throws(() => parseBody(MessageCode.CardPayment, padded), /trailing/);
  assert.throws(
    () => parseBody(MessageCode.BalanceInquiry, Uint8Array.of(2, 0xc3, 0x28)),
    /not UTF-8/,
  );
  // A chip number is 4–20 of 0-9A-Z: a NUL, lower case, a space, too short or too long is
  // malformed in every request that carries one, not a lookup that fails later.
  const ascii = (s: string) => new TextEncoder().encode(s);
  for (
    const bad of ["A1B2\0C3D4", "a1b2c3d4", "A1B2 C3D4", "A1B", "A".repeat(21), "张三1234", ""]
  ) {
    const chipField = Uint8Array.of(ascii(bad).length, ...ascii(bad));
    for (
      const [code, rest] of [
        [MessageCode.CardPayment, Uint8Array.of(0, 0, 0, 100, 0)],
        [MessageCode.BalanceInquiry, new Uint8Array(0)],
        [MessageCode.ShowerStart, new Uint8Array(0)],
      ] as const
    ) {
      assert.throws(
        () => parseBody(code, Uint8Array.of(...chipField, ...rest)),
        (e: unknown) =>
          e instanceof FrameError && e.status === Status.MalformedBody &&
          /chip number/.test(e.message),
        `${JSON.stringify(bad)} in 0x${code.toString(16)}`,
      );
    }
  }
  assert.equal(
    (parseBody(MessageCode.BalanceInquiry, Uint8Array.of(4, ...ascii("09AZ"))) as { chip: string })
      .chip,
    "09AZ",
  );
  assert.throws(
    () => parseBody(MessageCode.BalanceInquiry, Uint8Array.of(65, ...new Uint8Array(65))),
    /limit 64/,
  );
  assert.throws(() => parseBody(MessageCode.OfflineUpload, Uint8Array.of(0)), /1 to 64/);
});

Deno.test("fuzz: mutated valid frames and random bytes only ever throw FrameError", () => {
  fc.assert(
    fc.property(
      message,
      fc.array(fc.tuple(fc.nat(), u8), { minLength: 1, maxLength: 8 }),
      fc.array(fc.nat({ max: 64 }), { maxLength: 4 }),
      (m, flips, cuts) => {
        const pristine = encodeFrame(KEY, HEADER, m);
        const frame = pristine.slice();
        for (const [at, value] of flips) frame[at % frame.length] = value;
        // Judged on the frame as sent: a later flip of the same byte may put it back.
        const changed = frame.some((b, i) => b !== pristine[i]);
        const chunks: Uint8Array[] = [];
        let from = 0;
        for (const c of cuts) {
          const to = Math.min(frame.length, from + c);
          chunks.push(frame.slice(from, to));
          from = to;
        }
        chunks.push(frame.slice(from));
        const parser = new Parser();
        try {
          for (const f of collect(parser, chunks)) {
            try {
              parseBody(f.type, f.body);
            } catch (err) {
              if (!(err instanceof FrameError)) throw err;
            }
            // A flipped byte anywhere in header or body breaks the MAC.
            if (changed) assert.notDeepEqual(computeMac(KEY, f.signed), f.mac);
          }
        } catch (err) {
          if (!(err instanceof FrameError)) throw err;
        }
        assert.ok(parser.buffered <= HEADER_SIZE + MAX_BODY_SIZE + MAC_SIZE);
      },
    ),
    { numRuns: 3000 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 5000 }), (bytes) => {
      const parser = new Parser();
      try {
        collect(parser, [bytes]);
      } catch (err) {
        if (!(err instanceof FrameError)) throw err;
      }
    }),
    { numRuns: 2000 },
  );
});

Deno.test("bodySlot says where the serializer writes a number field: writing a value there is serializing it", () => {
  // Replies whose numbers SQL fills in, and one with a string before a number.
  const messages: Message[] = [
    {
      code: MessageCode.CardPaymentReply,
      status: 0,
      amount: 0,
      balance: 0,
      triesLeft: 0,
      retryAfter: 0,
    },
    { code: MessageCode.QrPaymentReply, status: 0, amount: 0, balance: 0 },
    { code: MessageCode.ShowerStartReply, status: 0, holdId: 0, authorised: 0, balance: 0 },
    { code: MessageCode.ShowerEndReply, status: 0, charged: 0, released: 0, balance: 0 },
    { code: MessageCode.ReversalReply, status: 0, originalSequence: 0, amount: 0, balance: 0 },
    {
      code: MessageCode.SignOnReply,
      status: 0,
      serverTime: 0,
      merchantName: "第一食堂",
      blocklistVersion: 0,
      offlinePaymentLimit: 0,
      offlineTotalLimit: 0,
      offlineMaxRecords: 0,
      passwordThreshold: 0,
      showerUnitPrice: 0,
      showerUnit: "liter",
      showerHoldAmount: 0,
      heartbeatSeconds: 0,
    },
  ];
  const numbers = (m: Message) =>
    Object.keys(m).filter((k) =>
      !["code", "status", "triesLeft", "offlineMaxRecords", "heartbeatSeconds"].includes(k) &&
      typeof (m as unknown as Record<string, unknown>)[k] === "number"
    );
  let checked = 0;
  for (const m of messages) {
    for (const field of numbers(m)) {
      const slot = bodySlot(m, field);
      const signed = field === "balance";
      const value = slot.bytes === 8 ? 0x1f_0102_0304_0506 : signed ? -123_456 : 0xfedc_ba98;
      const patched = serializeBody(m);
      const view = new DataView(patched.buffer, patched.byteOffset);
      if (slot.bytes === 8) {
        view.setUint32(slot.offset, Math.floor(value / 0x1_0000_0000));
        view.setUint32(slot.offset + 4, value >>> 0);
      } else if (signed) view.setInt32(slot.offset, value);
      else view.setUint32(slot.offset, value);
      assert.deepEqual(
        patched,
        serializeBody({ ...m, [field]: value } as Message),
        `${messageName(m.code)}.${field}`,
      );
      checked++;
    }
  }
  assert.equal(checked, 21);
  assert.throws(
    () => bodySlot(messages[5], "merchantName"),
    /Cannot find number field merchantName/,
  );
});
