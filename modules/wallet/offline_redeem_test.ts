/**
 * 离线付款码 redeemed: verified from the code (device, TOTP within ±1 step, a clock minutes off
 * told apart), once per device and step, within the offline limits and the holder's own, under
 * the debit rule of every payment; a retired device stops at once; a reader's offline record
 * verified at the time it was paid.
 */
import assert from "node:assert/strict";
import { createApp } from "../../main.ts";
import { loadAssets } from "../platform/assets.ts";
import { createTestDatabase, testConfig } from "../platform/testing.ts";
import { createMerchant } from "../merchant/mod.ts";
import { makeStaff, makeStudent } from "../testkit/mod.ts";
import { ROLES } from "../staff/mod.ts";
import { staffLiftLoss, staffReportLoss } from "../card/mod.ts";
import {
  applyOfflineCodePayment,
  getBalance,
  InsufficientFundsError,
  OfflineCodeOverLimitError,
  PaymentCodeClockSkewError,
  PaymentCodeFrozenError,
  PaymentCodeOverLimitError,
  PaymentCodeRevokedError,
  PaymentCodeUnknownError,
  PaymentCodeUsedError,
  redeemOfflineCode,
  updatePaySettings,
  verifyLedger,
} from "./mod.ts";
import { syncDevice } from "./device_checkin.ts";
import { removeDevice } from "./devices.ts";
import { updateOfflineLimits } from "./offline_limits.ts";
import { offlineCode, stepOf, totp } from "./offline_codes.ts";
import { toBase64Url } from "../platform/crypto.ts";

const onPostgres = !!Deno.env.get("DATABASE_URL");

async function world(options: { poolSize?: number } = {}) {
  await loadAssets();
  const h = await createTestDatabase(options);
  const config = testConfig();
  const app = createApp({ db: h.db, config, onShutdown: () => {} });
  const merchant = await createMerchant(h.db, {
    code: `CANTEEN-${crypto.randomUUID().slice(0, 8)}`,
    name: "第一食堂",
    category: "canteen",
  });
  const ctx = { db: h.db, config, app };
  let refs = 0;
  const device = async (cardAccountId: number) => {
    const sync = await syncDevice(h.db, config.appSecret, cardAccountId, { userAgent: "t" });
    if (sync.state !== "new") throw new Error(`no device: ${sync.state}`);
    const key = Uint8Array.from(
      atob(sync.key.replace(/-/g, "+").replace(/_/g, "/")),
      (c) => c.charCodeAt(0),
    );
    assert.equal(toBase64Url(key), sync.key);
    return {
      handle: sync.handle,
      code: (at = Date.now()) => offlineCode(sync.handle, totp(key, stepOf(at))),
    };
  };
  return {
    h,
    db: h.db,
    config,
    merchant,
    ctx,
    [Symbol.asyncDispose]: () => h.close(),
    /** A new phone device of the card; `code(at)` is its code at a moment (ms). */
    device,
    /** A student with `balance` and a phone device. */
    async phone(balance: number) {
      const s = await makeStudent(ctx, { balance });
      return { ...s, ...await device(s.cardAccountId) };
    },
    /** Redeems at the reader; `at` fixes the server's moment (tests near a step's edge). */
    redeem(code: string, amount: number, reference = `ref-${++refs}`, at?: number) {
      return redeemOfflineCode(h.db, {
        code,
        amount,
        merchantId: merchant.id,
        terminalId: 7,
        reference,
        appSecret: config.appSecret,
        at: at === undefined ? undefined : new Date(at),
      });
    },
  };
}

