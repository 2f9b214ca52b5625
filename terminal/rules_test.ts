/**
 * What the server enforces of PROTOCOL.md 1.1 beyond framing: connection limits, chip format,
 * Error headers and keys, sequence-number rules and shower ends.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { setTerminalStatus } from "../modules/merchant/mod.ts";
import { type Message, MessageCode, Status } from "./messages.ts";
import { parseBody, Parser, type RawFrame } from "./parser.ts";
import { computeMac, encodeFrame, macEqual } from "./serializer.ts";
import { sequenceAnswered, sequenceRefusal, type SequenceState } from "./sequence.ts";
import { status, withWorld } from "./_test_support.ts";

function now(): number {
  return Math.floor(Date.now() / 1000);
}

/** A connection that sends prepared frames and reads whatever comes back, MAC unchecked. */
async function raw(port: number) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const parser = new Parser();
  const frames: RawFrame[] = [];
  const buf = new Uint8Array(8192);
  return {
    async send(bytes: Uint8Array): Promise<RawFrame> {
      await conn.write(bytes);
      while (frames.length === 0) {
        const n = await conn.read(buf);
        if (n === null) throw new Error("closed before a reply");
        parser.parse(buf.subarray(0, n), (f) => frames.push(f));
      }
      return frames.shift()!;
    },
    close: () => conn.close(),
  };
}

/** An idle TCP socket to `port` from a given local loopback address; resolves `closed` when the server drops it. */
async function idleSocket(port: number, localAddress: string) {
  const s = net.connect({ host: "127.0.0.1", port, localAddress });
  await new Promise<void>((resolve, reject) => {
    s.once("connect", () => resolve());
    s.once("error", reject);
  });
  const closed = new Promise<void>((resolve) => s.once("close", () => resolve()));
  s.on("error", () => {});
  return { closed, destroy: () => s.destroy() };
}

/**
 * Waits for the server's count of connections to become `n`: the server counts a connection when
 * its accept runs and uncounts it when its close runs, either of which may come after the client
 * saw "connect" or "close". Fails with the count it stayed at.
 */
async function connectionsBecome(w: { server: { connectionCount: number } }, n: number) {
  const deadline = Date.now() + 10_000;
  while (w.server.connectionCount !== n && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.equal(w.server.connectionCount, n);
}

Deno.test("idle sockets flooding from one address are capped and cut, and an online reader keeps working", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 5000 });
    const pos = await w.connect("canteen_pos");
    assert.equal(
      status((await pos.request({ code: MessageCode.SignOn, firmware: "t" })).message),
      0,
    );
    // 60 idle sockets from 127.0.0.2: the first 50 are held (unauthenticated), the rest dropped at once.
    const flood = [];
    for (let i = 0; i < 60; i++) flood.push(await idleSocket(w.server.port, "127.0.0.2"));
    await Promise.all(flood.slice(50).map((s) => s.closed));
    await connectionsBecome(w, 51);
    // The established reader is answered, and a reader from another address can still connect.
    const paid = await pos.request({
      code: MessageCode.CardPayment,
      chip: card.chip,
      amount: 100,
      password: "",
    });
    assert.equal(status(paid.message), Status.Ok);
    const shower = await w.connect("shower");
    assert.equal(
      status((await shower.request({ code: MessageCode.SignOn, firmware: "t" })).message),
      Status.Ok,
    );
    // The 50 that never sent a frame are closed after the authentication timeout; readers stay.
    await Promise.all(flood.slice(0, 50).map((s) => s.closed));
    await connectionsBecome(w, 2);
    const again = await idleSocket(w.server.port, "127.0.0.2");
    await connectionsBecome(w, 3);
    again.destroy();
    assert.equal(
      status(
        (await pos.request({ code: MessageCode.Heartbeat, blocklistVersion: 0, offlineCount: 0 }))
          .message,
      ),
      Status.Ok,
    );
  }, { limits: { authTimeoutMs: 1500 } }));

