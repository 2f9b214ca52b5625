import assert from "node:assert/strict";
import { fileURLToPath as fromFileUrl } from "node:url";
import { MAC_SIZE, type Message } from "./messages.ts";
import { parseBody, Parser, type RawFrame } from "./parser.ts";
import { computeMac, encodeFrame, encodeUnsealedFrame } from "./serializer.ts";

const KEY = Uint8Array.from({ length: 32 }, (_, i) => i);

interface Vector {
  name: string;
  terminalId: number;
  sequence: number;
  timestamp: number;
  sealed: boolean;
  message: Message;
  bytes: Uint8Array;
}

async function vectors(): Promise<Vector[]> {
  const text = await Deno.readTextFile(fromFileUrl(new URL("./PROTOCOL.md", import.meta.url)));
  const out: Vector[] = [];
  const re = /#### (.+)\n\n```vector\n(\{.*\})\n([0-9a-f \n]+)```/g;
  for (const m of text.matchAll(re)) {
    const meta = JSON.parse(m[2]);
    const hex = m[3].replace(/\s+/g, "");
    const bytes = new Uint8Array(hex.length / 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
    out.push({ name: m[1], ...meta, bytes });
  }
  return out;
}

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
    ]
  ) {
    assert.ok(codes.has(code as Message["code"]), `no vector for 0x${code.toString(16)}`);
  }
});

Deno.test("every PROTOCOL.md vector decodes to its message and encodes to its bytes", async () => {
  const all = await vectors();
  assert.ok(all.length >= 22);
  for (const v of all) {
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