Deno.test("an offline code pays once: the same code again is used, the same request again is its first answer", async () => {
  await using w = await world();
  const p = await w.phone(5_000);
  const now = Date.now();
  const code = p.code(now);
  const paid = await w.redeem(code, 850, "T7:1", now);
  assert.equal(paid.cardAccountId, p.cardAccountId);
  assert.equal(paid.balanceAfter, 4_150);
  assert.equal(paid.duplicate, false);
  assert.equal((await getBalance(w.db, p.cardAccountId)).balance, 4_150);
  const t = await w.db.selectFrom("ledger_transfers").selectAll().where("id", "=", paid.transferId)
    .executeTakeFirstOrThrow();
  assert.deepEqual([t.kind, t.channel, t.payment_code, t.amount], ["purchase", "qr", code, 850]);
  const device = await w.db.selectFrom("offline_code_devices").selectAll()
    .where("handle", "=", p.handle).executeTakeFirstOrThrow();
  assert.ok(device.used_at, "最近使用 is set");

  const retry = await w.redeem(code, 850, "T7:1", now);
  assert.equal(retry.duplicate, true);
  assert.equal(retry.transferId, paid.transferId);
  await assert.rejects(w.redeem(code, 850, "T7:2", now), PaymentCodeUsedError);
  await assert.rejects(w.redeem(code, 100, "T7:3", now), PaymentCodeUsedError);
  assert.equal((await getBalance(w.db, p.cardAccountId)).balance, 4_150);
  assert.equal((await verifyLedger(w.db)).ok, true);
});

Deno.test("a code pays within ±1 step of the server's time; further out, within ten minutes, the phone's clock is off", async () => {
  await using w = await world();
  const p = await w.phone(5_000);
  const now = Date.now();
  // The step before and the step after both pay (each once).
  await w.redeem(p.code(now - 30_000), 100, undefined, now);
  await w.redeem(p.code(now + 30_000), 100, undefined, now);
  await assert.rejects(
    w.redeem(p.code(now - 120_000), 100, undefined, now),
    PaymentCodeClockSkewError,
  );
  await assert.rejects(
    w.redeem(p.code(now + 300_000), 100, undefined, now),
    PaymentCodeClockSkewError,
  );
  await assert.rejects(
    w.redeem(p.code(now - 3_600_000), 100, undefined, now),
    PaymentCodeUnknownError,
  );
  const code = p.code(now);
  // A wrong TOTP (check digit made right), an unknown handle, a misread.
  const wrong = offlineCode(
    p.handle,
    String((Number(code.slice(9, 17)) + 1) % 1e8).padStart(8, "0"),
  );
  await assert.rejects(w.redeem(wrong, 100, undefined, now), PaymentCodeUnknownError);
  const other = p.handle === "0000000" ? "0000001" : "0000000";
  await assert.rejects(
    w.redeem(offlineCode(other, code.slice(9, 17)), 100, undefined, now),
    PaymentCodeUnknownError,
  );
  await assert.rejects(
    w.redeem(code.slice(0, 17) + ((Number(code[17]) + 1) % 10), 100, undefined, now),
    PaymentCodeUnknownError,
  );
  assert.equal((await getBalance(w.db, p.cardAccountId)).balance, 4_800);
});

Deno.test("offline limits: ¥30.00 a payment and ¥100.00 a day by default, the card office's, and the holder's own", async () => {
  await using w = await world();
  const p = await w.phone(50_000);
  const now = Date.now();
  const refusal = await w.redeem(p.code(now), 3_001, undefined, now).catch((e) => e);
  assert.ok(refusal instanceof OfflineCodeOverLimitError, String(refusal));
  assert.equal(refusal.limit, "per_payment");
  assert.match(refusal.userMessage, /超过离线付款码单笔限额 ¥30\.00/);
  // The refused code stays usable; three steps of ¥30.00 make ¥90.00 today.
  for (const d of [-1, 0, 1]) await w.redeem(p.code(now + d * 30_000), 3_000, undefined, now);
  // The day counts per card: a second phone of the same card has ¥10.00 left.
  const second = await w.device(p.cardAccountId);
  const daily = await w.redeem(second.code(now), 1_001, undefined, now).catch((e) => e);
  assert.ok(daily instanceof OfflineCodeOverLimitError, String(daily));
  assert.equal(daily.limit, "daily");
  assert.match(daily.userMessage, /超过离线付款码每日限额 ¥100\.00/);
  await w.redeem(second.code(now), 1_000, undefined, now);

  // The card office lowers them.
  const office = await makeStaff(w.ctx, "office-limits", [ROLES.cardOffice]);
  await updateOfflineLimits(w.db, { staffId: office.id }, { payLimit: 2_000, dailyLimit: 4_000 });
  const q = await w.phone(50_000);
  const over = await w.redeem(q.code(now), 2_001, undefined, now).catch((e) => e);
  assert.ok(over instanceof OfflineCodeOverLimitError && over.limit === "per_payment");
  await w.redeem(q.code(now), 2_000, undefined, now);
  await w.redeem(q.code(now + 30_000), 2_000, undefined, now);
  const overDay = await w.redeem(q.code(now - 30_000), 1, undefined, now).catch((e) => e);
  assert.ok(overDay instanceof OfflineCodeOverLimitError && overDay.limit === "daily");

  // The holder's own limits count too.
  const own = await w.phone(50_000);
  await updatePaySettings(w.db, own.cardAccountId, {
    payLimit: 500,
    dailyLimit: 50_000,
    codeFrozen: false,
  });
  await assert.rejects(w.redeem(own.code(now), 600, undefined, now), PaymentCodeOverLimitError);
  await w.redeem(own.code(now), 500, undefined, now);
  // And the funds.
  const poor = await w.phone(300);
  await assert.rejects(w.redeem(poor.code(now), 301, undefined, now), InsufficientFundsError);
  assert.equal((await getBalance(w.db, p.cardAccountId)).balance, 40_000);
  assert.equal((await verifyLedger(w.db)).ok, true);
});

