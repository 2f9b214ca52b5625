/**
 * 代充: a parent or friend tops up someone else's card. They reach it from a link the student
 * shares from 充值 (a random token of the card account, replaced when the student makes a new
 * one) or by typing the 学号 and the full 姓名 at 代充; either way they see only a masked
 * confirmation (张*, the school, 学号 2024****01), pay through the deployment's gateway, and learn
 * nothing else: no balance, no history, no full name. The order is a top-up like any other (the
 * same notify, flags, reconciliation and 退回微信 to whoever paid), credited once, and the student's
 * 充值到账 says 代充. Limits: per payer and per card per China day, on top of the card's own.
 */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { DomainError, TooManyAttemptsError } from "../platform/errors.ts";
import { chinaDayStart } from "../platform/china_time.ts";
import { formatFen } from "../platform/money.ts";
import {
  assertNotLocked,
  keyedHash,
  randomToken,
  recordEvent,
  timingSafeEqual,
} from "../security/mod.ts";
import { findSchool } from "../account/mod.ts";
import { findCardAccount, findCardsByStudentNumber, parseStudentNumber } from "../card/mod.ts";
import { type Gateways, type TopupDeps, yuanVar } from "./deployment.ts";
import { TopupRefused } from "./errors.ts";
import { findOrder, openOrder, type TopupOrder } from "./orders.ts";
import type { PaymentStart } from "./gateway.ts";
import "./tables.ts";

/** 代充 limits, in fen. */
export interface ProxyLimits {
  /** What one payer may pay in a China day, whatever the cards. */
  payerDaily: number;
  /** What one card may receive by 代充 in a China day, whoever pays. */
  cardDaily: number;
  /** Unpaid 代充 orders one payer may have open at once. */
  payerOpen: number;
}

/** PROXY_TOPUP_PAYER_DAILY_YUAN (500) and PROXY_TOPUP_CARD_DAILY_YUAN (1000). */
export function proxyLimits(config: Config): ProxyLimits {
  return {
    payerDaily: yuanVar(config.env, "PROXY_TOPUP_PAYER_DAILY_YUAN", 500_00),
    cardDaily: yuanVar(config.env, "PROXY_TOPUP_CARD_DAILY_YUAN", 1000_00),
    payerOpen: 3,
  };
}

/** 张三 → 张*, 欧阳娜娜 → 欧***. */
export function maskName(name: string): string {
  const chars = [...name.trim()];
  return chars.length <= 1 ? chars.join("") : chars[0] + "*".repeat(chars.length - 1);
}

/** 2024010001 → 2024****01 (short numbers keep less). */
export function maskStudentNumber(sn: string): string {
  if (sn.length <= 4) return `${sn.slice(0, 1)}***`;
  if (sn.length <= 7) return `${sn.slice(0, 2)}****${sn.slice(-1)}`;
  return `${sn.slice(0, 4)}****${sn.slice(-2)}`;
}

/** What the payer is shown of whom they pay for. */
export interface Recipient {
  cardAccountId: number;
  maskedName: string;
  schoolName: string;
  maskedStudentNumber: string;
}

/** A payable card account as the payer sees it, or null (unknown or cancelled). */
async function recipientOf(db: Db, cardAccountId: number): Promise<Recipient | null> {
  const card = await findCardAccount(db, cardAccountId);
  if (!card || card.status === "cancelled") return null;
  const same = (await findCardsByStudentNumber(db, card.studentNumber))
    .find((c) => c.id === card.id);
  const school = same ? await findSchool(db, same.school_id) : null;
  if (!school) return null;
  return {
    cardAccountId: card.id,
    maskedName: maskName(card.name),
    schoolName: school.name,
    maskedStudentNumber: maskStudentNumber(card.studentNumber),
  };
}

/** Look-ups per client address in ten minutes, and tries at one 学号 in an hour (its name). */
const LOOKUP_IP_RULE = { limit: 20, windowSeconds: 600 };
const LOOKUP_NUMBER_RULE = { limit: 5, windowSeconds: 3600 };

const WRONG = "学号或姓名不正确，请核对后重试";

