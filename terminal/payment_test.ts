import assert from "node:assert/strict";
import { sql } from "kysely";
import { createStaff } from "../modules/staff/mod.ts";
import { reissueCard, staffReportLoss } from "../modules/card/mod.ts";
import { creditTopUp, issuePaymentCode, updatePaySettings } from "../modules/wallet/mod.ts";
import { type Message, MessageCode, Status } from "./messages.ts";
import { status, withWorld, type World } from "./_test_support.ts";

async function staffId(w: World): Promise<number> {
  return await createStaff(w.db, {
    username: `office${Math.floor(Math.random() * 1e6)}`,
    name: "一卡通中心",
    password: "Office12345",
    roles: ["card_office"],
  });
}

function pay(chip: string, amount: number, password = ""): Message {
  return { code: MessageCode.CardPayment, chip, amount, password };
}

Deno.test("a card payment is approved and the reply carries the balance after", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 5000 });
    const pos = await w.connect("canteen_pos");
    const r = await pos.request(pay(card.chip, 1250));
    assert.deepEqual(r.message, {
      code: MessageCode.CardPaymentReply,
      status: Status.Ok,
      amount: 1250,
      balance: 3750,
      triesLeft: 0,
      retryAfter: 0,
    });
    assert.equal(r.header.sequence, 1);
    assert.equal(await w.balance(card.cardAccountId), 3750);
    const rows = await w.db.selectFrom("terminal_requests").select(["sequence", "status", "amount"])
      .execute();
    assert.deepEqual(rows, [{ sequence: 1, status: 0, amount: 1250 }]);
  }));

Deno.test("card payments are refused with a distinct status for each reason, and move nothing", () =>
  withWorld(async (w) => {
    const pos = await w.connect("canteen_pos");
    const rich = await w.card({ balance: 100_000 });
    const poor = await w.card({ balance: 300 });
    const expect = async (m: Message, code: number, fields: Record<string, number> = {}) => {
      const r = await pos.request(m);
      assert.equal(status(r.message), code, JSON.stringify(r.message));
      for (const [k, v] of Object.entries(fields)) {
        assert.equal((r.message as unknown as Record<string, number>)[k], v, k);
      }
    };
    await expect(pay("NOSUCHCHIP", 100), Status.UnknownChip);
    await expect(pay(poor.chip, 500), Status.InsufficientBalance, { balance: 300 });
    await expect(pay(rich.chip, 0), Status.InvalidAmount);
    await expect(pay(rich.chip, 2500), Status.PasswordRequired);
    await expect(pay(rich.chip, 2500, "000000"), Status.WrongPassword, { triesLeft: 4 });
    for (let i = 3; i >= 1; i--) {
      await expect(pay(rich.chip, 2500, "000000"), Status.WrongPassword, { triesLeft: i });
    }
    const locked = await pos.request(pay(rich.chip, 2500, "000000"));
    assert.equal(status(locked.message), Status.PasswordLocked);
    // PROTOCOL.md §4.3: locked until 30 minutes after the first wrong password.
    const retryAfter = (locked.message as { retryAfter: number }).retryAfter;
    assert.ok(retryAfter > 1700 && retryAfter <= 1800, `retryAfter ${retryAfter}`);
    // Even the right password waits out the lock.
    await expect(pay(rich.chip, 2500, rich.password), Status.PasswordLocked);
    await updatePaySettings(w.db, rich.cardAccountId, {
      payLimit: 1000,
      dailyLimit: 1500,
      codeFrozen: false,
    });
    await expect(pay(rich.chip, 1200), Status.OverPaymentLimit);
    await expect(pay(rich.chip, 900), Status.Ok);
    await expect(pay(rich.chip, 900), Status.OverDailyLimit);
    assert.equal(await w.balance(rich.cardAccountId), 100_000 - 900);
    assert.equal(await w.balance(poor.cardAccountId), 300);

    const office = await staffId(w);
    const lost = await w.card({ balance: 5000 });
    await staffReportLoss(w.db, { staffId: office }, lost.cardAccountId);
    await expect(pay(lost.chip, 100), Status.CardLossReported);
    const reissued = await w.card({ balance: 5000 });
    await reissueCard(
      w.db,
      { staffId: office },
      reissued.cardAccountId,
      `N${reissued.chip}`.slice(0, 20),
    );
    await expect(pay(reissued.chip, 100), Status.ChipCancelled);
    assert.equal(await w.balance(lost.cardAccountId), 5000);
    assert.equal(await w.balance(reissued.cardAccountId), 5000);
    // Twelve refusals after a chip lookup: more than the default allowance of ten (§4.5).
  }, { limits: { lookupsPerMinute: 100 } }));