Deno.test("unauthenticated connections are capped in total across addresses", () =>
  withWorld(async (w) => {
    const a = [
      await idleSocket(w.server.port, "127.0.0.3"),
      await idleSocket(w.server.port, "127.0.0.4"),
    ];
    const third = await idleSocket(w.server.port, "127.0.0.5");
    await third.closed;
    await connectionsBecome(w, 2);
    for (const s of a) s.destroy();
    await Promise.all(a.map((s) => s.closed));
    // An authenticated reader does not count against the unauthenticated total.
    const pos = await w.connect("canteen_pos");
    assert.equal(
      status((await pos.request({ code: MessageCode.SignOn, firmware: "t" })).message),
      0,
    );
    const b = [
      await idleSocket(w.server.port, "127.0.0.3"),
      await idleSocket(w.server.port, "127.0.0.4"),
    ];
    await connectionsBecome(w, 3);
    for (const s of b) s.destroy();
  }, { limits: { maxUnauthenticated: 2 } }));

Deno.test("a chip with a NUL or a byte outside 0-9A-Z is a MalformedBody, not ServerBusy, and logs no stack", () =>
  withWorld(async (w) => {
    const lines: string[] = [];
    const original = console.error;
    console.error = (line: unknown) => lines.push(String(line));
    try {
      const card = await w.card({ balance: 5000 });
      const pos = await w.connect("canteen_pos");
      const shower = await w.connect("shower");
      for (const chip of [`${card.chip}\0`, card.chip.toLowerCase(), "A1B2-C3D4", "ABC"]) {
        const bodies = [
          [pos, { code: MessageCode.CardPayment, chip, amount: 100, password: "" }],
          [pos, { code: MessageCode.BalanceInquiry, chip }],
          [shower, { code: MessageCode.ShowerStart, chip }],
        ] as const;
        for (const [reader, m] of bodies) {
          const r = await reader.request(m as Message);
          assert.deepEqual([r.message.code, status(r.message), r.authenticated], [
            MessageCode.Error,
            Status.MalformedBody,
            true,
          ], JSON.stringify(chip));
          // Interleaved with good frames so the connection is not closed for refusals in a row.
          await reader.request({
            code: MessageCode.Heartbeat,
            blocklistVersion: 0,
            offlineCount: 0,
          });
        }
      }
    } finally {
      console.error = original;
    }
    assert.equal(lines.filter((l) => l.includes("request failed")).length, 0);
    assert.equal(
      await w.balance(
        (await w.db.selectFrom("card_accounts").select("id").executeTakeFirstOrThrow()).id,
      ),
      5000,
    );
  }));

Deno.test("an Error echoes the refused frame's terminal, sequence and timestamp, server time in its body", () =>
  withWorld(async (w) => {
    const pos = await w.connect("canteen_pos");
    const stale = now() - 3600;
    const r = await pos.request({
      code: MessageCode.Heartbeat,
      blocklistVersion: 0,
      offlineCount: 0,
    }, {
      timestamp: stale,
      sequence: 41,
    });
    assert.deepEqual([r.header.type, r.header.terminalId, r.header.sequence, r.header.timestamp], [
      MessageCode.Error,
      pos.terminalId,
      41,
      stale,
    ]);
    assert.ok(Math.abs((r.message as { serverTime: number }).serverTime - now()) < 5);
    // The same for a bad MAC (unsealed) and for sequence 0 (SequenceReused, sealed).
    const forged = pos.frame(
      { code: MessageCode.Heartbeat, blocklistVersion: 0, offlineCount: 0 },
      {
        timestamp: stale + 3590,
      },
    );
    forged.bytes[20] ^= 1;
    const bad = await pos.sendFrame(forged.bytes, forged.sequence);
    assert.deepEqual([status(bad.message), bad.authenticated, bad.header.timestamp], [
      Status.BadMac,
      false,
      stale + 3590,
    ]);
    const zero = await pos.request(
      { code: MessageCode.Heartbeat, blocklistVersion: 0, offlineCount: 0 },
      { sequence: 0, timestamp: stale + 3595 },
    );
    assert.deepEqual([
      zero.header.type,
      status(zero.message),
      zero.authenticated,
      zero.header.timestamp,
    ], [
      MessageCode.Error,
      Status.SequenceReused,
      true,
      stale + 3595,
    ]);
  }));