/**
 * 代充 by [学校], [学号] and [姓名]: the card account they name together, masked. The same answer
 * for an unknown 学号 and a wrong name; a 学号's name cannot be guessed at more than a few tries
 * an hour, nor can one address try many.
 */
export async function findRecipient(
  db: Db,
  input: { schoolId: number; studentNumber: string; name: string; ip: string },
): Promise<Recipient> {
  const tooMany = (key: string, wait: number) =>
    new TooManyAttemptsError(key, wait, "尝试次数过多，请稍后再试");
  const ipKey = `proxy-lookup:ip:${input.ip}`;
  const byIp = await recordEvent(db, ipKey, LOOKUP_IP_RULE);
  if (byIp.count > LOOKUP_IP_RULE.limit) throw tooMany(ipKey, byIp.lockedFor);
  const sn = parseStudentNumber(input.studentNumber);
  if (!sn) throw new TopupRefused("Bad student number", "学号格式不正确", "student_number");
  const name = input.name.trim();
  if (!name || name.length > 40) throw new TopupRefused("Bad name", "请输入持卡人姓名", "name");
  // Once a 学号 has had its wrong names for the hour, it answers nothing, right or wrong: the
  // student can still share a link.
  const numberKey = `proxy-lookup:sn:${input.schoolId}:${sn}`;
  await assertNotLocked(db, numberKey, () => "尝试次数过多，请稍后再试，或请持卡人分享代充链接");
  const card = (await findCardsByStudentNumber(db, sn))
    .find((c) => c.school_id === input.schoolId);
  if (card === undefined || card.name !== name) {
    await recordEvent(db, numberKey, LOOKUP_NUMBER_RULE);
    throw new TopupRefused("No such card holder", WRONG, "name");
  }
  const recipient = await recipientOf(db, card.id);
  if (!recipient) throw new TopupRefused("Card not payable", WRONG, "name");
  return recipient;
}

/** The card account a shared link opens 代充 for, masked; null when the link is not (any more). */
export async function recipientOfLink(db: Db, token: string): Promise<Recipient | null> {
  if (!/^[A-Za-z0-9_-]{22}$/.test(token)) return null;
  const row = await db.selectFrom("topup_proxy_links").select("card_account_id")
    .where("token", "=", token).executeTakeFirst();
  return row ? await recipientOf(db, row.card_account_id) : null;
}

/** The student's 代充 link token (made the first time it is asked for). */
export async function proxyLinkOf(db: Db, cardAccountId: number): Promise<string> {
  await db.insertInto("topup_proxy_links").values({
    card_account_id: cardAccountId,
    token: randomToken(16),
  })
    .onConflict((oc) => oc.column("card_account_id").doNothing()).execute();
  const row = await db.selectFrom("topup_proxy_links").select("token")
    .where("card_account_id", "=", cardAccountId).executeTakeFirstOrThrow();
  return row.token;
}

/** A new link for the student; the old one stops working. */
export async function renewProxyLink(db: Db, cardAccountId: number): Promise<string> {
  const token = randomToken(16);
  await db.insertInto("topup_proxy_links").values({ card_account_id: cardAccountId, token })
    .onConflict((oc) => oc.column("card_account_id").doUpdateSet({ token, created_at: new Date() }))
    .execute();
  return token;
}

/** How long a confirmation page may be paid from. */
const TICKET_TTL_S = 1800;

async function ticketMac(config: Config, body: string): Promise<string> {
  return (await keyedHash(config.appSecret, "proxy-ticket", body)).slice(0, 32);
}

/** The signed ticket a confirmation page carries: which card, until when. */
export async function recipientTicket(
  config: Config,
  cardAccountId: number,
  now = Date.now(),
): Promise<string> {
  const body = `${cardAccountId}.${Math.floor(now / 1000) + TICKET_TTL_S}`;
  return `${body}.${await ticketMac(config, body)}`;
}

