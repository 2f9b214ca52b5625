/**
 * Messages from committed facts. Each source is a committed feed (platform/feed.ts) its owner
 * writes in the transaction of the fact itself: the wallet's transfers (消费提醒, 充值到账, 退款到账,
 * 余额不足), card events and account events (security notices), billing's low-credit alerts
 * (电量/水量不足). A round takes, in one transaction, the feeds no other instance is reading
 * (`skip locked`), reads what committed after each position, writes the messages (one per source
 * fact: `source` is unique) and moves the positions. A fact that rolled back never appears; one
 * that committed is turned into messages exactly once, whichever instance reads it and whenever
 * one dies mid-round (its transaction rolls back with it). The money paths write nothing more.
 * One reader is a clock, not a feed: 补助即将到期 for the lots whose end comes near
 * (`announceLotsEnding`), its position the last lot's end.
 */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { feedHorizon, type FeedPosition } from "../platform/feed.ts";
import { chinaDateTime } from "../platform/china_time.ts";
import { formatFen } from "../platform/money.ts";
import { logger } from "../platform/log.ts";
import { accountEventsAfter, type FeedAccountEvent } from "../account/mod.ts";
import { accountsOfCards, cardEventsAfter, type FeedCardEvent } from "../card/mod.ts";
import {
  cardTransfersAfter,
  type FeedTransfer,
  type LotEnding,
  lotsEndingBy,
  lotsOfGrants,
} from "../wallet/mod.ts";
import { type FeedLowCredit, lowCreditAlertsAfter } from "../billing/mod.ts";
import type { MessageData } from "./kinds.ts";
import { type NotifySettings, quietUntil, settingsOf } from "./settings.ts";
import type { MessageKind } from "./tables.ts";
import "./tables.ts";

const log = logger("notify.derive");

/** Facts one round reads from a feed at most. */
const BATCH = 500;

/** 补助即将到期 comes this long before a lot's end (then held by quiet hours, if any). */
export const EXPIRING_NOTICE_MS = 3 * 86_400_000;

/** A message about to be written. */
export interface NewMessage {
  accountId: number;
  kind: MessageKind;
  source: string;
  data: MessageData;
  eventAt: Date;
}

interface Feed<Row extends { xid: string; id: number }> {
  read(db: Db, from: FeedPosition, horizon: string, limit: number): Promise<Row[]>;
  messages(db: Db, rows: Row[], settings: SettingsReader, now: Date): Promise<NewMessage[]>;
}

type SettingsReader = (accountIds: number[]) => Promise<Map<number, NotifySettings>>;

/** "2026-12-17 12:30" in China time. */
export function minuteOf(at: Date): string {
  return chinaDateTime(at).slice(0, 16);
}

const SPEND_KINDS = new Set(["purchase", "shower", "electricity", "water"]);
const REFUND_WHAT: Record<string, string> = {
  refund: "消费退款",
  utility_refund: "水电费退款",
  reversal: "撤销退款",
  topup_refund: "充值退回（退回付款人）",
  topup_refund_return: "充值退回失败，已返还",
};
const CHANNELS: Record<string, string> = { card: "刷卡", qr: "付款码", offline: "脱机刷卡" };
const METHODS: Record<string, string> = { wechat: "微信支付", sandbox: "测试支付" };

function topupMethod(details: unknown): string {
  const d = (details ?? {}) as { method?: unknown; info?: { proxy?: unknown } };
  const via = typeof d.method === "string" ? METHODS[d.method] ?? "在线充值" : "在线充值";
  return d.info?.proxy ? `代充（${via}）` : via;
}

function spendWhere(t: FeedTransfer): string {
  const d = (t.details ?? {}) as { label?: unknown };
  if (typeof d.label === "string") return d.label;
  return t.merchantName ?? (t.kind === "shower" ? "淋浴热水" : "消费");
}