Deno.test("WrongTerminal is sealed with the key of the terminal in its header: the frame's own", () =>
  withWorld(async (w) => {
    const canteen = w.terminals.canteen_pos;
    const shower = w.terminals.shower;
    const c = await raw(w.server.port);
    try {
      const header = (terminalId: number, sequence: number) => ({
        terminalId,
        sequence,
        timestamp: now(),
      });
      const on = await c.send(
        encodeFrame(canteen.key, header(canteen.id, 1), {
          code: MessageCode.SignOn,
          firmware: "t",
        }),
      );
      assert.equal(status(parseBody(on.type, on.body)), Status.Ok);
      const wrong = await c.send(
        encodeFrame(shower.key, header(shower.id, 7), { code: MessageCode.SignOn, firmware: "t" }),
      );
      assert.deepEqual([wrong.type, wrong.terminalId, wrong.sequence], [
        MessageCode.Error,
        shower.id,
        7,
      ]);
      assert.equal(status(parseBody(wrong.type, wrong.body)), Status.WrongTerminal);
      assert.ok(macEqual(computeMac(shower.key, wrong.signed), wrong.mac));
      assert.ok(!macEqual(computeMac(canteen.key, wrong.signed), wrong.mac));
    } finally {
      c.close();
    }
  }));

Deno.test("a reader drops the WrongTerminal answer sealed with another terminal's key and carries on", () =>
  withWorld(async (w) => {
    const shower = w.terminals.shower;
    const pos = await w.connect("canteen_pos");
    assert.equal(
      status((await pos.request({ code: MessageCode.SignOn, firmware: "t" })).message),
      0,
    );
    await pos.write(
      encodeFrame(shower.key, { terminalId: shower.id, sequence: 900, timestamp: now() }, {
        code: MessageCode.SignOn,
        firmware: "t",
      }),
    );
    // Answered in order: once the heartbeat is answered, the Error before it has been dropped.
    const hb = await pos.request({
      code: MessageCode.Heartbeat,
      blocklistVersion: 0,
      offlineCount: 0,
    });
    assert.equal(status(hb.message), Status.Ok);
    assert.equal(pos.closed, false);
  }));

Deno.test("TerminalDisabled is sealed with the terminal's own key", () =>
  withWorld(async (w) => {
    const t = w.terminals.supermarket_pos;
    await setTerminalStatus(w.db, t.id, "disabled");
    const pos = await w.connect("supermarket_pos");
    const r = await pos.request({ code: MessageCode.SignOn, firmware: "x" });
    assert.deepEqual([status(r.message), r.authenticated], [Status.TerminalDisabled, true]);
  }, { registryTtlMs: 0 }));

Deno.test("three refused frames in a row close a connection; SequenceReused does not count", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 5000 });
    const pos = await w.connect("canteen_pos");
    const paid = await pos.request({
      code: MessageCode.CardPayment,
      chip: card.chip,
      amount: 100,
      password: "",
    });
    assert.equal(status(paid.message), Status.Ok);
    for (let i = 0; i < 4; i++) {
      const r = await pos.request({ code: MessageCode.BalanceInquiry, chip: card.chip }, {
        sequence: paid.header.sequence,
      });
      assert.equal(status(r.message), Status.SequenceReused);
    }
    const bad = () => {
      const f = pos.frame({ code: MessageCode.Heartbeat, blocklistVersion: 0, offlineCount: 0 });
      f.bytes[20] ^= 1;
      return pos.sendFrame(f.bytes, f.sequence);
    };
    await bad();
    await bad();
    const ok = await pos.request({
      code: MessageCode.Heartbeat,
      blocklistVersion: 0,
      offlineCount: 0,
    });
    assert.equal(status(ok.message), Status.Ok);
    await bad();
    await bad();
    assert.equal(pos.closed, false);
    await bad();
    await pos.done;
    assert.equal(pos.closed, true);
  }));

