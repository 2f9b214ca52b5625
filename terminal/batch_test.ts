import assert from "node:assert/strict";
import type { KyselyPlugin, PluginTransformQueryArgs, PluginTransformResultArgs } from "kysely";
import { createStaff } from "../modules/staff/mod.ts";
import { registerTerminal } from "../modules/merchant/mod.ts";
import { staffReportLoss } from "../modules/card/mod.ts";
import {
  adjustBalance,
  type CodeRedeemed,
  issuePaymentCode,
  onPaymentCodeRedeemed,
  updatePaySettings,
  verifyLedger,
} from "../modules/wallet/mod.ts";
import type { Db } from "../modules/platform/database.ts";
import { GroupCommit } from "./batch.ts";
import { type Message, MessageCode, Status } from "./messages.ts";
import { startTerminalServer, type TerminalServer } from "./mod.ts";
import { keyFromHex, type Received, TerminalClient } from "./sim/client.ts";
import { setupWorld, type World } from "./_test_support.ts";

/** A deferred promise, to decide from the test when a batch finishes. */
function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

Deno.test("group commit: the first item runs at once, later arrivals go together in the next batch", async () => {
  const batches: number[][] = [];
  const gates: Array<ReturnType<typeof deferred<void>>> = [];
  const g = new GroupCommit<number, number>({
    maxBatch: 3,
    maxInFlight: 1,
    keys: (i) => [`k${i}`],
    run: async (items) => {
      batches.push(items);
      const gate = deferred<void>();
      gates.push(gate);
      await gate.promise;
      return items.map((i) => i * 10);
    },
  });
  const first = g.submit(1);
  // No timer: the first batch started synchronously.
  assert.deepEqual(batches, [[1]]);
  const rest = [2, 3, 4, 5].map((i) => g.submit(i));
  assert.deepEqual(batches, [[1]]);
  assert.equal(g.waiting, 4);
  gates[0].resolve();
  assert.equal(await first, 10);
  assert.deepEqual(batches, [[1], [2, 3, 4]]);
  gates[1].resolve();
  await Promise.all(rest.slice(0, 3));
  assert.deepEqual(batches, [[1], [2, 3, 4], [5]]);
  gates[2].resolve();
  assert.deepEqual(await Promise.all(rest), [20, 30, 40, 50]);
});

Deno.test("group commit: items sharing a key never run together, and a failed batch rejects only its own items", async () => {
  const batches: string[][] = [];
  const inFlight = new Set<string>();
  const g = new GroupCommit<string, string>({
    maxBatch: 10,
    maxInFlight: 2,
    keys: (i) => [i.slice(0, 1)],
    run: async (items) => {
      batches.push(items);
      for (const i of items) {
        assert.ok(!inFlight.has(i[0]), `key ${i[0]} already in flight`);
        inFlight.add(i[0]);
      }
      await Promise.resolve();
      for (const i of items) inFlight.delete(i[0]);
      if (items.includes("b2")) throw new Error("boom");
      return items.map((i) => i.toUpperCase());
    },
  });
  const results = await Promise.allSettled(
    ["a1", "b1", "a2", "b2", "c1", "a3"].map((i) => g.submit(i)),
  );
  for (const b of batches) {
    assert.equal(new Set(b.map((i) => i[0])).size, b.length, `batch ${b} repeats a key`);
  }
  const outcome = results.map((r) => r.status === "fulfilled" ? r.value : "failed");
  const failedBatch = batches.find((b) => b.includes("b2"))!;
  assert.deepEqual(
    outcome,
    ["a1", "b1", "a2", "b2", "c1", "a3"].map((i) =>
      failedBatch.includes(i) ? "failed" : i.toUpperCase()
    ),
  );
});