Deno.test("the right card password above the threshold pays", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 10_000 });
    const pos = await w.connect("supermarket_pos");
    const r = await pos.request(pay(card.chip, 3000, card.password));
    assert.equal(status(r.message), Status.Ok);
    assert.equal(await w.balance(card.cardAccountId), 7000);
  }));

Deno.test("a lost reply retried gets the same bytes and debits once, even on a new connection", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 5000 });
    const pos = await w.connect("canteen_pos", { sequence: 500 });
    const { bytes, sequence } = pos.frame(pay(card.chip, 800));
    const first = await pos.sendFrame(bytes, sequence);
    const again = await pos.sendFrame(bytes, sequence);
    assert.deepEqual(again.bytes, first.bytes);
    await pos.close();
    // The reader's counter carries on after its reconnect (§3).
    const other = await w.connect("canteen_pos", { sequence: sequence + 1 });
    // Rebuilt with a later timestamp: still the first reply, byte for byte.
    const rebuilt = other.frame(pay(card.chip, 800), {
      sequence,
      timestamp: Math.floor(Date.now() / 1000) + 5,
    });
    const third = await other.sendFrame(rebuilt.bytes, sequence);
    assert.deepEqual(third.bytes, first.bytes);
    assert.equal(await w.balance(card.cardAccountId), 4200);
    // A refusal is recorded too: topping up does not turn a retry into a debit.
    const poor = await w.card({ balance: 100 });
    const refused = other.frame(pay(poor.chip, 500));
    const r1 = await other.sendFrame(refused.bytes, refused.sequence);
    assert.equal(status(r1.message), Status.InsufficientBalance);
    await w.card({ balance: 0 });
    const r2 = await other.sendFrame(refused.bytes, refused.sequence);
    assert.deepEqual(r2.bytes, r1.bytes);
  }));

Deno.test("a refused payment retried after a top-up stays refused and moves nothing", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 100 });
    const pos = await w.connect("canteen_pos");
    const { bytes, sequence } = pos.frame(pay(card.chip, 500));
    const first = await pos.sendFrame(bytes, sequence);
    assert.equal(status(first.message), Status.InsufficientBalance);
    await creditTopUp(w.db, {
      cardAccountId: card.cardAccountId,
      amount: 1000,
      method: "sandbox",
      reference: `test-topup-${sequence}`,
    });
    const again = await pos.sendFrame(bytes, sequence);
    assert.deepEqual(again.bytes, first.bytes);
    assert.equal(await w.balance(card.cardAccountId), 1100);
    const rows = await w.db.selectFrom("ledger_transfers").select("reference")
      .where("kind", "=", "purchase").execute();
    assert.deepEqual(rows, []);
  }));

Deno.test("the same sequence number with a different body is refused and moves nothing", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 5000 });
    const pos = await w.connect("canteen_pos");
    await pos.request(pay(card.chip, 100), { sequence: 9 });
    const r = await pos.request(pay(card.chip, 4000), { sequence: 9 });
    assert.deepEqual({ code: r.message.code, status: status(r.message) }, {
      code: MessageCode.Error,
      status: Status.SequenceReused,
    });
    assert.equal(await w.balance(card.cardAccountId), 4900);
  }));

