import assert from "node:assert/strict";
import { createStaff } from "../modules/staff/mod.ts";
import { reissueCard, staffReportLoss } from "../modules/card/mod.ts";
import { closeCardWithPayout } from "../modules/wallet/mod.ts";
import { acceptOfflineReview } from "../modules/finance/mod.ts";
import { type Message, MessageCode, type OfflineRecord, Status } from "./messages.ts";
import { sealFrame, serializeBody } from "./serializer.ts";
import type { TerminalClient } from "./sim/client.ts";
import { withWorld, type World } from "./_test_support.ts";

const now = () => Math.floor(Date.now() / 1000);

function rec(n: number, chip: string, amount: number, occurredAt = now() - 600): OfflineRecord {
  return { offlineSequence: n, occurredAt, chip, amount };
}

type Itemized = Extract<Message, { code: 0xd1 }>;

async function upload(pos: TerminalClient, records: OfflineRecord[]): Promise<Itemized> {
  return (await pos.request({ code: MessageCode.OfflineUploadItemized, records }))
    .message as Itemized;
}

async function reviews(w: World) {
  return await w.db.selectFrom("finance_offline_reviews")
    .select([
      "reference",
      "terminal_id",
      "merchant_name",
      "chip",
      "card_account_id",
      "amount",
      "reason",
      "state",
    ])
    .orderBy("id").execute();
}

/** What merchants were paid, in fen. */
async function merchantsCredited(w: World): Promise<number> {
  const row = await w.db.selectFrom("ledger_transfers").select((eb) =>
    eb.fn.coalesce(eb.fn.sum<number>("amount"), eb.lit(0)).as("total")
  ).where("kind", "=", "purchase").where("merchant_id", "is not", null)
    .executeTakeFirstOrThrow();
  return Number(row.total);
}

async function officeActor(w: World) {
  const staffId = await createStaff(w.db, {
    username: `office${Math.floor(Math.random() * 1e6)}`,
    name: "一卡通中心",
    password: "Office12345",
    roles: ["card_office"],
  });
  return { staffId };
}

/** The reader says it holds the current blocklist (a heartbeat at the version it was given). */
async function acknowledgeBlocklist(pos: TerminalClient): Promise<number> {
  const behind = (await pos.request({
    code: MessageCode.Heartbeat,
    blocklistVersion: 0,
    offlineCount: 1,
  })).message as Extract<Message, { code: 0x82 }>;
  await pos.request({
    code: MessageCode.Heartbeat,
    blocklistVersion: behind.blocklist.version,
    offlineCount: 1,
  });
  return behind.blocklist.version;
}

Deno.test("a 5,000.00 record for another student's chip dated 2096 is acknowledged, charged nothing and filed for finance", () =>
  withWorld(async (w) => {
    const victim = await w.card({ balance: 20000 });
    const pos = await w.connect("supermarket_pos");
    const occurredAt = Math.floor(Date.UTC(2096, 0, 1) / 1000);
    const r = await upload(pos, [rec(1, victim.chip, 500000, occurredAt)]);
    assert.deepEqual(r, {
      code: MessageCode.OfflineUploadItemizedReply,
      status: Status.Ok,
      ackedSequence: 1,
      duplicates: 0,
      results: [{ offlineSequence: 1, result: Status.OfflineOverPaymentLimit, charged: 0 }],
    });
    assert.equal(await w.balance(victim.cardAccountId), 20000);
    assert.equal(await merchantsCredited(w), 0);
    assert.deepEqual(await reviews(w), [{
      reference: `T${w.terminals.supermarket_pos.id}:O1`,
      terminal_id: w.terminals.supermarket_pos.id,
      merchant_name: "测试超市",
      chip: victim.chip,
      card_account_id: victim.cardAccountId,
      amount: 500000,
      reason: "over_payment_limit",
      state: "pending",
    }]);
    // Sent again under a new request: a duplicate, with the result it got the first time.
    const again = await upload(pos, [rec(1, victim.chip, 500000, occurredAt)]);
    assert.equal(again.duplicates, 1);
    assert.deepEqual(again.results, r.results);
    assert.equal((await reviews(w)).length, 1);
  }));

