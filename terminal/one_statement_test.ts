/**
 * The one-statement way of QR payments and shower start/end (`inOneStatement` of their
 * `MoneyRequest`): an approved request is one statement (money and record together), and
 * everything else is answered the ordinary way exactly as before.
 */
import assert from "node:assert/strict";
import type { KyselyPlugin, PluginTransformQueryArgs, PluginTransformResultArgs } from "kysely";
import { sql } from "kysely";
import type { Db } from "../modules/platform/database.ts";
import { registerTerminal } from "../modules/merchant/mod.ts";
import { createStaff } from "../modules/staff/mod.ts";
import { staffReportLoss } from "../modules/card/mod.ts";
import {
  adjustBalance,
  type CodeRedeemed,
  getBalance,
  issuePaymentCode,
  onPaymentCodeRedeemed,
  updatePaySettings,
  verifyLedger,
} from "../modules/wallet/mod.ts";
import { type Message, MessageCode, Status } from "./messages.ts";
import { startTerminalServer, type TerminalServer } from "./mod.ts";
import { serializeBody } from "./serializer.ts";
import { keyFromHex, type Received, TerminalClient } from "./sim/client.ts";
import { setupWorld, type World } from "./_test_support.ts";

/**
 * Counts the statements the server sends for requests: the reader's liveness write (at most once
 * per 30 s per connection, whenever it falls due) and the push loop's poll of the blocklist
 * version (once a second, landing inside a request on a slow machine) are not part of any.
 */
class StatementCounter implements KyselyPlugin {
  statements = 0;
  seen: string[] = [];
  /** Group-committed shower starts and ends (batch statements, of any size). */
  showerBatches = 0;
  transformQuery(args: PluginTransformQueryArgs) {
    const node = JSON.stringify(args.node);
    if (node.includes("expires_at, ord)") || node.includes("nth_of_card")) this.showerBatches++;
    const liveness = args.node.kind === "UpdateQueryNode" &&
      JSON.stringify(args.node.table).includes(`"name":"terminals"`);
    const poll = args.node.kind === "SelectQueryNode" &&
      JSON.stringify(args.node.from).includes(`"name":"card_blocklist_head"`);
    if (!liveness && !poll) {
      this.statements++;
      this.seen.push(node.slice(0, 160));
    }
    return args.node;
  }
  /** Starts counting afresh. */
  reset(): void {
    this.statements = 0;
    this.showerBatches = 0;
    this.seen = [];
  }
  transformResult(args: PluginTransformResultArgs) {
    return Promise.resolve(args.result);
  }
}

interface Harness {
  w: World;
  server: TerminalServer;
  counter: StatementCounter;
  /**
   * A signed-on reader of the world's terminal of `kind`. A twin (the same terminal, as after a
   * reconnect while its first connection still works) is on a second server instance: one
   * instance serves a terminal on one connection.
   */
  reader(kind: "qr_scanner" | "shower", options?: { twin?: boolean }): Promise<TerminalClient>;
}

async function withHarness(fn: (h: Harness) => Promise<void>): Promise<void> {
  const w = await setupWorld();
  const counter = new StatementCounter();
  const server = startTerminalServer({ db: w.db.withPlugin(counter) as Db, config: w.config }, {
    port: 0,
    hostname: "127.0.0.1",
    registryTtlMs: 600_000,
  });
  let second: TerminalServer | null = null;
  const clients: TerminalClient[] = [];
  try {
    await fn({
      w,
      server,
      counter,
      async reader(kind, options = {}) {
        const t = w.terminals[kind];
        if (options.twin && !second) {
          second = startTerminalServer({ db: w.db, config: w.config }, {
            port: 0,
            hostname: "127.0.0.1",
          });
        }
        const c = await TerminalClient.connect({
          port: options.twin ? second!.port : server.port,
          terminalId: t.id,
          key: t.key,
        });
        clients.push(c);
        const on = await c.request({ code: MessageCode.SignOn, firmware: "t" });
        assert.equal(status(on), Status.Ok);
        return c;
      },
    });
    assert.deepEqual((await verifyLedger(w.db)).problems, []);
  } finally {
    for (const c of clients) await c.close();
    await server.close();
    await (second as TerminalServer | null)?.close();
    await w.close();
  }
}

function status(r: Received): number {
  return (r.message as { status: number }).status;
}

/**
 * A first payment at the reader's merchant: its ledger account is created on first use, by the
 * ordinary path.
 */