Deno.test("offline uploads apply in order exactly once, skip duplicates, wait at gaps, and may overdraw", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 1000 });
    const pos = await w.connect("canteen_pos");
    const rec = (n: number, amount: number, chip = card.chip) => ({
      offlineSequence: n,
      occurredAt: Math.floor(Date.now() / 1000) - 600,
      chip,
      amount,
    });
    const up = async (records: ReturnType<typeof rec>[]) =>
      (await pos.request({ code: MessageCode.OfflineUpload, records })).message;
    assert.deepEqual(await up([rec(1, 300), rec(2, 300)]), {
      code: MessageCode.OfflineUploadReply,
      status: Status.Ok,
      ackedSequence: 2,
      applied: 2,
      duplicates: 0,
    });
    // 2 again (duplicate), 3 applied, 5 after the gap at 4 waits.
    assert.deepEqual(await up([rec(2, 300), rec(3, 300), rec(5, 300)]), {
      code: MessageCode.OfflineUploadReply,
      status: Status.Ok,
      ackedSequence: 3,
      applied: 1,
      duplicates: 1,
    });
    assert.equal(await w.balance(card.cardAccountId), 100);
    // The gap filled: 4 and 5 apply, taking the balance below zero; an unknown chip is consumed
    // (acknowledged) but not charged, so it is not counted as applied.
    assert.deepEqual(await up([rec(5, 300), rec(4, 300), rec(6, 50, "NOSUCHCHIP")]), {
      code: MessageCode.OfflineUploadReply,
      status: Status.Ok,
      ackedSequence: 6,
      applied: 2,
      duplicates: 0,
    });
    assert.equal(await w.balance(card.cardAccountId), -500);
    // Negative: refused online until topped up.
    const online = await pos.request(pay(card.chip, 100));
    assert.equal(status(online.message), Status.InsufficientBalance);
    assert.equal((online.message as { balance: number }).balance, -500);
    const outcomes = await w.db.selectFrom("terminal_offline_records").select([
      "offline_sequence",
      "outcome",
    ]).orderBy("offline_sequence").execute();
    assert.deepEqual(outcomes.map((o) => o.outcome), [
      "applied",
      "applied",
      "applied",
      "applied",
      "applied",
      "held",
    ]);
  }));

Deno.test("a QR payment redeems the student's code once", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 3000 });
    const scanner = await w.connect("qr_scanner");
    const { code } = await issuePaymentCode(w.db, card.cardAccountId);
    const r = await scanner.request({
      code: MessageCode.QrPayment,
      paymentCode: code,
      amount: 800,
    });
    assert.deepEqual(r.message, {
      code: MessageCode.QrPaymentReply,
      status: Status.Ok,
      amount: 800,
      balance: 2200,
    });
    const again = await scanner.request({
      code: MessageCode.QrPayment,
      paymentCode: code,
      amount: 800,
    });
    assert.equal(status(again.message), Status.CodeUsed);
    const bogus = await scanner.request({
      code: MessageCode.QrPayment,
      paymentCode: "123456",
      amount: 800,
    });
    assert.equal(status(bogus.message), Status.CodeInvalid);
    assert.equal(await w.balance(card.cardAccountId), 2200);
  }));

Deno.test("balance inquiry shows balance, available and a masked name", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 4321, name: "欧阳明月" });
    const pos = await w.connect("canteen_pos");
    const r = await pos.request({ code: MessageCode.BalanceInquiry, chip: card.chip });
    assert.deepEqual(r.message, {
      code: MessageCode.BalanceInquiryReply,
      status: Status.Ok,
      balance: 4321,
      available: 4321,
      name: "欧**月",
    });
    const none = await pos.request({ code: MessageCode.BalanceInquiry, chip: "NOSUCHCHIP" });
    assert.equal(status(none.message), Status.UnknownChip);
  }));