Deno.test("a removed, frozen or lost device stops paying at once, and a lost one stays so after 解挂", async () => {
  await using w = await world();
  const removed = await w.phone(5_000);
  const device = await w.db.selectFrom("offline_code_devices").select("id")
    .where("handle", "=", removed.handle).executeTakeFirstOrThrow();
  await removeDevice(w.db, removed.cardAccountId, device.id);
  await assert.rejects(w.redeem(removed.code(), 100), PaymentCodeRevokedError);

  const frozen = await w.phone(5_000);
  const code = frozen.code();
  await updatePaySettings(w.db, frozen.cardAccountId, {
    payLimit: 20_000,
    dailyLimit: 50_000,
    codeFrozen: true,
  });
  await assert.rejects(w.redeem(code, 100), PaymentCodeFrozenError);
  await updatePaySettings(w.db, frozen.cardAccountId, {
    payLimit: 20_000,
    dailyLimit: 50_000,
    codeFrozen: false,
  });
  await assert.rejects(w.redeem(code, 100), PaymentCodeRevokedError, "unfrozen, still retired");

  const lost = await w.phone(5_000);
  const office = await makeStaff(w.ctx, "office-lost", [ROLES.cardOffice]);
  await staffReportLoss(w.db, { staffId: office.id }, lost.cardAccountId);
  await assert.rejects(w.redeem(lost.code(), 100), PaymentCodeRevokedError);
  await staffLiftLoss(w.db, { staffId: office.id }, lost.cardAccountId);
  await assert.rejects(w.redeem(lost.code(), 100), PaymentCodeRevokedError);
  for (const p of [removed, frozen, lost]) {
    assert.equal((await getBalance(w.db, p.cardAccountId)).balance, 5_000);
  }
});

Deno.test("a reader's offline record of a code is verified at the time it was paid, once, and may go below zero", async () => {
  await using w = await world();
  const p = await w.phone(300);
  const at = new Date(Date.now() - 3_600_000);
  const code = p.code(at.getTime());
  const upload = (reference: string, amount = 500, occurredAt = at) =>
    applyOfflineCodePayment(w.db, {
      code,
      amount,
      merchantId: w.merchant.id,
      terminalId: 7,
      reference,
      occurredAt,
      appSecret: w.config.appSecret,
    });
  const first = await upload("T7:O1");
  assert.equal(first.paid, true);
  assert.equal(first.cardAccountId, p.cardAccountId);
  assert.equal(
    (await getBalance(w.db, p.cardAccountId)).balance,
    -200,
    "an offline record is a fact",
  );
  const again = await upload("T7:O1");
  assert.ok(again.paid, "the same record again is its first answer");
  const reused = await upload("T7:O2");
  assert.equal(reused.paid, false);
  if (!reused.paid) {
    assert.ok(reused.refusal instanceof PaymentCodeUsedError);
    assert.equal(reused.cardAccountId, p.cardAccountId, "finance sees whose it was");
  }
  // At another time the code is not this device's.
  const late = await upload("T7:O3", 100, new Date(at.getTime() + 3_600_000));
  assert.equal(late.paid, false);
  if (!late.paid) assert.ok(late.refusal instanceof PaymentCodeUnknownError);
  // Over the offline limit per payment: not charged.
  const q = await w.phone(5_000);
  const big = await applyOfflineCodePayment(w.db, {
    code: q.code(at.getTime()),
    amount: 3_500,
    merchantId: w.merchant.id,
    terminalId: 7,
    reference: "T7:O4",
    occurredAt: at,
    appSecret: w.config.appSecret,
  });
  assert.equal(big.paid, false);
  if (!big.paid) assert.ok(big.refusal instanceof OfflineCodeOverLimitError);
  assert.equal((await verifyLedger(w.db)).ok, true);
});