/** Counts the statements a server runs, and among them the card payment batches. */
class StatementCounter implements KyselyPlugin {
  statements = 0;
  batches = 0;
  transformQuery(args: PluginTransformQueryArgs) {
    this.statements++;
    if (
      JSON.stringify(args.node).includes(
        "(payer, merchant_id, amount, reference, terminal_id, ord)",
      )
    ) {
      this.batches++;
    }
    return args.node;
  }
  transformResult(args: PluginTransformResultArgs) {
    return Promise.resolve(args.result);
  }
}

interface Reader {
  client: TerminalClient;
  id: number;
}

/** `count` more readers of `kind` (of the world's reader's merchant), connected to `server`. */
async function readers(
  w: World,
  server: TerminalServer,
  count: number,
  kind: "canteen_pos" | "qr_scanner" = "canteen_pos",
): Promise<Reader[]> {
  const out: Reader[] = [];
  for (let i = 0; i < count; i++) {
    const r = await registerTerminal(w.db, w.config.appSecret, {
      merchantId: w.terminals[kind].merchantId,
      kind,
      name: `批量${i}`,
    });
    const client = await TerminalClient.connect({
      port: server.port,
      terminalId: r.terminal.id,
      key: keyFromHex(r.keyHex),
    });
    // Signed on: the server has looked the reader up and noted it seen.
    const on = await client.request({ code: MessageCode.SignOn, firmware: "t" });
    assert.equal(status(on), Status.Ok);
    out.push({ client, id: r.terminal.id });
  }
  return out;
}

function pay(chip: string, amount: number): Message {
  return { code: MessageCode.CardPayment, chip, amount, password: "" };
}

function status(r: Received): number {
  return (r.message as { status: number }).status;
}

async function withServer(
  fn: (w: World, server: TerminalServer, counter: StatementCounter) => Promise<void>,
): Promise<void> {
  const w = await setupWorld();
  const counter = new StatementCounter();
  const server = startTerminalServer({ db: w.db.withPlugin(counter) as Db, config: w.config }, {
    port: 0,
    hostname: "127.0.0.1",
    registryTtlMs: 600_000,
  });
  try {
    await fn(w, server, counter);
  } finally {
    await server.close();
    await w.close();
  }
}

Deno.test("concurrent card payments share batch statements, the same card twice in flight included", () =>
  withServer(async (w, server, counter) => {
    // The merchant's ledger account exists after a first payment (created on first use).
    const warm = await w.card({ balance: 100 });
    const pos = await w.connect("canteen_pos");
    assert.equal(status(await pos.request(pay(warm.chip, 1))), Status.Ok);
    const cards = await Promise.all([0, 1, 2, 3, 4, 5].map(() => w.card({ balance: 10_000 })));
    const rs = await readers(w, server, 18);
    try {
      // Three readers pay each card at the same moment.
      const frames = rs.map((r, i) => ({
        r,
        card: cards[i % cards.length],
        amount: 100 + i,
        frame: r.client.frame(pay(cards[i % cards.length].chip, 100 + i)),
      }));
      const before = counter.statements;
      const replies = await Promise.all(
        frames.map((x) => x.r.client.sendFrame(x.frame.bytes, x.frame.sequence)),
      );
      assert.deepEqual(replies.map(status), frames.map(() => Status.Ok));
      assert.ok(counter.batches >= 1, "no batch statement ran");
      assert.ok(
        counter.statements - before < frames.length,
        `${counter.statements - before} statements for ${frames.length} payments`,
      );
      for (const card of cards) {
        const mine = frames.map((x, i) => ({ ...x, reply: replies[i] })).filter((x) =>
          x.card === card
        );
        const spent = mine.reduce((s, x) => s + x.amount, 0);
        assert.equal(await w.balance(card.cardAccountId), 10_000 - spent);
        // Each reply's balance is one step of the card's history: the lowest is the final one.
        const balances = mine.map((x) => (x.reply.message as { balance: number }).balance);
        assert.equal(Math.min(...balances), 10_000 - spent);
        assert.equal(new Set(balances).size, mine.length);
      }
      // A retry of each gets the stored bytes and moves nothing.
      const again = await Promise.all(
        frames.map((x) => x.r.client.sendFrame(x.frame.bytes, x.frame.sequence)),
      );
      again.forEach((r, i) => assert.deepEqual(r.bytes, replies[i].bytes));
      const transfers = await w.db.selectFrom("ledger_transfers").select("id")
        .where("kind", "=", "purchase").execute();
      assert.equal(transfers.length, frames.length + 1);
      assert.deepEqual((await verifyLedger(w.db)).problems, []);
    } finally {
      for (const r of rs) await r.client.close();
    }
  }));