Deno.test("sequence rules: a recorded number belongs to its request, 0 and lower unused numbers are refused", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 5000 });
    const pos = await w.connect("canteen_pos", { sequence: 100 });
    const pay = (amount: number): Message => ({
      code: MessageCode.CardPayment,
      chip: card.chip,
      amount,
      password: "",
    });
    const first = await pos.request(pay(300));
    assert.equal(status(first.message), Status.Ok);
    // A read-only request under the payment's number: refused, not answered Ok.
    const inquiry = await pos.request({ code: MessageCode.BalanceInquiry, chip: card.chip }, {
      sequence: 100,
    });
    assert.deepEqual([inquiry.message.code, status(inquiry.message)], [
      MessageCode.Error,
      Status.SequenceReused,
    ]);
    // A payment under a lower number never used: refused, nothing charged.
    const lower = await pos.request(pay(200), { sequence: 50 });
    assert.deepEqual([lower.message.code, status(lower.message)], [
      MessageCode.Error,
      Status.SequenceReused,
    ]);
    const zero = await pos.request(pay(200), { sequence: 0 });
    assert.equal(status(zero.message), Status.SequenceReused);
    // Read-only requests under unrecorded numbers are answered: they are not recorded.
    const readOnly = await pos.request({ code: MessageCode.BalanceInquiry, chip: card.chip }, {
      sequence: 60,
    });
    assert.equal(status(readOnly.message), Status.Ok);
    // The retry of 100 is still answered with its reply; a new number above goes on.
    const retry = await pos.request(pay(300), { sequence: 100 });
    assert.deepEqual(retry.bytes, first.bytes);
    assert.equal(status((await pos.request(pay(200))).message), Status.Ok);
    await pos.close();
    // A new connection knows the recorded numbers from the database.
    const again = await w.connect("canteen_pos", { sequence: 70 });
    const behind = await again.request(pay(200));
    assert.equal(status(behind.message), Status.SequenceReused);
    assert.equal(await w.balance(card.cardAccountId), 4500);
    assert.deepEqual(
      (await w.db.selectFrom("terminal_requests").select("sequence").orderBy("sequence").execute())
        .map((r) => Number(r.sequence)),
      [100, 101],
    );
  }));

Deno.test("a terminal is served on one connection: a newer one closes the older, and the live view shows it", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 5000 });
    const older = await w.connect("canteen_pos");
    assert.equal(
      status((await older.request({ code: MessageCode.SignOn, firmware: "t" })).message),
      0,
    );
    const newer = await w.connect("canteen_pos", { sequence: 10 });
    assert.equal(
      status((await newer.request({ code: MessageCode.SignOn, firmware: "t" })).message),
      0,
    );
    await older.done;
    assert.equal(older.closed, true);
    const paid = await newer.request({
      code: MessageCode.CardPayment,
      chip: card.chip,
      amount: 100,
      password: "",
    });
    assert.equal(status(paid.message), Status.Ok);
    assert.equal(w.server.connected(w.terminals.canteen_pos.id), true);
    const errors = await w.db.selectFrom("terminal_errors").select("code").execute();
    assert.deepEqual(errors.map((e) => e.code), ["ConnectionReplaced"]);
  }));