/** The messages of one committed card transfer for a student with these settings. */
export function transferMessages(
  t: FeedTransfer,
  accountId: number,
  s: NotifySettings,
): NewMessage[] {
  const base = { accountId, eventAt: t.createdAt };
  const time = minuteOf(t.createdAt);
  const balance = formatFen(t.balanceAfter);
  const out: NewMessage[] = [];
  const amount = Math.abs(t.cardDelta);
  if (SPEND_KINDS.has(t.kind) && t.cardDelta < 0) {
    out.push({
      ...base,
      kind: "spend",
      source: `ledger:${t.id}`,
      data: {
        amount: formatFen(amount),
        merchant: spendWhere(t),
        channel: t.channel ? CHANNELS[t.channel] ?? "刷卡" : "余额支付",
        time,
        balance,
        fen: amount,
      },
    });
  } else if (t.kind === "topup" && t.cardDelta > 0) {
    out.push({
      ...base,
      kind: "topup",
      source: `ledger:${t.id}`,
      data: {
        amount: formatFen(amount),
        method: topupMethod(t.details),
        time,
        balance,
        fen: amount,
      },
    });
  } else if (t.kind === "subsidy" && t.cardDelta > 0) {
    // 补助发放's grant reached the card (its 补助 purse).
    out.push({
      ...base,
      kind: "subsidy",
      source: `ledger:${t.id}`,
      data: { amount: formatFen(amount), time, balance, fen: amount },
    });
  } else if (REFUND_WHAT[t.kind] && t.cardDelta !== 0) {
    out.push({
      ...base,
      kind: "refund",
      source: `ledger:${t.id}`,
      data: {
        amount: formatFen(t.cardDelta),
        what: REFUND_WHAT[t.kind],
        time,
        balance,
        fen: t.cardDelta,
      },
    });
  }
  const before = t.balanceAfter - t.cardDelta;
  // Once per crossing: only the debit that takes the balance from at or above the threshold to
  // below it (the next one, already below, is no crossing; a top-up above it arms it again).
  if (
    t.cardDelta < 0 && s.lowBalance > 0 && before >= s.lowBalance && t.balanceAfter < s.lowBalance
  ) {
    out.push({
      ...base,
      kind: "low_balance",
      source: `ledger:${t.id}:low`,
      data: { balance, threshold: formatFen(s.lowBalance), time },
    });
  }
  return out.filter((m) => !s.muted.includes(m.kind));
}

const ledgerFeed: Feed<FeedTransfer> = {
  read: cardTransfersAfter,
  async messages(db, rows, settings, now) {
    const holders = await accountsOfCards(db, rows.map((r) => r.cardAccountId));
    const byAccount = await settings([...holders.values()]);
    const messages = rows.flatMap((t) => {
      const accountId = holders.get(t.cardAccountId);
      return accountId === undefined
        ? []
        : transferMessages(t, accountId, byAccount.get(accountId)!);
    });
    return [...messages, ...await endingGrants(db, rows, settings, now)];
  },
};

/**
 * 补助即将到期 for the grants among `rows` whose lot ends within `EXPIRING_NOTICE_MS` from now: a lot
 * the clock of `announceLotsEnding` has passed already (granted with a near end, or committed
 * late) is announced as its grant is read.
 */
async function endingGrants(
  db: Db,
  rows: FeedTransfer[],
  settings: SettingsReader,
  now: Date,
): Promise<NewMessage[]> {
  const grants = rows.filter((t) => t.kind === "subsidy" && t.cardDelta > 0);
  if (grants.length === 0) return [];
  const soon = (l: LotEnding) =>
    l.validUntil.getTime() > now.getTime() &&
    l.validUntil.getTime() <= now.getTime() + EXPIRING_NOTICE_MS;
  const lots = await lotsOfGrants(
    db,
    grants.map((g) => ({ cardAccountId: g.cardAccountId, transferId: g.id })),
  );
  return await expiringMessages(db, lots.filter(soon), settings, now);
}

const CARD_EVENTS: Record<string, { event: string; detail: (e: FeedCardEvent) => string }> = {
  bound: {
    event: "一卡通账号绑定",
    detail: () => "一卡通已绑定到本一信通账号，如非本人操作请立即挂失",
  },
  unbound: { event: "一卡通解绑", detail: () => "卡务中心已解除一卡通与本账号的绑定" },
  password_changed: {
    event: "一卡通密码修改",
    detail: () => "一卡通密码已修改，如非本人操作请立即挂失",
  },
  password_reset: { event: "一卡通密码重置", detail: () => "卡务中心已将一卡通密码重置为默认密码" },
  loss_reported: {
    event: "一卡通挂失",
    detail: (e) =>
      (e.actor === "staff" ? "卡务中心已办理挂失" : "已在一卡通安全中心挂失") +
      ((e.details as { paymentCodeFrozen?: boolean } | null)?.paymentCodeFrozen
        ? "，付款码已同时冻结"
        : "，刷卡消费已停止"),
  },
  loss_lifted: {
    event: "一卡通解挂",
    detail: (e) => (e.actor === "staff" ? "卡务中心已办理解挂" : "已在一卡通安全中心解挂"),
  },
  closeout_notice: {
    event: "毕业离校销户通知",
    detail: (e) => {
      const d = (e.details ?? {}) as { closeOn?: string; refund?: string };
      return `一卡通将于 ${d.closeOn ?? ""} 起办理毕业离校销户：${
        d.refund ?? "余额将按学校规定退还"
      }。销户后卡片和付款码停止使用`;
    },
  },
  closed: {
    event: "一卡通销户",
    detail: () => "一卡通已销户，卡片和付款码已停止使用；余额退还情况见交易记录",
  },
  reissued: {
    event: "补卡",
    detail: (e) => `新卡已启用${e.chipNumber ? `（芯片卡号 ${e.chipNumber}）` : ""}，旧卡已作废`,
  },
};