Deno.test("an absurd 200,000,000-fen record is not counted as applied in a version-1 reply", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 1000 });
    const pos = await w.connect("canteen_pos");
    const r = await pos.request({
      code: MessageCode.OfflineUpload,
      records: [rec(1, card.chip, 200_000_000), rec(2, card.chip, 300)],
    });
    assert.deepEqual(r.message, {
      code: MessageCode.OfflineUploadReply,
      status: Status.Ok,
      ackedSequence: 2,
      applied: 1,
      duplicates: 0,
    });
    assert.equal(await w.balance(card.cardAccountId), 700);
    assert.deepEqual((await reviews(w)).map((x) => [x.amount, x.reason]), [
      [200_000_000, "over_payment_limit"],
    ]);
  }));

Deno.test("a zero amount and one above the password threshold are not charged", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 10000 });
    const pos = await w.connect("canteen_pos");
    const r = await upload(pos, [rec(1, card.chip, 0), rec(2, card.chip, 2500)]);
    assert.deepEqual(r.results, [
      { offlineSequence: 1, result: Status.InvalidAmount, charged: 0 },
      { offlineSequence: 2, result: Status.OfflinePasswordRequired, charged: 0 },
    ]);
    assert.equal(await w.balance(card.cardAccountId), 10000);
    assert.deepEqual((await reviews(w)).map((x) => x.reason), [
      "invalid_amount",
      "over_password_threshold",
    ]);
  }, { settings: { offlinePaymentLimit: 5000, passwordThreshold: 2000 } }));

Deno.test("the offline total counts what the reader held at once, across uploads, not per upload", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 5000 });
    const pos = await w.connect("canteen_pos");
    const first = await upload(pos, [
      rec(1, card.chip, 600),
      rec(2, card.chip, 600),
      rec(3, card.chip, 400),
    ]);
    assert.deepEqual(first.results.map((x) => [x.result, x.charged]), [
      [Status.Ok, 600],
      [Status.OfflineOverTotalLimit, 0],
      [Status.Ok, 400],
    ]);
    // 4 was taken together with 1–3 (before their upload): over the total. 5 was taken after 1–3
    // were acknowledged: the reader held only 4 and 5 then.
    const second = await upload(pos, [rec(4, card.chip, 100), rec(5, card.chip, 900, now() + 2)]);
    assert.deepEqual(second.results.map((x) => [x.result, x.charged]), [
      [Status.OfflineOverTotalLimit, 0],
      [Status.Ok, 900],
    ]);
    assert.equal(await w.balance(card.cardAccountId), 5000 - 600 - 400 - 900);
    assert.equal(await merchantsCredited(w), 1900);
    assert.deepEqual((await reviews(w)).map((x) => [x.amount, x.reason]), [
      [600, "over_total_limit"],
      [100, "over_total_limit"],
    ]);
  }, { settings: { offlineTotalLimit: 1000 } }));

Deno.test("a record beyond the announced record count is not charged", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 5000 });
    const pos = await w.connect("canteen_pos");
    const r = await upload(pos, [
      rec(1, card.chip, 100),
      rec(2, card.chip, 100),
      rec(3, card.chip, 100),
    ]);
    assert.deepEqual(r.results.map((x) => x.result), [
      Status.Ok,
      Status.Ok,
      Status.OfflineOverRecordLimit,
    ]);
    assert.equal(await w.balance(card.cardAccountId), 4800);
    assert.deepEqual((await reviews(w)).map((x) => x.reason), ["over_record_limit"]);
  }, { settings: { offlineMaxRecords: 2 } }));

