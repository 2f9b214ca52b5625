/**
 * 离线付款码 redeemed (docs/OFFLINE_PAYMENT_CODES.md §2.1, §4): the server verifies the code from
 * itself — its device, the device's TOTP for the step of the moment it was paid or one either side
 * (a right code further out is a phone clock minutes off), the device live then — and charges it
 * at most once per device and time step, under the debit rule of every payment with the offline
 * limits first (_rules.ts `OfflineCodeRule`). A reader's QrPayment is checked at the server's
 * time; a reader's offline record of a code at the time the record says it was paid, and charged
 * like any offline record (even below zero) or refused for finance's review.
 *
 * Once per device and step: the statement that moves the money also inserts the step's row of
 * `offline_code_uses` (its primary key), and pays only where that step has none and the card's
 * wallet row did not change since the statement began, so the day's offline payments it counted
 * were all of them (a concurrent payment of the card makes it go again, its row locked first).
 */
import { type RawBuilder, sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { chinaDay } from "../platform/china_time.ts";
import { paymentCodeFrozenSql } from "../card/mod.ts";
import { getMerchant, merchantRowSql } from "../merchant/mod.ts";
import {
  checkReference,
  ensureCardWallet,
  ensureMerchantAccount,
  isNotNullViolation,
  isUniqueViolation,
  joinedOrOwn,
  transferByReference,
} from "./_common.ts";
import { checkAmount } from "./_amounts.ts";
import { whyOfflineRecordRefused, whyRefused } from "./_refusals.ts";
import {
  debitSql,
  merchantAccountSql,
  merchantPlaceSql,
  offlineRecordRefusalSql,
  offlineSql,
} from "./_rules.ts";
import { debitLegsSql } from "./_purses.ts";
import { cardTrust, deviceRefusal } from "./devices.ts";
import {
  deviceKey,
  isOfflineCodeShape,
  matchStep,
  parseOfflineCode,
  stepOf,
} from "./offline_codes.ts";
import {
  InvalidAmountError,
  LimitExceededError,
  OfflineCodeRevokedLaterError,
  PaymentCodeClockSkewError,
  PaymentCodeFrozenError,
  PaymentCodeOverLimitError,
  PaymentCodeRevokedError,
  PaymentCodeUnknownError,
  PaymentCodeUsedError,
  ReferenceConflictError,
  WalletError,
} from "./errors.ts";
import { oneAskSql, optionalId, unusedReferenceSql, withCardLocked } from "./ledger.ts";
import type { RedeemResult } from "./redeem.ts";
import "./offline_tables.ts";

/** A device as its code is verified. */
interface Device {
  id: number;
  card_account_id: number;
  created_at: Date;
  revoked_at: Date | null;
}

/** What a code says at a moment: its device and paid step, a clock minutes off, or nothing. */
type Verified =
  | { kind: "ok"; device: Device; step: number }
  | { kind: "skewed"; device: Device }
  | { kind: "none" };

/**
 * The code verified at `at`: a device's handle and its TOTP for the step of `at` ± `ACCEPT_STEPS`
 * ("ok"), or further out within ±10 minutes ("skewed"). An unknown handle costs the same
 * arithmetic as a known one, so the time taken does not tell handles apart.
 */
async function verifyAt(db: Db, code: string, appSecret: string, at: Date): Promise<Verified> {
  const parts = parseOfflineCode(code);
  if (!parts) return { kind: "none" };
  const row = await db.selectFrom("offline_code_devices")
    .select(["id", "card_account_id", "salt", "created_at", "revoked_at"])
    .where("handle", "=", parts.handle).executeTakeFirst();
  const key = row
    ? deviceKey(appSecret, row.id, row.salt)
    : crypto.getRandomValues(new Uint8Array(32));
  const match = matchStep(key, parts.otp, stepOf(at.getTime()));
  if (!row || match.kind === "none") return { kind: "none" };
  const device = {
    id: row.id,
    card_account_id: row.card_account_id,
    created_at: row.created_at,
    revoked_at: row.revoked_at,
  };
  return match.kind === "ok"
    ? { kind: "ok", device, step: match.step }
    : { kind: "skewed", device };
}

/**
 * The conditions on the card's row `la` every redemption keeps besides the debit rule: the
 * reference is new, the device's step was never paid, and the row is as the statement began.
 */
function onceSql(device: Device, step: number, reference: string): RawBuilder<unknown>[] {
  return [
    unusedReferenceSql(reference),
    sql`not exists (select 1 from offline_code_uses u
      where u.device_id = ${device.id} and u.step = ${step})`,
    sql`la.xmin::text = a.card_xmin`,
  ];
}

/**
 * The CTEs `used` and `seen` after the transfer `t`: the step's row (the primary key refuses a
 * second), and the device's 最近使用.
 */
function usedSql(p: {
  device: Device;
  step: number;
  amount: number;
  day: string;
  usedAt: Date;
}): RawBuilder<unknown> {
  return sql`used as (
      insert into offline_code_uses (device_id, step, card_account_id, amount, china_day,
        reference, transfer_id)
      select ${p.device.id}, ${p.step}, t.card_account_id, ${p.amount}, ${p.day}::date,
        t.reference, t.id
      from t
      returning 1
    ), seen as (
      update offline_code_devices
      set used_at = greatest(coalesce(used_at, ${p.usedAt}::timestamptz), ${p.usedAt}::timestamptz)
      where id = ${p.device.id} and exists (select 1 from t)
      returning 1
    )`;
}

type PaidRow = { id: number; balance_after: number; here: number; merchant_name: string | null };

/** The first result of a reference, if it was this code and amount; ReferenceConflict if not. */
async function firstOf(
  db: Db,
  reference: string,
  code: string,
  amount: number,
): Promise<RedeemResult | null> {
  const t = await transferByReference(db, reference);
  if (!t) return null;
  if (t.payment_code !== code || t.amount !== amount || t.card_account_id === null) {
    throw new ReferenceConflictError(reference);
  }
  const merchant = t.merchant_id === null ? null : await getMerchant(db, t.merchant_id);
  return {
    cardAccountId: t.card_account_id,
    transferId: t.id,
    balanceAfter: t.balance_after ?? 0,
    balanceHere: t.balance_after ?? 0,
    merchantName: merchant?.name ?? "",
    duplicate: true,
  };
}

async function stepUsed(db: Db, device: Device, step: number): Promise<boolean> {
  return !!(await db.selectFrom("offline_code_uses").select("step")
    .where("device_id", "=", device.id).where("step", "=", step).executeTakeFirst());
}

/** A limit of the holder's own, told as a payment code's. */
function asCodeRefusal(err: WalletError): WalletError {
  return err instanceof LimitExceededError
    ? new PaymentCodeOverLimitError(err.limit, err.limitFen, err.amount)
    : err;
}

/** Runs `attempt` up to five times: in the caller's transaction, or on its own (recovering). */
async function attempts<T>(
  db: Db,
  attempt: (db: Db, recover: boolean) => Promise<T | null>,
  what: string,
): Promise<T> {
  const loop = async (db: Db, recover: boolean) => {
    for (let i = 0; i < 5; i++) {
      const done = await attempt(db, recover);
      if (done !== null) return done;
    }
    throw new Error(`Cannot ${what}: gave up after repeated conflicts`);
  };
  return await joinedOrOwn(db, {
    joined: (trx) => loop(trx, false),
    own: (own) => loop(own, true),
  });
}

/**
 * A reader's QrPayment with a 离线付款码: verified at the server's time (`at`, for tests near a
 * step's edge), then charged once per device and step under the debit rule — the offline limits,
 * the holder's own limits, what is available — in one statement. Idempotent on `reference` (a
 * retry after the code's step passed still gets its first answer). Refusals: PaymentCodeUnknown
 * (no device's code), PaymentCodeClockSkew, PaymentCodeFrozen, PaymentCodeRevoked (the device
 * removed, frozen, or from before a 挂失 or 解绑), PaymentCodeUsed, OfflineCodeOverLimit,
 * PaymentCodeOverLimit, and the debit rule's.
 */
export async function redeemOfflineCode(
  db: Db,
  input: {
    code: string;
    amount: number;
    merchantId: number;
    terminalId?: number | null;
    reference: string;
    appSecret: string;
    at?: Date;
  },
): Promise<RedeemResult> {
  const amount = checkAmount(input.amount);
  const reference = checkReference(input.reference);
  const terminalId = optionalId(input.terminalId, "terminalId");
  const code = String(input.code ?? "").trim();
  const at = input.at ?? new Date();
  const merchantId = input.merchantId;
  const v = isOfflineCodeShape(code)
    ? await verifyAt(db, code, input.appSecret, at)
    : { kind: "none" as const };
  const refuse = async (err: WalletError) => {
    const first = await firstOf(db, reference, code, amount);
    if (first) return first;
    throw err;
  };
  if (v.kind === "none") return await refuse(new PaymentCodeUnknownError());
  if (v.kind === "skewed") return await refuse(new PaymentCodeClockSkewError());
  const { device, step } = v;
  const trusted = deviceRefusal(device, await cardTrust(db, device.card_account_id));
  if (trusted === "frozen") return await refuse(new PaymentCodeFrozenError());
  if (trusted === "revoked") return await refuse(new PaymentCodeRevokedError());
  const day = chinaDay(at);
  const rule = { limits: true, today: day, offlineCode: { day } };

  const statement = async (db: Db) =>
    (await sql<PaidRow>`with ${
      oneAskSql({
        cardAccountId: sql`${device.card_account_id}`,
        amount,
        at: merchantPlaceSql(sql`${merchantId}`),
        reference,
      })
    }, ${
      debitSql({
        rule,
        also: [
          ...onceSql(device, step, reference),
          sql`exists (select 1 from offline_code_devices d
            where d.id = ${device.id} and d.revoked_at is null)`,
          sql`not la.code_frozen`,
          sql`not ${paymentCodeFrozenSql(sql`la.card_account_id`)}`,
        ],
      })
    }, t as (
        insert into ledger_transfers (reference, kind, channel, debit_account_id,
          credit_account_id, amount, card_account_id, card_delta, balance_after, merchant_id,
          terminal_id, payment_code)
        select w.reference, 'purchase', 'qr', w.account_id, ${
      merchantAccountSql(sql`${merchantId}`)
    }, w.amount, w.card_account_id, -w.amount, w.after, ${merchantId}, ${terminalId}, ${code}
        from w
        returning id, reference, balance_after, card_account_id
      ), ${debitLegsSql()}, ${usedSql({ device, step, amount, day, usedAt: new Date() })}
      select t.id, t.balance_after, w.here,
        (select m.name from ${merchantRowSql(sql`${merchantId}`)} m) as merchant_name
      from t, w`.execute(db)).rows[0];

  // After an unexplained miss (the card's row changed meanwhile), the row is locked first.
  let locked = false;
  return await attempts(db, async (db, recover): Promise<RedeemResult | null> => {
    let row: PaidRow | undefined;
    try {
      row = locked
        ? await withCardLocked(db, device.card_account_id, statement)
        : await statement(db);
    } catch (err) {
      if (recover && isUniqueViolation(err)) {
        const first = await firstOf(db, reference, code, amount);
        if (first) return first;
        throw new PaymentCodeUsedError();
      }
      if (recover && isNotNullViolation(err)) {
        await ensureMerchantAccount(db, merchantId);
        return null;
      }
      throw err;
    }
    if (row) {
      return {
        cardAccountId: device.card_account_id,
        transferId: row.id,
        balanceAfter: row.balance_after,
        balanceHere: row.here,
        merchantName: row.merchant_name ?? "",
        duplicate: false,
      };
    }
    const first = await firstOf(db, reference, code, amount);
    if (first) return first;
    const now = await db.selectFrom("offline_code_devices").select(["created_at", "revoked_at"])
      .where("id", "=", device.id).executeTakeFirstOrThrow();
    const state = deviceRefusal(now, await cardTrust(db, device.card_account_id));
    if (state === "frozen") throw new PaymentCodeFrozenError();
    if (state === "revoked") throw new PaymentCodeRevokedError();
    if (await stepUsed(db, device, step)) throw new PaymentCodeUsedError();
    const merchant = await getMerchant(db, merchantId);
    const why = await whyRefused(db, device.card_account_id, amount, {
      ...rule,
      at: merchant?.category ?? null,
    });
    if (why) throw asCodeRefusal(why);
    locked = true;
    return null;
  }, `redeem offline payment code ${reference}`);
}

/** A reader's offline record of a code: charged, or why not (and whose card, when known). */
export type OfflineCodeCharge =
  | {
    paid: true;
    cardAccountId: number;
    transferId: number;
    balanceAfter: number;
    duplicate: boolean;
  }
  | { paid: false; refusal: WalletError; cardAccountId: number | null };

/**
 * Why a device may not have paid at `occurredAt`, or null: retired by then, its card closed, or
 * from before a 挂失 or 解绑 made by then (one made after is finance's call:
 * `OfflineCodeRevokedLaterError`). A device removed or frozen after the payment was live when it
 * paid. (Its code for that moment proves the key; when the device was added says nothing more.)
 */
async function deviceAt(db: Db, device: Device, occurredAt: Date): Promise<WalletError | null> {
  const t = occurredAt.getTime();
  const trust = await cardTrust(db, device.card_account_id);
  if (trust.closed) return new PaymentCodeRevokedError();
  if (device.revoked_at && device.revoked_at.getTime() <= t) return new PaymentCodeRevokedError();
  const lost = trust.untrustedBefore;
  if (lost && device.created_at.getTime() <= lost.getTime()) {
    return lost.getTime() <= t ? new PaymentCodeRevokedError() : new OfflineCodeRevokedLaterError();
  }
  return null;
}

/**
 * A reader's offline record paid with a 离线付款码 (PROTOCOL.md §4.11): the code verified at
 * `occurredAt`, the device live then, its step never paid, the offline limits of that China day
 * and the holder's per-payment limit; then charged like any offline record, even below zero.
 * Idempotent on `reference`: the same record again is its first answer. A record that fails is
 * not charged and says why, with the device's card when the code named one, for finance's review.
 */
export async function applyOfflineCodePayment(
  db: Db,
  input: {
    code: string;
    amount: number;
    merchantId: number;
    terminalId: number;
    reference: string;
    occurredAt: Date;
    appSecret: string;
  },
): Promise<OfflineCodeCharge> {
  const amount = checkAmount(input.amount);
  const reference = checkReference(input.reference);
  const terminalId = optionalId(input.terminalId, "terminalId");
  const occurredAt = input.occurredAt;
  if (!(occurredAt instanceof Date) || isNaN(occurredAt.getTime())) {
    throw new InvalidAmountError(occurredAt, "occurredAt");
  }
  const code = String(input.code ?? "").trim();
  const merchantId = input.merchantId;
  const charged = (first: RedeemResult): OfflineCodeCharge => ({
    paid: true,
    cardAccountId: first.cardAccountId,
    transferId: first.transferId,
    balanceAfter: first.balanceAfter,
    duplicate: first.duplicate,
  });
  const refused = (refusal: WalletError, cardAccountId: number | null): OfflineCodeCharge => ({
    paid: false,
    refusal,
    cardAccountId,
  });
  const first = await firstOf(db, reference, code, amount);
  if (first) return charged(first);
  const v = isOfflineCodeShape(code)
    ? await verifyAt(db, code, input.appSecret, occurredAt)
    : { kind: "none" as const };
  if (v.kind === "none") return refused(new PaymentCodeUnknownError(), null);
  const card = v.device.card_account_id;
  if (v.kind === "skewed") return refused(new PaymentCodeClockSkewError(), card);
  const { device, step } = v;
  const dead = await deviceAt(db, device, occurredAt);
  if (dead) return refused(dead, card);
  const day = chinaDay(occurredAt);
  // A record is a fact: the merchant may have been deactivated since.
  const counter = merchantAccountSql(sql`${merchantId}`, { allowInactive: true });

  const statement = async (db: Db) =>
    (await sql<PaidRow>`with ${
      oneAskSql({
        cardAccountId: sql`${card}`,
        amount,
        at: merchantPlaceSql(sql`${merchantId}`),
        reference,
      })
    }, ${
      offlineSql({
        also: [
          ...onceSql(device, step, reference),
          sql`${offlineRecordRefusalSql(sql`a.amount`, { day })} is null`,
        ],
      })
    }, t as (
        insert into ledger_transfers (reference, kind, channel, debit_account_id,
          credit_account_id, amount, card_account_id, card_delta, balance_after, merchant_id,
          terminal_id, payment_code, details)
        select w.reference, 'purchase', 'offline', w.account_id, ${counter}, w.amount,
          w.card_account_id, -w.amount, w.after, ${merchantId}, ${terminalId}, ${code},
          ${JSON.stringify({ occurredAt: occurredAt.toISOString() })}::jsonb
        from w
        returning id, reference, balance_after, card_account_id
      ), ${debitLegsSql()}, ${usedSql({ device, step, amount, day, usedAt: occurredAt })}
      select t.id, t.balance_after, w.here, null as merchant_name from t, w`.execute(db)).rows[0];

  let locked = false;
  return await attempts(db, async (db, recover): Promise<OfflineCodeCharge | null> => {
    let row: PaidRow | undefined;
    try {
      row = locked ? await withCardLocked(db, card, statement) : await statement(db);
    } catch (err) {
      if (recover && isUniqueViolation(err)) {
        const first = await firstOf(db, reference, code, amount);
        if (first) return charged(first);
        return refused(new PaymentCodeUsedError(), card);
      }
      if (recover && isNotNullViolation(err)) {
        await ensureMerchantAccount(db, merchantId, { allowInactive: true });
        return null;
      }
      throw err;
    }
    if (row) {
      return {
        paid: true,
        cardAccountId: card,
        transferId: row.id,
        balanceAfter: row.balance_after,
        duplicate: false,
      };
    }
    const first = await firstOf(db, reference, code, amount);
    if (first) return charged(first);
    if (await stepUsed(db, device, step)) return refused(new PaymentCodeUsedError(), card);
    const why = await whyOfflineRecordRefused(db, card, amount, { day });
    if (why) return refused(asCodeRefusal(why), card);
    // A card that never had money gets its wallet row (a record may take it below zero).
    await ensureCardWallet(db, card);
    locked = true;
    return null;
  }, `apply offline payment code record ${reference}`);
}