Deno.test("a refused card in the middle of a batch gets its own status and the others still pay", () =>
  withServer(async (w, server) => {
    const warm = await w.card({ balance: 100 });
    const pos = await w.connect("canteen_pos");
    assert.equal(status(await pos.request(pay(warm.chip, 1))), Status.Ok);
    const good = await Promise.all([0, 1, 2, 3].map(() => w.card({ balance: 5000 })));
    const poor = await w.card({ balance: 300 });
    const lost = await w.card({ balance: 5000 });
    const limited = await w.card({ balance: 5000 });
    const office = await createStaff(w.db, {
      username: `office${Math.floor(Math.random() * 1e6)}`,
      name: "一卡通中心",
      password: "Office12345",
      roles: ["card_office"],
    });
    await staffReportLoss(w.db, { staffId: office }, lost.cardAccountId);
    await updatePaySettings(w.db, limited.cardAccountId, {
      payLimit: 1000,
      dailyLimit: 1500,
      codeFrozen: false,
    });
    const plan = [
      { chip: good[0].chip, amount: 500, expect: Status.Ok },
      { chip: poor.chip, amount: 500, expect: Status.InsufficientBalance },
      { chip: good[1].chip, amount: 500, expect: Status.Ok },
      { chip: lost.chip, amount: 500, expect: Status.CardLossReported },
      { chip: good[2].chip, amount: 500, expect: Status.Ok },
      { chip: limited.chip, amount: 1200, expect: Status.OverPaymentLimit },
      { chip: "NOSUCHCHIP", amount: 500, expect: Status.UnknownChip },
      { chip: good[3].chip, amount: 500, expect: Status.Ok },
    ];
    const rs = await readers(w, server, plan.length);
    try {
      const replies = await Promise.all(
        plan.map((p, i) => rs[i].client.request(pay(p.chip, p.amount))),
      );
      assert.deepEqual(replies.map(status), plan.map((p) => p.expect));
      assert.equal((replies[1].message as { balance: number }).balance, 300);
      for (const card of good) assert.equal(await w.balance(card.cardAccountId), 4500);
      assert.equal(await w.balance(poor.cardAccountId), 300);
      assert.equal(await w.balance(lost.cardAccountId), 5000);
      assert.equal(await w.balance(limited.cardAccountId), 5000);
      // Refusals are recorded too, with their own reply.
      const recorded = await w.db.selectFrom("terminal_requests").select(["status"])
        .where("terminal_id", "in", rs.map((r) => r.id)).orderBy("terminal_id").execute();
      assert.deepEqual(recorded.map((r) => r.status), plan.map((p) => p.expect));
      // Over the daily limit: the first fits, the second is refused, the batch or not.
      const [a, b] = await Promise.all([
        rs[0].client.request(pay(limited.chip, 900)),
        rs[1].client.request(pay(limited.chip, 900)),
      ]);
      assert.deepEqual([status(a), status(b)].sort(), [Status.Ok, Status.OverDailyLimit].sort());
      assert.equal(await w.balance(limited.cardAccountId), 4100);
      assert.deepEqual((await verifyLedger(w.db)).problems, []);
    } finally {
      for (const r of rs) await r.client.close();
    }
  }));