Deno.test("a record dated after its upload (beyond the clock window) or older than the stated age is not charged", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 5000 });
    const pos = await w.connect("canteen_pos");
    const r = await upload(pos, [
      rec(1, card.chip, 100, now() + 400),
      rec(2, card.chip, 100, now() - 8 * 86_400),
      rec(3, card.chip, 100, now() - 6 * 86_400),
      rec(4, card.chip, 100, now() + 200),
    ]);
    assert.deepEqual(r.results.map((x) => x.result), [
      Status.OfflineTimeAhead,
      Status.OfflineTooOld,
      Status.Ok,
      Status.Ok,
    ]);
    assert.equal(await w.balance(card.cardAccountId), 4800);
    assert.deepEqual((await reviews(w)).map((x) => x.reason), ["future_time", "too_old"]);
  }));

Deno.test("a lost chip: paid before the loss is the holder's; after a blocklist version the reader held, refused", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 1000 });
    const pos = await w.connect("canteen_pos");
    await pos.request({ code: MessageCode.SignOn, firmware: "t" });
    await staffReportLoss(w.db, await officeActor(w), card.cardAccountId);
    const version = await acknowledgeBlocklist(pos);
    assert.ok(version > 0);
    const r = await upload(pos, [rec(1, card.chip, 300), rec(2, card.chip, 200, now() + 5)]);
    assert.deepEqual(r.results, [
      { offlineSequence: 1, result: Status.Ok, charged: 300 },
      { offlineSequence: 2, result: Status.ChipLost, charged: 0 },
    ]);
    assert.equal(await w.balance(card.cardAccountId), 700);
    assert.deepEqual((await reviews(w)).map((x) => [x.amount, x.reason]), [[200, "chip_lost"]]);
  }));

Deno.test("a lost chip paid after the loss but before the reader held that blocklist is left to finance", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 1000 });
    const pos = await w.connect("canteen_pos");
    await staffReportLoss(w.db, await officeActor(w), card.cardAccountId);
    const r = await upload(pos, [rec(1, card.chip, 200, now() + 5)]);
    assert.deepEqual(r.results, [{ offlineSequence: 1, result: Status.ChipLost, charged: 0 }]);
    assert.equal(await w.balance(card.cardAccountId), 1000);
    assert.deepEqual((await reviews(w)).map((x) => x.reason), ["listed_not_yet_known"]);
  }));

Deno.test("a chip cancelled by a reissue: before it is charged, after the reader held the blocklist it is refused", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 1000 });
    const pos = await w.connect("canteen_pos");
    await reissueCard(w.db, await officeActor(w), card.cardAccountId, `N${card.chip}`.slice(0, 20));
    await acknowledgeBlocklist(pos);
    const r = await upload(pos, [rec(1, card.chip, 100), rec(2, card.chip, 100, now() + 5)]);
    assert.deepEqual(r.results.map((x) => [x.result, x.charged]), [
      [Status.Ok, 100],
      [Status.ChipCancelled, 0],
    ]);
    assert.equal(await w.balance(card.cardAccountId), 900);
    assert.deepEqual((await reviews(w)).map((x) => x.reason), ["chip_cancelled"]);
  }));

Deno.test("a closed card account is not charged, even for a payment before it was closed", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 1000 });
    const pos = await w.connect("canteen_pos");
    await closeCardWithPayout(w.db, await officeActor(w), card.cardAccountId, "毕业离校");
    const r = await upload(pos, [rec(1, card.chip, 100, now() - 3600)]);
    assert.deepEqual(r.results, [{ offlineSequence: 1, result: Status.CardCancelled, charged: 0 }]);
    assert.equal(await w.balance(card.cardAccountId), 0);
    assert.equal(await merchantsCredited(w), 0);
    assert.deepEqual((await reviews(w)).map((x) => x.reason), ["card_cancelled"]);
  }));

Deno.test("an unknown chip and records after a gap: the first acknowledged, the others not", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 1000 });
    const pos = await w.connect("canteen_pos");
    const r = await upload(pos, [rec(1, "NOSUCHCHIP", 100), rec(3, card.chip, 100)]);
    assert.equal(r.ackedSequence, 1);
    assert.deepEqual(r.results, [
      { offlineSequence: 1, result: Status.UnknownChip, charged: 0 },
      { offlineSequence: 3, result: Status.OfflineNotAcknowledged, charged: 0 },
    ]);
    assert.equal(await w.balance(card.cardAccountId), 1000);
    assert.deepEqual((await reviews(w)).map((x) => x.reason), ["unknown_chip"]);
  }));