Deno.test("a shower holds the pre-authorisation, charges the usage at the start's tariff and releases the rest", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 2000 });
    const shower = await w.connect("shower");
    const start = await shower.request({ code: MessageCode.ShowerStart, chip: card.chip });
    const s = start.message as Extract<Message, { code: 0xa0 }>;
    assert.equal(s.status, Status.Ok);
    assert.equal(s.authorised, 500);
    assert.equal(s.balance, 2000);
    const held = await w.db.selectFrom("ledger_accounts").select("held").where(
      "card_account_id",
      "=",
      card.cardAccountId,
    ).executeTakeFirstOrThrow();
    assert.equal(held.held, 500);
    const end = await shower.request({ code: MessageCode.ShowerEnd, holdId: s.holdId, units: 40 });
    assert.deepEqual(end.message, {
      code: MessageCode.ShowerEndReply,
      status: Status.Ok,
      charged: 120,
      released: 380,
      balance: 1880,
    });
    // Another end for the same hold under a new sequence number does not charge again.
    const twice = await shower.request({
      code: MessageCode.ShowerEnd,
      holdId: s.holdId,
      units: 40,
    });
    assert.equal(status(twice.message), Status.HoldNotFound);
    const foreign = await shower.request({ code: MessageCode.ShowerEnd, holdId: 999999, units: 1 });
    assert.equal(status(foreign.message), Status.HoldNotFound);
    assert.equal(await w.balance(card.cardAccountId), 1880);
    // Reversing a start releases its hold.
    const second = await shower.request({ code: MessageCode.ShowerStart, chip: card.chip });
    const rev = await shower.request({
      code: MessageCode.Reversal,
      originalSequence: second.header.sequence,
    });
    assert.equal((rev.message as { amount: number }).amount, 500);
    const after = await w.db.selectFrom("ledger_accounts").select("held").where(
      "card_account_id",
      "=",
      card.cardAccountId,
    ).executeTakeFirstOrThrow();
    assert.equal(after.held, 0);
  }));

Deno.test("sign-on gives merchant, blocklist version and parameters; heartbeat carries the missing blocklist", () =>
  withWorld(async (w) => {
    const shower = await w.connect("shower");
    const on = (await shower.request({ code: MessageCode.SignOn, firmware: "t" }))
      .message as Extract<Message, { code: 0x81 }>;
    assert.equal(on.status, Status.Ok);
    assert.equal(on.merchantName, "测试热水");
    assert.equal(on.passwordThreshold, 2000);
    assert.deepEqual([on.showerUnitPrice, on.showerUnit, on.showerHoldAmount], [3, "liter", 500]);
    assert.ok(Math.abs(on.serverTime - Date.now() / 1000) < 5);
    const card = await w.card({ balance: 100 });
    await staffReportLoss(w.db, { staffId: await staffId(w) }, card.cardAccountId);
    const hb = (await shower.request({
      code: MessageCode.Heartbeat,
      blocklistVersion: on.blocklistVersion,
      offlineCount: 2,
    })).message as Extract<Message, { code: 0x82 }>;
    assert.equal(hb.uploadOffline, true);
    assert.deepEqual(hb.blocklist.added, [card.chip]);
    assert.equal(hb.blocklist.complete, true);
    assert.ok(hb.blocklist.version > on.blocklistVersion);
    const sync = (await shower.request({ code: MessageCode.BlocklistSync, fromVersion: 0 }))
      .message as Extract<Message, { code: 0xc0 }>;
    assert.ok(sync.blocklist.added.includes(card.chip));
    const start = await shower.request({ code: MessageCode.ShowerStart, chip: card.chip });
    assert.equal(status(start.message), Status.CardLossReported);
  }));

Deno.test("a loss report reaches a connected reader within a second, pushed", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 100 });
    const pos = await w.connect("canteen_pos");
    await pos.request({ code: MessageCode.SignOn, firmware: "t" });
    const pushed = new Promise<{ m: Message; at: number }>((resolve) =>
      pos.onPush((r) => resolve({ m: r.message, at: performance.now() }))
    );
    const office = await staffId(w);
    const t0 = performance.now();
    await staffReportLoss(w.db, { staffId: office }, card.cardAccountId);
    const { m, at } = await pushed;
    assert.ok(at - t0 < 1000, `took ${at - t0} ms`);
    assert.equal(m.code, MessageCode.BlocklistPush);
    assert.deepEqual((m as Extract<Message, { code: 0xc1 }>).blocklist.added, [card.chip]);
  }));

