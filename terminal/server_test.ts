import assert from "node:assert/strict";
import fc from "fast-check";
import { setTerminalStatus } from "../modules/merchant/mod.ts";
import { HEADER_SIZE, MAC_SIZE, MessageCode, Status } from "./messages.ts";
import { computeMac, encodeFrame } from "./serializer.ts";
import { status, withWorld } from "./_test_support.ts";
import { TerminalClient } from "./sim/client.ts";

/** Reads from a raw connection until it closes; returns every byte received. */
async function drain(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(4096);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
  } catch {
    // reset by the server
  }
  const out = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

Deno.test("a request split at every byte offset over TCP gets one reply each time", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 100_000 });
    const pos = await w.connect("canteen_pos");
    const { bytes } = pos.frame({ code: MessageCode.BalanceInquiry, chip: card.chip });
    for (let i = 1; i < bytes.length; i++) {
      const { bytes: f, sequence } = pos.frame({
        code: MessageCode.BalanceInquiry,
        chip: card.chip,
      });
      const reply = pos.expect(sequence);
      await pos.write(f.slice(0, i));
      await pos.write(f.slice(i));
      assert.equal(status((await reply).message), Status.Ok, `split at ${i}`);
    }
    // Three payments in one write come back in order, each once.
    const frames = [1, 2, 3].map(() =>
      pos.frame({ code: MessageCode.CardPayment, chip: card.chip, amount: 100, password: "" })
    );
    const replies = frames.map((f) => pos.expect(f.sequence));
    const all = new Uint8Array(frames.reduce((n, f) => n + f.bytes.length, 0));
    let at = 0;
    for (const f of frames) {
      all.set(f.bytes, at);
      at += f.bytes.length;
    }
    await pos.write(all);
    const got = await Promise.all(replies);
    assert.deepEqual(got.map((r) => (r.message as { balance: number }).balance), [
      99_900,
      99_800,
      99_700,
    ]);
  }, { limits: { lookupsPerMinute: 1000 } }));

Deno.test("a bad MAC, an unknown terminal and a stale timestamp are refused, logged, and move nothing", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 5000 });
    const t = w.terminals.canteen_pos;
    const pos = await w.connect("canteen_pos");
    const forged = pos.frame({
      code: MessageCode.CardPayment,
      chip: card.chip,
      amount: 100,
      password: "",
    });
    forged.bytes[forged.bytes.length - 1] ^= 0xff;
    const bad = await pos.sendFrame(forged.bytes, forged.sequence);
    assert.deepEqual([bad.message.code, status(bad.message), bad.authenticated], [
      MessageCode.Error,
      Status.BadMac,
      false,
    ]);
    const stale = await pos.request({
      code: MessageCode.CardPayment,
      chip: card.chip,
      amount: 100,
      password: "",
    }, {
      timestamp: Math.floor(Date.now() / 1000) - 3600,
    });
    assert.deepEqual([stale.message.code, status(stale.message), stale.authenticated], [
      MessageCode.Error,
      Status.StaleTimestamp,
      true,
    ]);
    // The Error carries server time so the reader can set its clock.
    assert.ok(
      Math.abs((stale.message as { serverTime: number }).serverTime - Date.now() / 1000) < 5,
    );
    const errors = await w.db.selectFrom("terminal_errors").select(["code"]).where(
      "terminal_id",
      "=",
      t.id,
    ).orderBy("id").execute();
    assert.deepEqual(errors.map((e) => e.code), ["BadMac", "StaleTimestamp"]);

    const stranger = await TerminalClient.connect({
      port: w.server.port,
      terminalId: 4_000_000,
      key: t.key,
    });
    const unknown = await stranger.request({
      code: MessageCode.Heartbeat,
      blocklistVersion: 0,
      offlineCount: 0,
    });
    assert.equal(status(unknown.message), Status.UnknownTerminal);
    await stranger.close();
    assert.equal(await w.balance(card.cardAccountId), 5000);
    const recorded = await w.db.selectFrom("terminal_requests").select("sequence").execute();
    assert.deepEqual(recorded, []);
  }));

Deno.test("three refused frames close the connection", () =>
  withWorld(async (w) => {
    const pos = await w.connect("canteen_pos");
    for (let i = 0; i < 3; i++) {
      const f = pos.frame({ code: MessageCode.Heartbeat, blocklistVersion: 0, offlineCount: 0 });
      f.bytes[20] ^= 1; // body byte: MAC no longer matches
      const r = await pos.sendFrame(f.bytes, f.sequence);
      assert.equal(status(r.message), Status.BadMac);
    }
    await pos.done;
    assert.equal(pos.closed, true);
  }));

Deno.test("a disabled terminal is refused until enabled again", () =>
  withWorld(async (w) => {
    const t = w.terminals.supermarket_pos;
    await setTerminalStatus(w.db, t.id, "disabled");
    const pos = await w.connect("supermarket_pos");
    const r = await pos.request({ code: MessageCode.SignOn, firmware: "x" });
    assert.equal(status(r.message), Status.TerminalDisabled);
    await setTerminalStatus(w.db, t.id, "active");
    const again = await w.connect("supermarket_pos");
    const ok = await again.request({ code: MessageCode.SignOn, firmware: "x" });
    assert.equal(status(ok.message), Status.Ok);
  }, { registryTtlMs: 0 }));