Deno.test("a retry racing its first request, on this instance and on another, charges once with identical replies", () =>
  withServer(async (w, server) => {
    const warm = await w.card({ balance: 100 });
    const pos = await w.connect("canteen_pos");
    assert.equal(status(await pos.request(pay(warm.chip, 1))), Status.Ok);
    // A second instance on the same database has its own batches.
    const other = startTerminalServer({
      db: w.db.withPlugin(new StatementCounter()) as Db,
      config: w.config,
    }, {
      port: 0,
      hostname: "127.0.0.1",
    });
    const cards = await Promise.all([0, 1, 2, 3, 4, 5].map(() => w.card({ balance: 5000 })));
    const rs = await readers(w, server, 6);
    const twins: TerminalClient[] = [];
    try {
      for (const r of rs) {
        twins.push(
          await TerminalClient.connect({ port: other.port, terminalId: r.id, key: r.client.key }),
        );
      }
      // The connection each reader is on: a retry from a new connection to the same instance
      // takes the terminal over, so the first may lose its reply (its money still moves once).
      const current = rs.map((r) => r.client);
      for (let round = 0; round < 3; round++) {
        const frames = rs.map((r) => r.client.frame(pay(cards[rs.indexOf(r)].chip, 100)));
        const sent = await Promise.all(frames.map(async (f, i) => {
          const here = await TerminalClient.connect({
            port: server.port,
            terminalId: rs[i].id,
            key: rs[i].client.key,
          });
          twins.push(here);
          const replies = await Promise.all([
            current[i].sendFrame(f.bytes, f.sequence).catch(() => null),
            here.sendFrame(f.bytes, f.sequence),
            twins[i].sendFrame(f.bytes, f.sequence),
          ]);
          current[i] = here;
          return replies;
        }));
        for (const [first, here, there] of sent) {
          assert.equal(status(here), Status.Ok);
          if (first) assert.deepEqual(first.bytes, here.bytes);
          assert.deepEqual(there.bytes, here.bytes);
        }
      }
      for (const card of cards) assert.equal(await w.balance(card.cardAccountId), 4700);
      assert.deepEqual((await verifyLedger(w.db)).problems, []);
    } finally {
      for (const c of twins) await c.close();
      for (const r of rs) await r.client.close();
      await other.close();
    }
  }));

function qr(code: string, amount: number): Message {
  return { code: MessageCode.QrPayment, paymentCode: code, amount };
}