/** The recipient of a ticket, or null when it is forged, stale or the card can no longer be paid. */
export async function recipientOfTicket(
  deps: TopupDeps,
  ticket: string,
  now = Date.now(),
): Promise<Recipient | null> {
  const m = /^(\d{1,15})\.(\d{1,12})\.([0-9a-f]{32})$/.exec(ticket);
  if (!m || !timingSafeEqual(m[3], await ticketMac(deps.config, `${m[1]}.${m[2]}`))) return null;
  if (Number(m[2]) * 1000 < now) return null;
  return await recipientOf(deps.db, Number(m[1]));
}

/** Sums of today's 代充 (paid, or pending and still payable) of a card and of a payer. */
async function usedToday(trx: Db, cardAccountId: number, payerKey: string, now: Date) {
  const live = sql<boolean>`(state = 'paid' or (state = 'pending' and expires_at > ${now}))`;
  const row = await trx.selectFrom("topup_orders")
    .select([
      sql<
        number
      >`coalesce(sum(amount) filter (where card_account_id = ${cardAccountId}), 0)::bigint`
        .as("card"),
      sql<number>`coalesce(sum(amount) filter (where payer_key = ${payerKey}), 0)::bigint`.as(
        "payer",
      ),
      sql<number>`count(*) filter (where payer_key = ${payerKey} and state = 'pending'
        and expires_at > ${now})::int`.as("open"),
    ])
    .where("proxy", "=", true).where("created_at", ">=", chinaDayStart(now))
    .where((eb) =>
      eb.or([eb("card_account_id", "=", cardAccountId), eb("payer_key", "=", payerKey)])
    )
    .where(live).executeTakeFirstOrThrow();
  return { card: Number(row.card), payer: Number(row.payer), open: row.open };
}

/**
 * Opens a 代充 order for the ticket's card: every rule of 充值 (amount, the card's daily limit and
 * open orders), then 代充's own, checked under the card's and the payer's locks so racing forms
 * cannot pass them together.
 */
export async function openProxyOrder(
  deps: TopupDeps,
  gateways: Gateways,
  input: {
    ticket: string;
    amountText: string;
    method: string;
    payerKey: string;
    openid?: string | null;
  },
): Promise<{ order: TopupOrder; start: PaymentStart; recipient: Recipient }> {
  const recipient = await recipientOfTicket(deps, input.ticket);
  if (!recipient) {
    throw new DomainError("Stale proxy ticket", "页面已过期，请重新打开代充链接或重新输入学号姓名");
  }
  const limits = proxyLimits(deps.config);
  const { order, start } = await openOrder(deps, gateways, {
    card: recipient,
    accountId: null,
    payerKey: input.payerKey,
    amountText: input.amountText,
    method: input.method,
    openid: input.openid,
    description: `校园一信通代充-${recipient.maskedStudentNumber}`,
    async check(trx, amount, now) {
      await sql`select pg_advisory_xact_lock(7351, hashtext(${input.payerKey}))`.execute(trx);
      const used = await usedToday(trx, recipient.cardAccountId, input.payerKey, now);
      if (used.open >= limits.payerOpen) {
        throw new TopupRefused(
          "Payer has open orders",
          "未完成的代充订单过多，请稍后再试",
          "amount",
        );
      }
      if (used.payer + amount > limits.payerDaily) {
        throw new TopupRefused(
          `Payer daily limit: ${used.payer} used`,
          `超出每人每日代充限额${formatFen(limits.payerDaily)}，今日还可代充${
            formatFen(Math.max(0, limits.payerDaily - used.payer))
          }`,
          "amount",
        );
      }
      if (used.card + amount > limits.cardDaily) {
        throw new TopupRefused(
          `Card proxy daily limit: ${used.card} used`,
          `该持卡人今日接受代充已接近上限，今日还可代充${
            formatFen(Math.max(0, limits.cardDaily - used.card))
          }`,
          "amount",
        );
      }
    },
  });
  return { order, start, recipient };
}

/** A 代充 order of this payer, or null (anyone else's looks like none). */
export async function findPayerOrder(
  db: Db,
  orderNo: string,
  payerKey: string | null,
): Promise<TopupOrder | null> {
  if (!payerKey) return null;
  const order = await findOrder(db, orderNo);
  return order?.proxy && order.payer_key === payerKey ? order : null;
}