Deno.test("loss reports one after another reach a reader in pushes that follow on from each other, each chip once, up to the last version", () =>
  withWorld(async (w) => {
    const cards = await Promise.all(Array.from({ length: 12 }, () => w.card({ balance: 100 })));
    const pos = await w.connect("canteen_pos");
    const on = (await pos.request({ code: MessageCode.SignOn, firmware: "t" })).message as {
      blocklistVersion: number;
    };
    const pushes: Array<Extract<Message, { code: 0xc1 }>> = [];
    pos.onPush((r) => pushes.push(r.message as Extract<Message, { code: 0xc1 }>));
    const office = await staffId(w);
    // One after another, as a 毕业离校 batch closes cards.
    for (const c of cards) await staffReportLoss(w.db, { staffId: office }, c.cardAccountId);
    const last = on.blocklistVersion + cards.length;
    const deadline = performance.now() + 5000;
    while (pushes.at(-1)?.blocklist.version !== last && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(pushes.at(-1)?.blocklist.version, last);
    // Each push starts where the one before ended, and together they list every chip once.
    pushes.forEach((p, i) =>
      assert.equal(p.fromVersion, i === 0 ? on.blocklistVersion : pushes[i - 1].blocklist.version)
    );
    const added = pushes.flatMap((p) => p.blocklist.added).sort();
    assert.deepEqual(added, cards.map((c) => c.chip).sort());
  }));

Deno.test("a reader may only send the messages of its kind", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 1000 });
    const scanner = await w.connect("qr_scanner");
    const r = await scanner.request(pay(card.chip, 100));
    assert.deepEqual(r.message.code, MessageCode.Error);
    assert.equal(status(r.message), Status.NotAllowedForKind);
    assert.equal(await w.balance(card.cardAccountId), 1000);
  }));

Deno.test("a heartbeat at the pushed blocklist version is answered without the database; one behind gets the delta", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 100 });
    const pos = await w.connect("canteen_pos");
    const on = (await pos.request({ code: MessageCode.SignOn, firmware: "t" }))
      .message as Extract<Message, { code: 0x81 }>;
    const pushed = new Promise<Message>((resolve) => pos.onPush((r) => resolve(r.message)));
    await staffReportLoss(w.db, { staffId: await staffId(w) }, card.cardAccountId);
    // Right after the change (the push may still be on its way) the heartbeat carries it.
    const behind = (await pos.request({
      code: MessageCode.Heartbeat,
      blocklistVersion: on.blocklistVersion,
      offlineCount: 0,
    })).message as Extract<Message, { code: 0x82 }>;
    assert.deepEqual(behind.blocklist.added, [card.chip]);
    const push = (await pushed) as Extract<Message, { code: 0xc1 }>;
    assert.equal(push.blocklist.version, behind.blocklist.version);
    // Current: answered while the blocklist tables are locked away from the server.
    await w.db.transaction().execute(async (trx) => {
      await sql`lock table card_blocklist_head, card_blocklist_changes in access exclusive mode`
        .execute(trx);
      const current = await Promise.race([
        pos.request({
          code: MessageCode.Heartbeat,
          blocklistVersion: behind.blocklist.version,
          offlineCount: 0,
        }),
        new Promise<null>((resolve) => setTimeout(() => resolve(null), 3000)),
      ]);
      assert.ok(current, "a current reader's heartbeat is answered without the database");
      const m = current.message as Extract<Message, { code: 0x82 }>;
      assert.equal(m.status, Status.Ok);
      assert.deepEqual(m.blocklist, {
        version: behind.blocklist.version,
        complete: true,
        added: [],
        removed: [],
      });
    });
  }));