Deno.test("concurrent 付款码 payments share batch statements; a used, frozen, poor or limited code in a batch gets its own status and the others still pay", () =>
  withServer(async (w, server, counter) => {
    // The merchant's ledger account exists after a first payment (created on first use).
    const scanner = await w.connect("qr_scanner");
    const warm = await w.card({ balance: 100 });
    const warmCode = (await issuePaymentCode(w.db, warm.cardAccountId)).code;
    assert.equal(status(await scanner.request(qr(warmCode, 1))), Status.Ok);
    const good = await Promise.all([0, 1, 2, 3, 4, 5].map(() => w.card({ balance: 5000 })));
    const poor = await w.card({ balance: 300 });
    const frozen = await w.card({ balance: 5000 });
    const limited = await w.card({ balance: 5000 });
    const code = async (card: { cardAccountId: number }) =>
      (await issuePaymentCode(w.db, card.cardAccountId)).code;
    const goodCodes = await Promise.all(good.map(code));
    const frozenCode = await code(frozen);
    await updatePaySettings(w.db, frozen.cardAccountId, {
      payLimit: 1000,
      dailyLimit: 1500,
      codeFrozen: true,
    });
    await updatePaySettings(w.db, limited.cardAccountId, {
      payLimit: 1000,
      dailyLimit: 1500,
      codeFrozen: false,
    });
    const limitedCode = await code(limited);
    const poorCode = await code(poor);
    const plan = [
      { code: goodCodes[0], amount: 500, expect: Status.Ok },
      { code: poorCode, amount: 500, expect: Status.InsufficientBalance },
      { code: goodCodes[1], amount: 500, expect: Status.Ok },
      { code: frozenCode, amount: 500, expect: Status.CodeExpired },
      { code: goodCodes[2], amount: 500, expect: Status.Ok },
      { code: limitedCode, amount: 1200, expect: Status.OverPaymentLimit },
      { code: warmCode, amount: 500, expect: Status.CodeUsed },
      { code: goodCodes[3], amount: 500, expect: Status.Ok },
      // The same code at two readers at once: one pays, the other is told it is used.
      { code: goodCodes[4], amount: 700, expect: "one of two" },
      { code: goodCodes[4], amount: 700, expect: "one of two" },
      { code: goodCodes[5], amount: 800, expect: Status.Ok },
    ];
    const heard: CodeRedeemed[] = [];
    const off = onPaymentCodeRedeemed((e) => heard.push(e));
    const rs = await readers(w, server, plan.length, "qr_scanner");
    try {
      const frames = plan.map((p, i) => rs[i].client.frame(qr(p.code, p.amount)));
      const before = { statements: counter.statements, batches: counter.batches };
      const replies = await Promise.all(
        frames.map((f, i) => rs[i].client.sendFrame(f.bytes, f.sequence)),
      );
      assert.ok(counter.batches > before.batches, "no batch statement ran");
      const twice = replies.slice(8, 10).map(status).sort();
      assert.deepEqual(twice, [Status.Ok, Status.CodeUsed].sort());
      assert.deepEqual(
        replies.map(status).filter((_, i) => i < 8 || i > 9),
        plan.filter((_, i) => i < 8 || i > 9).map((p) => p.expect),
      );
      assert.equal((replies[1].message as { balance: number }).balance, 300);
      for (const card of good.slice(0, 4)) assert.equal(await w.balance(card.cardAccountId), 4500);
      assert.equal(await w.balance(good[4].cardAccountId), 4300);
      assert.equal(await w.balance(good[5].cardAccountId), 4200);
      for (const card of [frozen, limited]) assert.equal(await w.balance(card.cardAccountId), 5000);
      assert.equal(await w.balance(poor.cardAccountId), 300);
      // Each reply's balance is the card's after it.
      assert.equal((replies[0].message as { balance: number }).balance, 4500);
      assert.equal((replies[10].message as { balance: number }).balance, 4200);
      // The 付款码 page hears of each redemption once, with where it paid.
      const paidCodes = [0, 1, 2, 3, 4, 5].map((i) => goodCodes[i]).sort();
      assert.deepEqual(heard.map((e) => e.code).sort(), paidCodes);
      assert.ok(heard.every((e) => e.merchantName === "测试食堂"));
      // Refusals are recorded with their own reply, and a retry of each gets the stored bytes.
      const again = await Promise.all(
        frames.map((f, i) => rs[i].client.sendFrame(f.bytes, f.sequence)),
      );
      again.forEach((r, i) => assert.deepEqual(r.bytes, replies[i].bytes));
      // The poor code stays usable for what the card holds.
      assert.equal(
        status(await rs[0].client.request(qr(poorCode, 300))),
        Status.Ok,
      );
      assert.equal(await w.balance(poor.cardAccountId), 0);
      const codes = await w.db.selectFrom("payment_codes").select(["code", "transfer_id"])
        .where("used_at", "is not", null).execute();
      assert.equal(codes.length, 1 + 6 + 1);
      assert.ok(codes.every((c) => c.transfer_id !== null));
      assert.deepEqual((await verifyLedger(w.db)).problems, []);
    } finally {
      off();
      for (const r of rs) await r.client.close();
    }
  }));

