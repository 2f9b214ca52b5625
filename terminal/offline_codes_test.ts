/**
 * 离线付款码 at a real reader server (PROTOCOL.md §4.4, §4.11): recognised by their prefix, paid
 * once, told apart when the phone's clock is off, refused at once for a removed device; a
 * terminal guessing codes runs out of guesses (RateLimited, the alarm); a reader's offline record
 * of a code is charged or, failing, filed for finance without the whole code.
 */
import assert from "node:assert/strict";
import { renderMetrics } from "../modules/platform/metrics.ts";
import { syncDevice } from "../modules/wallet/mod.ts";
import "../static/pay_offline.js";
import { type Message, MessageCode, type OfflineRecord, Status } from "./messages.ts";
import { status, withWorld, type World } from "./_test_support.ts";

/** The phone's own script (static/pay_offline.js), as the page runs it. */
const phone = (globalThis as unknown as {
  yxtOffline: {
    totp(key: Uint8Array, step: number): Promise<string>;
    code(handle: string, otp: string): string;
    stepOf(ms: number): number;
    fromBase64Url(s: string): Uint8Array;
    luhn(body: string): string;
  };
}).yxtOffline;

/** A card with money and a phone device of it; `code(ms)` is the phone's code at that moment. */
async function phoneOf(w: World, balance: number) {
  const card = await w.card({ balance });
  const sync = await syncDevice(w.db, w.config.appSecret, card.cardAccountId, {
    userAgent: "test",
  });
  if (sync.state !== "new") throw new Error(`no device: ${sync.state}`);
  const key = phone.fromBase64Url(sync.key);
  return {
    ...card,
    handle: sync.handle,
    code: async (ms = Date.now()) =>
      phone.code(sync.handle, await phone.totp(key, phone.stepOf(ms))),
  };
}

type QrReply = Extract<Message, { code: 0x91 }>;

Deno.test("a QR scanner pays an offline code once; a clock minutes off and a removed device are told apart", () =>
  withWorld(async (w) => {
    const p = await phoneOf(w, 5_000);
    const qr = await w.connect("qr_scanner");
    const pay = async (code: string, amount = 600) =>
      (await qr.request({ code: MessageCode.QrPayment, paymentCode: code, amount }))
        .message as QrReply;
    const code = await p.code();
    assert.deepEqual(await pay(code), {
      code: MessageCode.QrPaymentReply,
      status: Status.Ok,
      amount: 600,
      balance: 4_400,
    });
    assert.equal(status(await pay(code)), Status.CodeUsed);
    assert.equal(status(await pay(await p.code(Date.now() - 300_000))), Status.CodeClockSkew);
    // Another step of the device: above the offline limit (¥30.00), and it stays usable.
    const next = await p.code(Date.now() + 30_000);
    assert.equal(status(await pay(next, 3_001)), Status.OverPaymentLimit);
    // The terminal's record says what the reader was told, and whose card paid.
    const rows = await w.db.selectFrom("terminal_requests").select(["status", "card_account_id"])
      .where("terminal_id", "=", w.terminals.qr_scanner.id).orderBy("sequence").execute();
    assert.deepEqual(rows.map((r) => r.status), [
      Status.Ok,
      Status.CodeUsed,
      Status.CodeClockSkew,
      Status.OverPaymentLimit,
    ]);
    assert.equal(rows[0].card_account_id, p.cardAccountId);

    await w.db.updateTable("offline_code_devices").set({
      revoked_at: new Date(),
      revoked_reason: "removed",
    }).where("handle", "=", p.handle).execute();
    assert.equal(status(await pay(next)), Status.CodeExpired);
    assert.equal(await w.balance(p.cardAccountId), 4_400);
  }));

Deno.test("a terminal that guesses offline codes runs out of guesses: RateLimited, even for a right code, and the alarm", () =>
  withWorld(async (w) => {
    const p = await phoneOf(w, 5_000);
    const qr = await w.connect("qr_scanner");
    const right = await p.code();
    const digits = right.slice(9, 17);
    // Ten wrong TOTPs for the real handle (check digits made right): each takes a guess.
    for (let i = 1; i <= 10; i++) {
      const otp = String((Number(digits) + i) % 1e8).padStart(8, "0");
      const body = `87${p.handle}${otp}`;
      const wrong = body + phone.luhn(body);
      const r = await qr.request({ code: MessageCode.QrPayment, paymentCode: wrong, amount: 100 });
      assert.equal(status(r.message), Status.CodeInvalid, `guess ${i}`);
    }
    const r = await qr.request({ code: MessageCode.QrPayment, paymentCode: right, amount: 100 });
    assert.equal(status(r.message), Status.RateLimited, "used up: refused before any lookup");
    assert.equal(await w.balance(p.cardAccountId), 5_000);
    const metrics = renderMetrics();
    assert.match(
      metrics,
      new RegExp(`yxt_offline_code_throttled_total\\{terminal="${w.terminals.qr_scanner.id}"\\} 1`),
    );
    assert.match(metrics, /yxt_offline_code_guesses_total\{terminal="\d+",status="CodeInvalid"\}/);
    // Online codes and other readers are not held back.
    const pos = await w.connect("canteen_pos");
    const other = await pos.request({
      code: MessageCode.QrPayment,
      paymentCode: right,
      amount: 100,
    });
    assert.equal(status(other.message), Status.Ok);
  }, { limits: { offlineCodeGuessesPerMinute: 10 } }));

Deno.test("a reader offline too uploads a code's record: charged once, at the time it was paid; a bad one goes to finance without the code", () =>
  withWorld(async (w) => {
    const p = await phoneOf(w, 300);
    const pos = await w.connect("canteen_pos");
    const at = Math.floor(Date.now() / 1000) - 600;
    const code = await p.code(at * 1000);
    const records: OfflineRecord[] = [
      { offlineSequence: 1, occurredAt: at, chip: "", amount: 500, paymentCode: code },
      { offlineSequence: 2, occurredAt: at + 5, chip: "", amount: 100, paymentCode: code },
      {
        offlineSequence: 3,
        occurredAt: at + 10,
        chip: "",
        amount: 100,
        paymentCode: "870000000000000000",
      },
    ];
    const reply = (await pos.request({ code: MessageCode.OfflineUploadMixed, records })).message;
    assert.deepEqual(reply, {
      code: MessageCode.OfflineUploadMixedReply,
      status: Status.Ok,
      ackedSequence: 3,
      duplicates: 0,
      results: [
        { offlineSequence: 1, result: Status.Ok, charged: 500 },
        { offlineSequence: 2, result: Status.CodeUsed, charged: 0 },
        { offlineSequence: 3, result: Status.CodeInvalid, charged: 0 },
      ],
    });
    // A fact: charged even below zero.
    assert.equal(await w.balance(p.cardAccountId), -200);
    const filed = await w.db.selectFrom("finance_offline_reviews")
      .select(["chip", "card_account_id", "reason"]).orderBy("id").execute();
    assert.deepEqual(filed, [
      { chip: `付款码 87${p.handle}…`, card_account_id: p.cardAccountId, reason: "code_used" },
      { chip: "付款码 870000000…", card_account_id: null, reason: "code_invalid" },
    ]);
    // The upload again is its first answer, byte for byte; nothing moves twice.
    const again = (await pos.request({ code: MessageCode.OfflineUploadMixed, records })).message;
    assert.equal(status(again), Status.Ok);
    assert.equal(await w.balance(p.cardAccountId), -200);
  }));