const cardFeed: Feed<FeedCardEvent> = {
  read: cardEventsAfter,
  messages(_db, rows) {
    return Promise.resolve(rows.flatMap((e) => {
      const known = CARD_EVENTS[e.kind];
      if (!known || e.accountId === null) return [];
      return [{
        accountId: e.accountId,
        kind: "security" as const,
        source: `card:${e.id}`,
        eventAt: e.at,
        data: { event: known.event, detail: known.detail(e), time: minuteOf(e.at) },
      }];
    }));
  },
};

const PASSWORD_HOW: Record<string, string> = {
  changed: "登录密码已修改，其他设备已退出登录",
  email_code: "已通过邮箱验证码重设登录密码",
  staff_reset: "图文信息中心已重置登录密码，请尽快登录并设置新密码",
  after_staff_reset: "已设置新的登录密码",
};
const UNBOUND_WHY: Record<string, string> = {
  student: "已解除微信绑定，从公众号进入需输入密码登录",
  password_change: "因修改登录密码，已解除微信绑定",
  loss: "因一卡通挂失，已解除微信绑定",
  moved: "该微信已绑定到其他一信通账号",
};

function accountNotice(e: FeedAccountEvent): { event: string; detail: string } {
  const d = e.details ?? {};
  if (e.kind === "password_changed") {
    return { event: "登录密码变更", detail: PASSWORD_HOW[String(d.how)] ?? "登录密码已变更" };
  }
  if (e.kind === "wechat_bound") {
    return { event: "微信登录绑定", detail: "此后从公众号菜单进入将自动登录，可在“我的”中解除" };
  }
  return { event: "解除微信绑定", detail: UNBOUND_WHY[String(d.why)] ?? "已解除微信绑定" };
}

const accountFeed: Feed<FeedAccountEvent> = {
  read: accountEventsAfter,
  messages(_db, rows) {
    return Promise.resolve(rows.map((e) => ({
      accountId: e.accountId,
      kind: "security" as const,
      source: `account:${e.id}`,
      eventAt: e.at,
      data: { ...accountNotice(e), time: minuteOf(e.at) },
    })));
  },
};

const billingFeed: Feed<FeedLowCredit> = {
  read: lowCreditAlertsAfter,
  async messages(_db, rows, settings) {
    const byAccount = await settings(rows.flatMap((r) => r.residentIds));
    return rows.flatMap((a) =>
      a.residentIds.filter((id) => !byAccount.get(id)!.muted.includes("utility_low")).map((id) => ({
        accountId: id,
        kind: "utility_low" as const,
        source: `billing:${a.id}:${id}`,
        eventAt: a.at,
        data: {
          room: a.room,
          utility: a.utility === "water" ? "水" : "电",
          remaining: a.remaining,
          threshold: a.threshold,
          time: minuteOf(a.at),
        },
      }))
    );
  },
};

// deno-lint-ignore no-explicit-any
const FEEDS: Record<string, Feed<any>> = {
  ledger: ledgerFeed,
  card: cardFeed,
  account: accountFeed,
  billing: billingFeed,
};

/**
 * 补助即将到期 for these lots (each holding money free): one message per lot (its source is the
 * lot's, whichever way it was found) to its card's holder unless switched off.
 */