Deno.test("a code scanned at once on two instances, in batches with other codes, is charged once and the others still pay", () =>
  withServer(async (w, server) => {
    const scanner = await w.connect("qr_scanner");
    const warm = await w.card({ balance: 100 });
    const warmCode = (await issuePaymentCode(w.db, warm.cardAccountId)).code;
    assert.equal(status(await scanner.request(qr(warmCode, 1))), Status.Ok);
    // A second instance on the same database has its own batches: only the unique code of a
    // transfer stops the second redemption, failing its whole batch, whose others then pay the
    // ordinary way.
    const other = startTerminalServer({ db: w.db, config: w.config }, {
      port: 0,
      hostname: "127.0.0.1",
    });
    const here = await readers(w, server, 6, "qr_scanner");
    const there = (await readers(w, other, 6, "qr_scanner")).map((r) => r.client);
    try {
      for (let round = 0; round < 4; round++) {
        const cards = await Promise.all(here.map(() => w.card({ balance: 3000 })));
        const codes = await Promise.all(
          cards.map(async (c) => (await issuePaymentCode(w.db, c.cardAccountId)).code),
        );
        // Code i is scanned by reader i here and by reader (i + 5) % 6 there.
        const [mine, theirs] = await Promise.all([
          Promise.all(here.map((r, i) => r.client.request(qr(codes[i], 400)))),
          Promise.all(there.map((c, i) => c.request(qr(codes[(i + 1) % 6], 400)))),
        ]);
        for (let i = 0; i < 6; i++) {
          const a = mine[i];
          const b = theirs[(i + 5) % 6];
          assert.deepEqual(
            [status(a), status(b)].sort(),
            [Status.Ok, Status.CodeUsed].sort(),
            `round ${round}, code ${i}`,
          );
          assert.equal(await w.balance(cards[i].cardAccountId), 2600);
        }
      }
      assert.deepEqual((await verifyLedger(w.db)).problems, []);
    } finally {
      for (const c of there) await c.close();
      for (const r of here) await r.client.close();
      await other.close();
    }
  }));

Deno.test("a request refused, then retried once the card could pay, is answered from its record and leaves the rest of its batch to pay", () =>
  withServer(async (w, server, counter) => {
    const warm = await w.card({ balance: 100 });
    const pos = await w.connect("canteen_pos");
    assert.equal(status(await pos.request(pay(warm.chip, 1))), Status.Ok);
    const poor = await w.card({ balance: 100 });
    const cards = await Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map(() => w.card({ balance: 5000 })));
    const rs = await readers(w, server, cards.length + 1);
    try {
      const refusedFrame = rs[0].client.frame(pay(poor.chip, 500));
      const refused = await rs[0].client.sendFrame(refusedFrame.bytes, refusedFrame.sequence);
      assert.equal(status(refused), Status.InsufficientBalance);
      await adjustBalance(w.db, {
        cardAccountId: poor.cardAccountId,
        amount: 10_000,
        reference: `adj-${crypto.randomUUID()}`,
        reason: "test",
        staffId: null,
      });
      for (let round = 0; round < 3; round++) {
        const frames = cards.map((c, i) => rs[i + 1].client.frame(pay(c.chip, 100)));
        const before = counter.statements;
        const [replies, retried] = await Promise.all([
          Promise.all(frames.map((f, i) => rs[i + 1].client.sendFrame(f.bytes, f.sequence))),
          rs[0].client.sendFrame(refusedFrame.bytes, refusedFrame.sequence),
        ]);
        assert.deepEqual(replies.map(status), cards.map(() => Status.Ok));
        // The retry gets the recorded refusal, byte for byte, and moves nothing.
        assert.deepEqual(retried.bytes, refused.bytes);
        // The others paid in batches: had the retry failed its batch, each would have gone the
        // ordinary way (a few statements each).
        assert.ok(
          counter.statements - before < cards.length,
          `${counter.statements - before} statements for ${cards.length} payments and a retry`,
        );
      }
      assert.equal(await w.balance(poor.cardAccountId), 10_100);
      for (const c of cards) assert.equal(await w.balance(c.cardAccountId), 4700);
      assert.deepEqual((await verifyLedger(w.db)).problems, []);
    } finally {
      for (const r of rs) await r.client.close();
    }
  }));