Deno.test("an offline chip outside 0-9A-Z (a NUL, lower case, bytes not UTF-8) is UnknownChip: acknowledged, not charged, filed", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 1000, chip: `LC${Date.now() % 1e8}` });
    const pos = await w.connect("canteen_pos");
    const records = [
      rec(1, "3158\u00006429", 100),
      // The card's own number in lower case: not upper-cased into the card.
      rec(2, card.chip.toLowerCase(), 100),
      rec(3, "ZZZZ", 100), // its bytes are replaced below by ff fe 00 41
      rec(4, card.chip, 100),
    ];
    const body = serializeBody({ code: MessageCode.OfflineUploadItemized, records });
    const at = body.findIndex((_, i) => i > 0 && body[i - 1] === 4 && body[i] === 0x5a);
    body.set([0xff, 0xfe, 0x00, 0x41], at);
    const sequence = pos.sequence++;
    const frame = sealFrame(pos.key, {
      type: MessageCode.OfflineUploadItemized,
      terminalId: pos.terminalId,
      sequence,
      timestamp: now(),
    }, body);
    const r = await pos.sendFrame(frame, sequence);
    assert.deepEqual(r.message, {
      code: MessageCode.OfflineUploadItemizedReply,
      status: Status.Ok,
      ackedSequence: 4,
      duplicates: 0,
      results: [
        { offlineSequence: 1, result: Status.UnknownChip, charged: 0 },
        { offlineSequence: 2, result: Status.UnknownChip, charged: 0 },
        { offlineSequence: 3, result: Status.UnknownChip, charged: 0 },
        { offlineSequence: 4, result: Status.Ok, charged: 100 },
      ],
    });
    assert.equal(await w.balance(card.cardAccountId), 900);
    assert.deepEqual(
      (await reviews(w)).map((x) => [x.chip, x.card_account_id, x.reason]),
      [
        ["3158\\u{0}6429", null, "unknown_chip"],
        [card.chip.toLowerCase(), null, "unknown_chip"],
        ["\\u{fffd}\\u{fffd}\\u{0}A", null, "unknown_chip"],
      ],
    );
    // The reader's resend is answered from the record: the same bytes, nothing charged again.
    assert.deepEqual((await pos.sendFrame(frame, sequence)).bytes, r.bytes);
    assert.equal(await w.balance(card.cardAccountId), 900);
  }));

Deno.test("a refused record finance accepts is charged once, and the reader's resend charges nothing more", () =>
  withWorld(async (w) => {
    const card = await w.card({ balance: 1000 });
    const pos = await w.connect("canteen_pos");
    const first = await upload(pos, [rec(1, card.chip, 1600)]);
    assert.deepEqual(first.results, [
      { offlineSequence: 1, result: Status.OfflineOverPaymentLimit, charged: 0 },
    ]);
    const finance = await createStaff(w.db, {
      username: `fin${Math.floor(Math.random() * 1e6)}`,
      name: "财务处",
      password: "Finance12345",
      roles: ["finance"],
    });
    const [review] = await w.db.selectFrom("finance_offline_reviews").select("id").execute();
    const actor = { staffId: finance, ip: null };
    await acceptOfflineReview(w.db, actor, { id: review.id, note: "小票核对无误" });
    await acceptOfflineReview(w.db, actor, { id: review.id, note: "再次确认" });
    assert.equal(await w.balance(card.cardAccountId), -600);
    const again = await upload(pos, [rec(1, card.chip, 1600)]);
    assert.equal(again.duplicates, 1);
    assert.equal(await w.balance(card.cardAccountId), -600);
    assert.equal(await merchantsCredited(w), 1600);
  }));