Deno.test("a shower end with 0 units charges nothing and releases the hold; more than the hold charges the hold", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 2000 });
    const shower = await w.connect("shower");
    const start = async () => {
      const r = await shower.request({ code: MessageCode.ShowerStart, chip: card.chip });
      assert.equal(status(r.message), Status.Ok);
      return (r.message as { holdId: number }).holdId;
    };
    const held = async () =>
      (await w.db.selectFrom("ledger_accounts").select("held").where(
        "card_account_id",
        "=",
        card.cardAccountId,
      ).executeTakeFirstOrThrow()).held;
    const none = await shower.request({
      code: MessageCode.ShowerEnd,
      holdId: await start(),
      units: 0,
    });
    assert.deepEqual(none.message, {
      code: MessageCode.ShowerEndReply,
      status: Status.Ok,
      charged: 0,
      released: 500,
      balance: 2000,
    });
    assert.equal(Number(await held()), 0);
    for (const units of [1_000, 0xffff_ffff]) {
      const holdId = await start();
      const over = await shower.request({ code: MessageCode.ShowerEnd, holdId, units });
      assert.deepEqual(over.message, {
        code: MessageCode.ShowerEndReply,
        status: Status.Ok,
        charged: 500,
        released: 0,
        balance: units === 1_000 ? 1500 : 1000,
      }, `units ${units}`);
      const twice = await shower.request({ code: MessageCode.ShowerEnd, holdId, units: 1 });
      assert.equal(status(twice.message), Status.HoldNotFound);
    }
    assert.equal(Number(await held()), 0);
    assert.equal(await w.balance(card.cardAccountId), 1000);
  }));

Deno.test("a shower end after its hold timed out settles from what is available, any units, never InvalidAmount", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 2000 });
    const shower = await w.connect("shower");
    const r = await shower.request({ code: MessageCode.ShowerStart, chip: card.chip });
    const holdId = (r.message as { holdId: number }).holdId;
    const end = await shower.request({ code: MessageCode.ShowerEnd, holdId, units: 0xffff_ffff });
    assert.deepEqual(end.message, {
      code: MessageCode.ShowerEndReply,
      status: Status.Ok,
      charged: 500,
      released: 0,
      balance: 1500,
    });
  }, { settings: { showerHoldSeconds: 0 } }));

Deno.test("a number answered ServerBusy stays open for its retry, even after later requests", () =>
  withWorld(async (w) => {
    const t = w.terminals.canteen_pos.id;
    const frame = (type: number, sequence: number) =>
      ({ type, terminalId: t, sequence, timestamp: now() }) as RawFrame;
    const state: SequenceState = { highest: null, open: new Set() };
    assert.equal(await sequenceRefusal(w.db, state, t, frame(MessageCode.CardPayment, 5)), null);
    sequenceAnswered(state, 5, true);
    assert.equal(await sequenceRefusal(w.db, state, t, frame(MessageCode.Heartbeat, 6)), null);
    sequenceAnswered(state, 6, false);
    // 5 was never recorded and is below 6, but its ServerBusy kept it open.
    assert.equal(await sequenceRefusal(w.db, state, t, frame(MessageCode.CardPayment, 5)), null);
    sequenceAnswered(state, 5, false);
    assert.match(
      (await sequenceRefusal(w.db, state, t, frame(MessageCode.CardPayment, 5)))!,
      /unused sequence 5, below 6/,
    );
    assert.match(
      (await sequenceRefusal(w.db, state, t, frame(MessageCode.CardPayment, 0)))!,
      /reserved for pushes/,
    );
  }));

Deno.test("TERMINAL_MAX_UNAUTH_PER_HOST 0 lifts the per-address limit (behind a TCP proxy); the total still holds", () =>
  withWorld(async (w) => {
    const held = [];
    for (let i = 0; i < 60; i++) held.push(await idleSocket(w.server.port, "127.0.0.6"));
    const over = await idleSocket(w.server.port, "127.0.0.6");
    await over.closed;
    await connectionsBecome(w, 60);
    for (const s of held) s.destroy();
    await Promise.all(held.map((s) => s.closed));
  }, { limits: { maxUnauthenticatedPerAddress: 0, maxUnauthenticated: 60 } }));