Deno.test("an unknown type and a malformed body are refused with their own status", () =>
  withWorld(async (w) => {
    const pos = await w.connect("canteen_pos");
    const known = pos.frame({ code: MessageCode.Heartbeat, blocklistVersion: 0, offlineCount: 0 });
    // Re-type the frame as 0x4e and re-seal it with the right key: only the type is wrong.
    const f = known.bytes.slice();
    f[3] = 0x4e;
    f.set(computeMac(pos.key, f.subarray(0, f.length - MAC_SIZE)), f.length - MAC_SIZE);
    const r = await pos.sendFrame(f, known.sequence);
    assert.equal(status(r.message), Status.UnknownType);
    const short = pos.frame({ code: MessageCode.BlocklistSync, fromVersion: 0 });
    const g = new Uint8Array(short.bytes.length - 1);
    g.set(short.bytes.subarray(0, HEADER_SIZE + 3));
    new DataView(g.buffer).setUint16(16, 3);
    g.set(computeMac(pos.key, g.subarray(0, HEADER_SIZE + 3)), HEADER_SIZE + 3);
    const m = await pos.sendFrame(g, short.sequence);
    assert.equal(status(m.message), Status.MalformedBody);
  }));

Deno.test("an oversize length and garbage close the connection without a reply", () =>
  withWorld(async (w) => {
    const conn = await Deno.connect({ port: w.server.port });
    const header = new Uint8Array(HEADER_SIZE);
    header.set([0x59, 0x58, 0x01, 0x10]);
    new DataView(header.buffer).setUint16(16, 0xffff);
    await conn.write(header);
    assert.equal((await drain(conn)).length, 0);
    conn.close();
    const junk = await Deno.connect({ port: w.server.port });
    await junk.write(new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert.equal((await drain(junk)).length, 0);
    junk.close();
  }));

Deno.test("a slow sender is cut off, and an idle one too", () =>
  withWorld(async (w) => {
    const conn = await Deno.connect({ port: w.server.port });
    await conn.write(Uint8Array.of(0x59, 0x58, 0x01));
    const t0 = performance.now();
    await drain(conn);
    assert.ok(performance.now() - t0 < 5000);
    conn.close();
    const idle = await Deno.connect({ port: w.server.port });
    await drain(idle);
    idle.close();
    assert.equal(w.server.connectionCount, 0);
  }, { frameTimeoutMs: 300, idleTimeoutMs: 600 }));

Deno.test("fuzz: random and mutated frames never crash the server or move money, and good readers carry on", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 10_000 });
    const good = await w.connect("canteen_pos");
    const t = w.terminals.canteen_pos;
    const samples = fc.sample(
      fc.tuple(fc.uint8Array({ minLength: 0, maxLength: 300 }), fc.nat(), fc.nat({ max: 255 })),
      { numRuns: 150, seed: 42 },
    );
    for (const [random, at, value] of samples) {
      const conn = await Deno.connect({ port: w.server.port });
      const valid = encodeFrame(t.key, {
        terminalId: t.id,
        sequence: 9000 + at % 1000,
        timestamp: Math.floor(Date.now() / 1000),
      }, {
        code: MessageCode.CardPayment,
        chip: card.chip,
        amount: 500,
        password: "",
      });
      const mutated = valid.slice();
      mutated[at % mutated.length] = value === mutated[at % mutated.length] ? value ^ 1 : value;
      const payload = at % 2 === 0 ? mutated : random;
      await conn.write(payload).catch(() => 0);
      conn.close();
    }
    const r = await good.request({
      code: MessageCode.CardPayment,
      chip: card.chip,
      amount: 100,
      password: "",
    });
    assert.equal(status(r.message), Status.Ok);
    assert.equal(await w.balance(card.cardAccountId), 9_900);
  }));

Deno.test("closing the server answers the requests in flight, then closes the connections", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 5000 });
    const pos = await w.connect("canteen_pos");
    await pos.request({ code: MessageCode.SignOn, firmware: "t" });
    const replies = [1, 2, 3].map(() =>
      pos.request({ code: MessageCode.CardPayment, chip: card.chip, amount: 100, password: "" })
    );
    // The first is answered; the others are on their way or in flight when the server stops.
    await replies[0];
    await w.server.close();
    const settled = await Promise.allSettled(replies);
    const answered = settled.filter((s) => s.status === "fulfilled").length;
    assert.ok(answered >= 1);
    const recorded = await w.db.selectFrom("terminal_requests").select("sequence").execute();
    // Every request that moved money was answered, and nothing unanswered was charged.
    assert.equal(recorded.length, answered);
    assert.equal(await w.balance(card.cardAccountId), 5000 - 100 * answered);
    await pos.done;
    assert.equal(pos.closed, true);
  }));

Deno.test("a flood of refused frames writes a few log lines and one count, not a line each", () =>
  withWorld(async (w) => {
    const lines: string[] = [];
    const original = console.error;
    console.error = (line: unknown) => lines.push(String(line));
    try {
      const pos = await w.connect("canteen_pos");
      for (let round = 0; round < 30; round++) {
        for (let i = 0; i < 2; i++) {
          const f = pos.frame({
            code: MessageCode.Heartbeat,
            blocklistVersion: 0,
            offlineCount: 0,
          });
          f.bytes[20] ^= 1;
          assert.equal(status((await pos.sendFrame(f.bytes, f.sequence)).message), Status.BadMac);
        }
        const ok = await pos.request({
          code: MessageCode.Heartbeat,
          blocklistVersion: 0,
          offlineCount: 0,
        });
        assert.equal(status(ok.message), Status.Ok);
      }
      await pos.close();
      for (let i = 0; i < 100 && !lines.some((l) => l.includes("more frames refused")); i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      console.error = original;
    }
    assert.equal(lines.filter((l) => l.includes('"msg":"frame refused"')).length, 20);
    const summary = lines.find((l) => l.includes("more frames refused"));
    assert.ok(summary, lines.slice(-3).join("\n"));
    assert.equal(JSON.parse(summary).notLogged, 40);
  }));