async function expiringMessages(
  db: Db,
  lots: LotEnding[],
  settings: SettingsReader,
  now: Date,
): Promise<NewMessage[]> {
  if (lots.length === 0) return [];
  const holders = await accountsOfCards(db, lots.map((l) => l.cardAccountId));
  const byAccount = await settings([...holders.values()]);
  return lots.flatMap((l): NewMessage[] => {
    const accountId = holders.get(l.cardAccountId);
    if (accountId === undefined || byAccount.get(accountId)!.muted.includes("subsidy_expiring")) {
      return [];
    }
    return [{
      accountId,
      kind: "subsidy_expiring",
      source: `lot:${l.id}:ending`,
      eventAt: now,
      data: {
        purse: l.purse,
        amount: formatFen(l.free),
        until: minuteOf(l.validUntil),
        time: minuteOf(now),
        fen: l.free,
      },
    }];
  });
}

/**
 * 补助即将到期: the lots' ends read as a clock from the row's position (`at`, `id`) up to
 * `EXPIRING_NOTICE_MS` from now (`expiringMessages`); the position moves past every lot read. A
 * lot granted after the clock passed its end is announced from its grant (`ledgerFeed`). Returns
 * the lots read.
 */
async function announceLotsEnding(
  trx: Db,
  position: { at: string | null; id: number },
  settings: SettingsReader,
  now: Date,
): Promise<number> {
  const after = { at: position.at ?? now.toISOString(), id: position.id };
  const lots = await lotsEndingBy(trx, after, new Date(now.getTime() + EXPIRING_NOTICE_MS), BATCH);
  if (lots.length === 0) return 0;
  await writeMessages(trx, await expiringMessages(trx, lots, settings, now), settings, now);
  const last = lots[lots.length - 1];
  await trx.updateTable("notify_feeds")
    .set({ at: sql<Date>`${last.position}::timestamptz`, id: last.id, updated_at: now })
    .where("name", "=", "lots_ending").execute();
  return lots.length;
}

/**
 * Writes the messages, each queued now or, inside the student's quiet hours, held until they end
 * (security notices never wait). A source already written is left as it is.
 */
async function writeMessages(
  trx: Db,
  messages: NewMessage[],
  settings: SettingsReader,
  now: Date,
): Promise<void> {
  if (messages.length === 0) return;
  const byAccount = await settings(messages.map((m) => m.accountId));
  const rows = messages.map((m) => {
    const until = m.kind === "security" ? null : quietUntil(byAccount.get(m.accountId)!, now);
    return {
      account_id: m.accountId,
      kind: m.kind,
      source: m.source,
      data: JSON.stringify(m.data),
      event_at: m.eventAt,
      state: until ? "held" as const : "queued" as const,
      next_attempt_at: until ?? now,
    };
  });
  for (let i = 0; i < rows.length; i += 500) {
    await trx.insertInto("notify_messages").values(rows.slice(i, i + 500))
      .onConflict((oc) => oc.column("source").doNothing()).execute();
  }
}

/**
 * One round over every feed no other instance is reading now; returns how many facts it read
 * (more than zero: run again at once, there may be more).
 */
export async function deriveMessages(db: Db, now = new Date()): Promise<number> {
  return await db.transaction().execute(async (trx) => {
    const feeds = await trx.selectFrom("notify_feeds").select(["name", "id"])
      .select((eb) => eb.cast<string | null>("at", "text").as("at"))
      .select((eb) => eb.cast<string>("xid", "text").as("xid"))
      .forUpdate().skipLocked().execute();
    if (feeds.length === 0) return 0;
    const horizon = await feedHorizon(trx);
    const cache = new Map<number, NotifySettings>();
    const settings: SettingsReader = async (ids) => {
      const missing = ids.filter((id) => !cache.has(id));
      for (const [id, s] of await settingsOf(trx, missing)) cache.set(id, s);
      return new Map(ids.map((id) => [id, cache.get(id)!]));
    };
    let read = 0;
    for (const f of feeds) {
      if (f.name === "lots_ending") {
        read += await announceLotsEnding(trx, f, settings, now);
        continue;
      }
      const feed = FEEDS[f.name];
      if (!feed) continue;
      const rows = await feed.read(trx, { xid: f.xid, id: f.id }, horizon, BATCH);
      if (rows.length === 0) continue;
      await writeMessages(trx, await feed.messages(trx, rows, settings, now), settings, now);
      const last = rows[rows.length - 1];
      await trx.updateTable("notify_feeds").set({ xid: last.xid, id: last.id, updated_at: now })
        .where("name", "=", f.name).execute();
      read += rows.length;
      log.debug("feed read", { feed: f.name, rows: rows.length });
    }
    return read;
  });
}