Deno.test({
  name: "the same offline code from 20 connections at once pays exactly once",
  ignore: !onPostgres,
  async fn() {
    await using w = await world({ poolSize: 20 });
    const p = await w.phone(10_000);
    for (let round = 0; round < 3; round++) {
      const now = Date.now();
      const code = p.code(now + (round - 1) * 30_000);
      const results = await Promise.allSettled(
        Array.from({ length: 20 }, (_, i) => w.redeem(code, 100, `race-${round}-${i}`, now)),
      );
      const ok = results.filter((r) => r.status === "fulfilled");
      assert.equal(ok.length, 1, `round ${round}`);
      for (const r of results) {
        if (r.status === "rejected") {
          assert.ok(r.reason instanceof PaymentCodeUsedError, String(r.reason));
        }
      }
    }
    assert.equal((await getBalance(w.db, p.cardAccountId)).balance, 9_700);
    assert.equal((await verifyLedger(w.db)).ok, true);
  },
});

Deno.test({
  name: "one step of a device paid at once by readers online and by offline records charges once",
  ignore: !onPostgres,
  async fn() {
    await using w = await world({ poolSize: 20 });
    const p = await w.phone(10_000);
    const now = Date.now();
    const code = p.code(now);
    const online = Array.from({ length: 10 }, (_, i) => w.redeem(code, 100, `qr-${i}`, now));
    const records = Array.from({ length: 10 }, (_, i) =>
      applyOfflineCodePayment(w.db, {
        code,
        amount: 100,
        merchantId: w.merchant.id,
        terminalId: 7,
        reference: `rec-${i}`,
        occurredAt: new Date(now),
        appSecret: w.config.appSecret,
      }));
    const paidOnline = await Promise.allSettled(online);
    const paidOffline = await Promise.all(records);
    const paid = paidOnline.filter((r) => r.status === "fulfilled").length +
      paidOffline.filter((r) => r.paid).length;
    assert.equal(paid, 1);
    for (const r of paidOnline) {
      if (r.status === "rejected") {
        assert.ok(r.reason instanceof PaymentCodeUsedError, String(r.reason));
      }
    }
    for (const r of paidOffline) {
      if (!r.paid) assert.ok(r.refusal instanceof PaymentCodeUsedError, String(r.refusal));
    }
    assert.equal((await getBalance(w.db, p.cardAccountId)).balance, 9_900);
    const uses = await w.db.selectFrom("offline_code_uses").selectAll().execute();
    assert.equal(uses.length, 1);
    assert.equal((await verifyLedger(w.db)).ok, true);
  },
});

Deno.test({
  name: "four phones of one card paying at once keep the day's offline limit",
  ignore: !onPostgres,
  async fn() {
    await using w = await world({ poolSize: 20 });
    const p = await w.phone(50_000);
    const phones = [p, await w.device(p.cardAccountId), await w.device(p.cardAccountId)];
    phones.push(await w.device(p.cardAccountId));
    const now = Date.now();
    // 12 codes of ¥10.00 (each phone's three steps around now) against ¥100.00 a day.
    const results = await Promise.allSettled(
      phones.flatMap((phone, i) =>
        [-1, 0, 1].map((d) => w.redeem(phone.code(now + d * 30_000), 1_000, `day-${i}${d}`, now))
      ),
    );
    const refused = results.filter((r) => r.status === "rejected");
    assert.equal(results.length - refused.length, 10);
    for (const r of refused) {
      const e = (r as PromiseRejectedResult).reason;
      assert.ok(e instanceof OfflineCodeOverLimitError && e.limit === "daily", String(e));
    }
    assert.equal((await getBalance(w.db, p.cardAccountId)).balance, 40_000);
    assert.equal((await verifyLedger(w.db)).ok, true);
  },
});