async function warm(w: World, c: TerminalClient): Promise<void> {
  const card = await w.card({ balance: 1000 });
  if (c.terminalId === w.terminals.shower.id) {
    const start = await c.request({ code: MessageCode.ShowerStart, chip: card.chip });
    const holdId = (start.message as { holdId: number }).holdId;
    assert.equal(
      status(await c.request({ code: MessageCode.ShowerEnd, holdId, units: 1 })),
      Status.Ok,
    );
  } else {
    const { code } = await issuePaymentCode(w.db, card.cardAccountId);
    assert.equal(status(await c.request(qr(code, 1))), Status.Ok);
  }
}

function qr(code: string, amount: number): Message {
  return { code: MessageCode.QrPayment, paymentCode: code, amount };
}

async function transfers(
  db: Db,
  cardAccountId: number,
  kind: "purchase" | "shower",
): Promise<number> {
  const r = await db.selectFrom("ledger_transfers").select((eb) => eb.fn.countAll<number>().as("n"))
    .where("card_account_id", "=", cardAccountId).where("kind", "=", kind)
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

async function held(db: Db, cardAccountId: number): Promise<number> {
  const r = await db.selectFrom("ledger_accounts").select("held")
    .where("card_account_id", "=", cardAccountId).executeTakeFirstOrThrow();
  return r.held;
}

/** The reply bytes stored for (terminal, sequence). */
async function storedReply(db: Db, terminalId: number, sequence: number): Promise<Uint8Array> {
  const r = await db.selectFrom("terminal_requests").select("reply")
    .where("terminal_id", "=", terminalId).where("sequence", "=", sequence)
    .executeTakeFirstOrThrow();
  return new Uint8Array(r.reply);
}

Deno.test("an approved QR payment is one statement, and the student's 付款码 page hears of it at once", () =>
  withHarness(async ({ w, counter, reader }) => {
    const scanner = await reader("qr_scanner");
    await warm(w, scanner);
    const card = await w.card({ balance: 3000 });
    const { code } = await issuePaymentCode(w.db, card.cardAccountId);
    const heard: CodeRedeemed[] = [];
    const off = onPaymentCodeRedeemed((e) => heard.push(e));
    try {
      counter.reset();
      const r = await scanner.request(qr(code, 800));
      assert.equal(counter.statements, 1, counter.seen.join("\n"));
      assert.deepEqual(r.message, {
        code: MessageCode.QrPaymentReply,
        status: Status.Ok,
        amount: 800,
        balance: 2200,
      });
      assert.deepEqual(
        heard.map((e) => [e.code, e.amount, e.merchantName, e.balanceAfter]),
        [[code, 800, "测试食堂", 2200]],
      );
      assert.equal(await w.balance(card.cardAccountId), 2200);
      // The record holds the reply with the balance in its place, and a retry gets it back.
      const again = await scanner.request(qr(code, 800), { sequence: r.header.sequence });
      assert.deepEqual(again.bytes, r.bytes);
      const used = await scanner.request(qr(code, 800));
      assert.equal(status(used), Status.CodeUsed);
      assert.equal(await w.balance(card.cardAccountId), 2200);
      assert.equal(await transfers(w.db, card.cardAccountId, "purchase"), 1);
    } finally {
      off();
    }
  }));

Deno.test("a code scanned at two readers at once is charged once", () =>
  withHarness(async ({ w, server, reader }) => {
    const second = await registerTerminal(w.db, w.config.appSecret, {
      merchantId: w.terminals.qr_scanner.merchantId,
      kind: "qr_scanner",
      name: "第二台扫码器",
    });
    const other = await TerminalClient.connect({
      port: server.port,
      terminalId: second.terminal.id,
      key: keyFromHex(second.keyHex),
    });
    try {
      const scanner = await reader("qr_scanner");
      for (let round = 0; round < 5; round++) {
        const card = await w.card({ balance: 3000 });
        const { code } = await issuePaymentCode(w.db, card.cardAccountId);
        const [a, b] = await Promise.all([
          scanner.request(qr(code, 500)),
          other.request(qr(code, 500)),
        ]);
        assert.deepEqual([status(a), status(b)].sort(), [Status.Ok, Status.CodeUsed].sort());
        assert.equal(await w.balance(card.cardAccountId), 2500);
        assert.equal(await transfers(w.db, card.cardAccountId, "purchase"), 1);
      }
    } finally {
      await other.close();
    }
  }));

Deno.test("a QR retry racing its first request gets the same reply bytes and is charged once", () =>
  withHarness(async ({ w, reader }) => {
    const scanner = await reader("qr_scanner");
    const twin = await reader("qr_scanner", { twin: true });
    for (let round = 0; round < 5; round++) {
      const card = await w.card({ balance: 3000 });
      const { code } = await issuePaymentCode(w.db, card.cardAccountId);
      const frame = scanner.frame(qr(code, 700));
      const [a, b] = await Promise.all([
        scanner.sendFrame(frame.bytes, frame.sequence),
        twin.sendFrame(frame.bytes, frame.sequence),
      ]);
      assert.equal(status(a), Status.Ok);
      assert.deepEqual(b.bytes, a.bytes);
      assert.equal(await w.balance(card.cardAccountId), 2300);
      assert.equal(await transfers(w.db, card.cardAccountId, "purchase"), 1);
    }
  }));

Deno.test("frozen, expired, over-limit and underfunded codes are refused as before, charge nothing and stay usable when only the amount was wrong", () =>
  withHarness(async ({ w, reader }) => {
    const scanner = await reader("qr_scanner");
    // Frozen together with a loss report (the card module's flag): the live code is refused.
    const frozen = await w.card({ balance: 3000 });
    const frozenCode = (await issuePaymentCode(w.db, frozen.cardAccountId)).code;
    await sql`update card_accounts set payment_code_frozen = true where id = ${frozen.cardAccountId}`
      .execute(w.db);
    assert.equal(status(await scanner.request(qr(frozenCode, 100))), Status.CodeExpired);
    assert.equal(await w.balance(frozen.cardAccountId), 3000);
    // Expired: issued two minutes ago.
    const expired = await w.card({ balance: 3000 });
    const old = await issuePaymentCode(w.db, expired.cardAccountId, new Date(Date.now() - 120_000));
    assert.equal(status(await scanner.request(qr(old.code, 100))), Status.CodeExpired);
    assert.equal(await w.balance(expired.cardAccountId), 3000);
    // The student's limits: per payment, then per day.
    const limited = await w.card({ balance: 5000 });
    await updatePaySettings(w.db, limited.cardAccountId, {
      payLimit: 500,
      dailyLimit: 900,
      codeFrozen: false,
    });
    const c1 = (await issuePaymentCode(w.db, limited.cardAccountId)).code;
    assert.equal(status(await scanner.request(qr(c1, 800))), Status.OverPaymentLimit);
    assert.equal(status(await scanner.request(qr(c1, 500))), Status.Ok);
    const c2 = (await issuePaymentCode(w.db, limited.cardAccountId)).code;
    assert.equal(status(await scanner.request(qr(c2, 500))), Status.OverDailyLimit);
    assert.equal(status(await scanner.request(qr(c2, 400))), Status.Ok);
    assert.equal(await w.balance(limited.cardAccountId), 4100);
    // Not enough money: refused with the balance, the code still good for less.
    const poor = await w.card({ balance: 300 });
    const c3 = (await issuePaymentCode(w.db, poor.cardAccountId)).code;
    const refused = await scanner.request(qr(c3, 400));
    assert.deepEqual(refused.message, {
      code: MessageCode.QrPaymentReply,
      status: Status.InsufficientBalance,
      amount: 400,
      balance: 300,
    });
    assert.equal(status(await scanner.request(qr(c3, 300))), Status.Ok);
    assert.equal(await w.balance(poor.cardAccountId), 0);
    // A refusal is recorded with its reply: the retry gets it back even though the code is used now.
    const retried = await scanner.request(qr(c3, 400), { sequence: refused.header.sequence });
    assert.deepEqual(retried.bytes, refused.bytes);
  }));

Deno.test("a shower start and end are one statement each: less than the hold is charged, the rest released", () =>
  withHarness(async ({ w, counter, reader }) => {
    const shower = await reader("shower");
    await warm(w, shower);
    const card = await w.card({ balance: 2000 });
    counter.reset();
    const start = await shower.request({ code: MessageCode.ShowerStart, chip: card.chip });
    assert.equal(counter.statements, 1, counter.seen.join("\n"));
    const s = start.message as Extract<Message, { code: 0xa0 }>;
    assert.deepEqual({ ...s, holdId: 0 }, {
      code: MessageCode.ShowerStartReply,
      status: Status.Ok,
      holdId: 0,
      authorised: 500,
      balance: 2000,
    });
    assert.ok(s.holdId > 0);
    assert.equal(await held(w.db, card.cardAccountId), 500);
    const recorded = await w.db.selectFrom("terminal_showers")
      .select(["terminal_id", "start_sequence", "card_account_id", "fen_per_unit"])
      .where("hold_id", "=", s.holdId).executeTakeFirstOrThrow();
    assert.deepEqual(recorded, {
      terminal_id: w.terminals.shower.id,
      start_sequence: start.header.sequence,
      card_account_id: card.cardAccountId,
      fen_per_unit: 3,
    });
    counter.reset();
    const end = await shower.request({ code: MessageCode.ShowerEnd, holdId: s.holdId, units: 40 });
    assert.equal(counter.statements, 1, counter.seen.join("\n"));
    assert.deepEqual(end.message, {
      code: MessageCode.ShowerEndReply,
      status: Status.Ok,
      charged: 120,
      released: 380,
      balance: 1880,
    });
    assert.equal(await w.balance(card.cardAccountId), 1880);
    assert.equal(await held(w.db, card.cardAccountId), 0);
    // Retries of each get the same bytes and move nothing.
    const t = w.terminals.shower.id;
    const startAgain = await shower.request({ code: MessageCode.ShowerStart, chip: card.chip }, {
      sequence: start.header.sequence,
    });
    assert.deepEqual(startAgain.bytes, start.bytes);
    const endAgain = await shower.request({
      code: MessageCode.ShowerEnd,
      holdId: s.holdId,
      units: 40,
    }, { sequence: end.header.sequence });
    assert.deepEqual(endAgain.bytes, end.bytes);
    assert.equal(await w.balance(card.cardAccountId), 1880);
    assert.equal(await held(w.db, card.cardAccountId), 0);
    assert.equal(await transfers(w.db, card.cardAccountId, "shower"), 1);
    // The stored replies are the bodies the reader got (the statement filled them in).
    assert.deepEqual(
      await storedReply(w.db, t, start.header.sequence),
      serializeBody(start.message),
    );
    assert.deepEqual(await storedReply(w.db, t, end.header.sequence), serializeBody(end.message));
  }));

Deno.test("a shower using more than its hold is charged the hold, and another end of it charges nothing", () =>
  withHarness(async ({ w, counter, reader }) => {
    const shower = await reader("shower");
    await warm(w, shower);
    const card = await w.card({ balance: 5000 });
    const start = await shower.request({ code: MessageCode.ShowerStart, chip: card.chip });
    const holdId = (start.message as { holdId: number }).holdId;
    counter.reset();
    const end = await shower.request({ code: MessageCode.ShowerEnd, holdId, units: 1000 });
    assert.equal(counter.statements, 1, counter.seen.join("\n"));
    assert.deepEqual(end.message, {
      code: MessageCode.ShowerEndReply,
      status: Status.Ok,
      charged: 500,
      released: 0,
      balance: 4500,
    });
    const second = await shower.request({ code: MessageCode.ShowerEnd, holdId, units: 1 });
    assert.equal(status(second), Status.HoldNotFound);
    assert.equal(await w.balance(card.cardAccountId), 4500);
    assert.equal(await held(w.db, card.cardAccountId), 0);
  }));

Deno.test("shower retries racing their first request get the same bytes; the hold and the charge happen once", () =>
  withHarness(async ({ w, reader }) => {
    const shower = await reader("shower");
    const twin = await reader("shower", { twin: true });
    for (let round = 0; round < 4; round++) {
      const card = await w.card({ balance: 2000 });
      const sf = shower.frame({ code: MessageCode.ShowerStart, chip: card.chip });
      const [a, b] = await Promise.all([
        shower.sendFrame(sf.bytes, sf.sequence),
        twin.sendFrame(sf.bytes, sf.sequence),
      ]);
      assert.equal(status(a), Status.Ok);
      assert.deepEqual(b.bytes, a.bytes);
      assert.equal(await held(w.db, card.cardAccountId), 500);
      const holdId = (a.message as { holdId: number }).holdId;
      const ef = shower.frame({ code: MessageCode.ShowerEnd, holdId, units: 10 });
      const [c, d] = await Promise.all([
        shower.sendFrame(ef.bytes, ef.sequence),
        twin.sendFrame(ef.bytes, ef.sequence),
      ]);
      assert.deepEqual(c.message, {
        code: MessageCode.ShowerEndReply,
        status: Status.Ok,
        charged: 30,
        released: 470,
        balance: 1970,
      });
      assert.deepEqual(d.bytes, c.bytes);
      assert.equal(await w.balance(card.cardAccountId), 1970);
      assert.equal(await held(w.db, card.cardAccountId), 0);
      assert.equal(await transfers(w.db, card.cardAccountId, "shower"), 1);
    }
  }));

Deno.test("shower cases off the one-statement path are answered as before", () =>
  withHarness(async ({ w, server, reader }) => {
    const shower = await reader("shower");
    // Less available than the pre-authorisation: what is there is held.
    const poor = await w.card({ balance: 300 });
    const start = await shower.request({ code: MessageCode.ShowerStart, chip: poor.chip });
    assert.deepEqual({ ...(start.message as object), holdId: 0 }, {
      code: MessageCode.ShowerStartReply,
      status: Status.Ok,
      holdId: 0,
      authorised: 300,
      balance: 300,
    });
    const holdId = (start.message as { holdId: number }).holdId;
    // No usage: nothing charged, the whole hold released.
    const none = await shower.request({ code: MessageCode.ShowerEnd, holdId, units: 0 });
    assert.deepEqual(none.message, {
      code: MessageCode.ShowerEndReply,
      status: Status.Ok,
      charged: 0,
      released: 300,
      balance: 300,
    });
    assert.equal(await held(w.db, poor.cardAccountId), 0);
    // Below ¥1 available: refused. An unknown chip: refused.
    const broke = await w.card({ balance: 50 });
    const refused = await shower.request({ code: MessageCode.ShowerStart, chip: broke.chip });
    assert.equal(status(refused), Status.InsufficientBalance);
    const unknown = await shower.request({ code: MessageCode.ShowerStart, chip: "NOSUCHCHIP" });
    assert.equal(status(unknown), Status.UnknownChip);
    // A hold another controller started is not this one's to end: refused, nothing charged.
    const card = await w.card({ balance: 2000 });
    const other = await shower.request({ code: MessageCode.ShowerStart, chip: card.chip });
    const otherHold = (other.message as { holdId: number }).holdId;
    const second = await registerTerminal(w.db, w.config.appSecret, {
      merchantId: w.terminals.shower.merchantId,
      kind: "shower",
      name: "第二台水控",
    });
    const stranger = await TerminalClient.connect({
      port: server.port,
      terminalId: second.terminal.id,
      key: keyFromHex(second.keyHex),
    });
    try {
      const foreign = await stranger.request({
        code: MessageCode.ShowerEnd,
        holdId: otherHold,
        units: 10,
      });
      assert.equal(status(foreign), Status.HoldNotFound);
    } finally {
      await stranger.close();
    }
    assert.equal(await held(w.db, card.cardAccountId), 500);
    assert.equal(await w.balance(card.cardAccountId), 2000);
  }));

Deno.test("two showers of one card ending at once keep its transfer ids in the order its balance changed", () =>
  withHarness(async ({ w, server, reader }) => {
    const shower = await reader("shower");
    await warm(w, shower);
    const second = await registerTerminal(w.db, w.config.appSecret, {
      merchantId: w.terminals.shower.merchantId,
      kind: "shower",
      name: "第二个淋浴",
    });
    const other = await TerminalClient.connect({
      port: server.port,
      terminalId: second.terminal.id,
      key: keyFromHex(second.keyHex),
    });
    try {
      assert.equal(
        status(await other.request({ code: MessageCode.SignOn, firmware: "t" })),
        Status.Ok,
      );
      for (let round = 0; round < 15; round++) {
        const card = await w.card({ balance: 5000 });
        const a = await shower.request({ code: MessageCode.ShowerStart, chip: card.chip });
        const b = await other.request({ code: MessageCode.ShowerStart, chip: card.chip });
        const [ea, eb] = await Promise.all([
          shower.request({
            code: MessageCode.ShowerEnd,
            holdId: (a.message as { holdId: number }).holdId,
            units: 10 + round,
          }),
          other.request({
            code: MessageCode.ShowerEnd,
            holdId: (b.message as { holdId: number }).holdId,
            units: 30 + round,
          }),
        ]);
        assert.equal(status(ea), Status.Ok);
        assert.equal(status(eb), Status.Ok);
        assert.equal(await w.balance(card.cardAccountId), 5000 - 3 * (40 + 2 * round));
      }
      // withHarness runs the verifier: each card's balance-after chain in id order.
    } finally {
      await other.close();
    }
  }));

/** `count` more shower controllers of the world's shower merchant, signed on to `server`. */
async function showerReaders(
  w: World,
  server: TerminalServer,
  count: number,
): Promise<TerminalClient[]> {
  const out: TerminalClient[] = [];
  for (let i = 0; i < count; i++) {
    const r = await registerTerminal(w.db, w.config.appSecret, {
      merchantId: w.terminals.shower.merchantId,
      kind: "shower",
      name: `浴室${i}`,
    });
    const c = await TerminalClient.connect({
      port: server.port,
      terminalId: r.terminal.id,
      key: keyFromHex(r.keyHex),
    });
    out.push(c);
    assert.equal(status(await c.request({ code: MessageCode.SignOn, firmware: "t" })), Status.Ok);
  }
  return out;
}

type StartReply = Extract<Message, { code: 0xa0 }>;
type EndReply = Extract<Message, { code: 0xa1 }>;

Deno.test("shower starts and ends of many readers at once share batch statements; refusals, retries and ends off the common case get the ordinary answers", () =>
  withHarness(async ({ w, server, counter, reader }) => {
    await warm(w, await reader("shower"));
    const good = await Promise.all([0, 1, 2, 3, 4].map(() => w.card({ balance: 2000 })));
    const low = await w.card({ balance: 300 });
    const poor = await w.card({ balance: 50 });
    const lost = await w.card({ balance: 2000 });
    const office = await createStaff(w.db, {
      username: `office${Math.floor(Math.random() * 1e6)}`,
      name: "一卡通中心",
      password: "Office12345",
      roles: ["card_office"],
    });
    await staffReportLoss(w.db, { staffId: office }, lost.cardAccountId);
    const plan = [
      { chip: good[0].chip, expect: Status.Ok, authorised: 500 },
      // Less than the pre-authorisation: the ordinary path holds what there is.
      { chip: low.chip, expect: Status.Ok, authorised: 300 },
      { chip: good[1].chip, expect: Status.Ok, authorised: 500 },
      { chip: poor.chip, expect: Status.InsufficientBalance, authorised: 0 },
      { chip: good[2].chip, expect: Status.Ok, authorised: 500 },
      { chip: lost.chip, expect: Status.CardLossReported, authorised: 0 },
      { chip: "NOSUCHCHIP", expect: Status.UnknownChip, authorised: 0 },
      { chip: good[3].chip, expect: Status.Ok, authorised: 500 },
      { chip: good[4].chip, expect: Status.Ok, authorised: 500 },
    ];
    const rs = await showerReaders(w, server, plan.length);
    try {
      const starts = plan.map((p, i) =>
        rs[i].frame({ code: MessageCode.ShowerStart, chip: p.chip })
      );
      counter.reset();
      const started = await Promise.all(starts.map((f, i) => rs[i].sendFrame(f.bytes, f.sequence)));
      assert.deepEqual(started.map(status), plan.map((p) => p.expect));
      assert.deepEqual(
        started.map((r) => (r.message as StartReply).authorised),
        plan.map((p) => p.authorised),
      );
      assert.ok(counter.showerBatches >= 1, "no batch statement ran");
      assert.ok(counter.showerBatches < plan.length, `${counter.showerBatches} batches`);
      for (const [i, r] of started.entries()) {
        // The reply as the reader got it is the one recorded, byte for byte.
        assert.deepEqual(
          await storedReply(w.db, rs[i].terminalId, starts[i].sequence),
          serializeBody(r.message),
        );
      }
      // Retries of every start, all at once: the same bytes, nothing held again.
      const again = await Promise.all(starts.map((f, i) => rs[i].sendFrame(f.bytes, f.sequence)));
      again.forEach((r, i) => assert.deepEqual(r.bytes, started[i].bytes));
      for (const c of good) assert.equal(await held(w.db, c.cardAccountId), 500);
      assert.equal(await held(w.db, low.cardAccountId), 300);
      assert.equal(await held(w.db, poor.cardAccountId), 0);

      // The ends, all at once: usage within and over the hold, no usage, an unknown hold.
      const units = [40, 0, 1000, 0, 7, 0, 0, 100, 1];
      const ends = plan.map((p, i) => {
        const holdId = p.expect === Status.Ok ? (started[i].message as StartReply).holdId : 987_654;
        return rs[i].frame({ code: MessageCode.ShowerEnd, holdId, units: units[i] });
      });
      counter.reset();
      const ended = await Promise.all(ends.map((f, i) => rs[i].sendFrame(f.bytes, f.sequence)));
      assert.ok(counter.showerBatches >= 1, "no batch statement ran");
      const expected = plan.map((p, i) => {
        if (p.expect !== Status.Ok) {
          return {
            code: MessageCode.ShowerEndReply,
            status: Status.HoldNotFound,
            charged: 0,
            released: 0,
            balance: 0,
          };
        }
        const charged = Math.min(units[i] * 3, p.authorised);
        return {
          code: MessageCode.ShowerEndReply,
          status: Status.Ok,
          charged,
          released: p.authorised - charged,
          balance: (p.chip === low.chip ? 300 : 2000) - charged,
        };
      });
      assert.deepEqual(ended.map((r) => r.message as EndReply), expected);
      for (const [i, r] of ended.entries()) {
        assert.deepEqual(
          await storedReply(w.db, rs[i].terminalId, ends[i].sequence),
          serializeBody(r.message),
        );
      }
      const endsAgain = await Promise.all(ends.map((f, i) => rs[i].sendFrame(f.bytes, f.sequence)));
      endsAgain.forEach((r, i) => assert.deepEqual(r.bytes, ended[i].bytes));
      for (const [i, c] of good.entries()) {
        const j = plan.findIndex((p) => p.chip === c.chip);
        assert.equal(await w.balance(c.cardAccountId), 2000 - expected[j].charged, `card ${i}`);
        assert.equal(await held(w.db, c.cardAccountId), 0);
        assert.equal(
          await transfers(w.db, c.cardAccountId, "shower"),
          expected[j].charged > 0 ? 1 : 0,
        );
      }
      assert.equal(await w.balance(low.cardAccountId), 300);
      assert.equal(await held(w.db, low.cardAccountId), 0);
      assert.equal(await w.balance(lost.cardAccountId), 2000);
    } finally {
      for (const c of rs) await c.close();
    }
  }));

Deno.test("many readers starting and ending showers at once on shared and own cards: no card goes below zero, each hold ends once, the ledger verifies", () =>
  withHarness(async ({ w, server, reader }) => {
    const here = await reader("shower");
    const twin = await reader("shower", { twin: true });
    await warm(w, here);
    const readers = 8;
    const rounds = 6;
    // Three shared cards can hold three showers each at most; the readers' own can hold all.
    const shared = await Promise.all([0, 1, 2].map(() => w.card({ balance: 1600 })));
    const own = await Promise.all(Array.from({ length: readers }, () => w.card({ balance: 5000 })));
    const cards = [...shared, ...own];
    const rs = await showerReaders(w, server, readers);
    const charged = new Map<number, number>(cards.map((c) => [c.cardAccountId, 0]));
    const ends: Array<{ holdId: number; charged: number }> = [];
    let units = 0;
    try {
      await Promise.all(rs.map(async (r, n) => {
        for (let round = 0; round < rounds; round++) {
          const card = round % 2 === 0 ? shared[(n + round) % shared.length] : own[n];
          const start = await r.request({ code: MessageCode.ShowerStart, chip: card.chip });
          const s = start.message as StartReply;
          if (s.status !== Status.Ok) {
            assert.equal(s.status, Status.InsufficientBalance);
            continue;
          }
          assert.ok(s.balance >= 0);
          const end = await r.request({
            code: MessageCode.ShowerEnd,
            holdId: s.holdId,
            units: units = (units * 7 + 13) % 251,
          });
          const e = end.message as EndReply;
          assert.equal(e.status, Status.Ok);
          assert.ok(e.balance >= 0, `balance ${e.balance}`);
          charged.set(card.cardAccountId, charged.get(card.cardAccountId)! + e.charged);
          ends.push({ holdId: s.holdId, charged: e.charged });
        }
      }));
      // And the world's controller on two instances at once, the same frames on both: each
      // start and end is done once and both connections get the same bytes.
      for (const card of shared) {
        const start = here.frame({ code: MessageCode.ShowerStart, chip: card.chip });
        const [a, b] = await Promise.all([
          here.sendFrame(start.bytes, start.sequence),
          twin.sendFrame(start.bytes, start.sequence),
        ]);
        assert.deepEqual(a.bytes, b.bytes);
        const s = a.message as StartReply;
        if (s.status !== Status.Ok) continue;
        const end = here.frame({ code: MessageCode.ShowerEnd, holdId: s.holdId, units: 50 });
        const [c, d] = await Promise.all([
          here.sendFrame(end.bytes, end.sequence),
          twin.sendFrame(end.bytes, end.sequence),
        ]);
        assert.deepEqual(c.bytes, d.bytes);
        const e = c.message as EndReply;
        charged.set(card.cardAccountId, charged.get(card.cardAccountId)! + e.charged);
        ends.push({ holdId: s.holdId, charged: e.charged });
      }
      assert.ok(ends.length >= readers * rounds / 2, `${ends.length} showers`);
      for (const c of cards) {
        const b = await getBalance(w.db, c.cardAccountId);
        const start = shared.includes(c) ? 1600 : 5000;
        assert.deepEqual(b, {
          balance: start - charged.get(c.cardAccountId)!,
          held: 0,
          available: start - charged.get(c.cardAccountId)!,
        });
      }
      // Each hold ended once: one shower transfer for each that charged, none for the others.
      const rows = await sql<{ hold: string; n: string; amount: string }>`
        select details ->> 'holdId' as hold, count(*) as n, sum(amount) as amount
        from ledger_transfers where kind = 'shower' group by 1`.execute(w.db);
      const byHold = new Map(rows.rows.map((r) => [Number(r.hold), r]));
      for (const e of ends) {
        const t = byHold.get(e.holdId);
        if (e.charged === 0) assert.equal(t, undefined);
        else assert.deepEqual([Number(t!.n), Number(t!.amount)], [1, e.charged]);
      }
      const open = await w.db.selectFrom("ledger_holds").select("id")
        .where("state", "=", "active").execute();
      assert.deepEqual(open, []);
    } finally {
      for (const c of rs) await c.close();
    }
  }));

Deno.test("a shower start or end refused, then retried once it could go through, is answered from its record and leaves the rest of its batch in one statement", () =>
  withHarness(async ({ w, server, counter, reader }) => {
    const shower = await reader("shower");
    await warm(w, shower);
    const poor = await w.card({ balance: 50 });
    const spare = await w.card({ balance: 2000 });
    const cards = await Promise.all([0, 1, 2, 3, 4, 5].map(() => w.card({ balance: 2000 })));
    const rs = await showerReaders(w, server, cards.length);
    try {
      // A start refused for funds; an end for a hold that does not exist yet.
      const startFrame = shower.frame({ code: MessageCode.ShowerStart, chip: poor.chip });
      const refusedStart = await shower.sendFrame(startFrame.bytes, startFrame.sequence);
      assert.equal(status(refusedStart), Status.InsufficientBalance);
      const last = await w.db.selectFrom("ledger_holds").select((eb) => eb.fn.max("id").as("id"))
        .executeTakeFirstOrThrow();
      const next = Number(last.id) + 1;
      const endFrame = shower.frame({ code: MessageCode.ShowerEnd, holdId: next, units: 10 });
      const refusedEnd = await shower.sendFrame(endFrame.bytes, endFrame.sequence);
      assert.equal(status(refusedEnd), Status.HoldNotFound);
      // Now both could go through: the card has money, and the hold exists (started by this
      // controller).
      await adjustBalance(w.db, {
        cardAccountId: poor.cardAccountId,
        amount: 10_000,
        reference: `adj-${crypto.randomUUID()}`,
        reason: "test",
        staffId: null,
      });
      const started = await shower.request({ code: MessageCode.ShowerStart, chip: spare.chip });
      assert.equal((started.message as StartReply).holdId, next);
      // What the two retries cost on their own: the ordinary way, answered from the record.
      let before = counter.statements;
      assert.deepEqual(
        (await shower.sendFrame(startFrame.bytes, startFrame.sequence)).bytes,
        refusedStart.bytes,
      );
      assert.deepEqual(
        (await shower.sendFrame(endFrame.bytes, endFrame.sequence)).bytes,
        refusedEnd.bytes,
      );
      const retries = counter.statements - before;
      before = counter.statements;
      const [starts, retriedStart] = await Promise.all([
        Promise.all(
          rs.map((r, i) => r.request({ code: MessageCode.ShowerStart, chip: cards[i].chip })),
        ),
        shower.sendFrame(startFrame.bytes, startFrame.sequence),
      ]);
      assert.deepEqual(starts.map(status), cards.map(() => Status.Ok));
      assert.deepEqual(retriedStart.bytes, refusedStart.bytes);
      const [ends, retriedEnd] = await Promise.all([
        Promise.all(rs.map((r, i) =>
          r.request({
            code: MessageCode.ShowerEnd,
            holdId: (starts[i].message as StartReply).holdId,
            units: 10,
          })
        )),
        shower.sendFrame(endFrame.bytes, endFrame.sequence),
      ]);
      assert.deepEqual(ends.map(status), cards.map(() => Status.Ok));
      assert.deepEqual(retriedEnd.bytes, refusedEnd.bytes);
      // The others went in batches (at most a statement each): had a retry failed its batch,
      // each of the others in it would have gone the ordinary way (several statements each).
      assert.ok(
        counter.statements - before <= retries + 2 * cards.length,
        `${counter.statements - before} statements for ${2 * cards.length} requests and the ` +
          `retries (${retries} on their own)`,
      );
      assert.equal(await w.balance(poor.cardAccountId), 10_050);
      assert.equal(await held(w.db, poor.cardAccountId), 0);
      // The hold the refused end named is still active: the retry settled nothing.
      assert.equal(await held(w.db, spare.cardAccountId), 500);
      for (const c of cards) assert.equal(await w.balance(c.cardAccountId), 1970);
    } finally {
      for (const c of rs) await c.close();
    }
  }));
