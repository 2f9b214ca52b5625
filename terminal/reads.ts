/**
 * The read-only requests (PROTOCOL.md §3 rule 4, never recorded): SignOn, Heartbeat,
 * BalanceInquiry and BlocklistSync. They move nothing; a retry is answered afresh.
 */
import type { Terminal } from "../modules/merchant/mod.ts";
import { blocklistSince, currentBlocklistVersion, findCardByChip } from "../modules/card/mod.ts";
import { balanceAtMerchant } from "../modules/wallet/mod.ts";
import { currentShowerTariff } from "../modules/billing/mod.ts";
import {
  type BlocklistDelta,
  MAX_BLOCKLIST_ENTRIES,
  MessageCode,
  type MessageOf,
  Status,
} from "./messages.ts";
import { type Reply, replyOf, serverTime, type ServiceContext } from "./context.ts";
import { cardRefusal } from "./refusals.ts";
import { noteBlocklistHeld } from "./offline.ts";

/** "张*" / "李*明": enough for the holder to recognise, not enough to identify. */
export function maskName(name: string): string {
  const chars = [...name];
  if (chars.length <= 1) return name;
  if (chars.length === 2) return `${chars[0]}*`;
  return `${chars[0]}${"*".repeat(chars.length - 2)}${chars[chars.length - 1]}`;
}

/** SignOn `0x01`: the parameters of §4.1. */
export async function signOn(ctx: ServiceContext, terminal: Terminal): Promise<Reply> {
  const blocklistVersion = await currentBlocklistVersion(ctx.db);
  const tariff = await currentShowerTariff(ctx.db).catch(() => null);
  const s = ctx.settings;
  return replyOf({
    code: MessageCode.SignOnReply,
    status: Status.Ok,
    serverTime: serverTime(ctx),
    merchantName: terminal.merchantName,
    blocklistVersion,
    offlinePaymentLimit: s.offlinePaymentLimit,
    offlineTotalLimit: s.offlineTotalLimit,
    offlineMaxRecords: s.offlineMaxRecords,
    passwordThreshold: s.passwordThreshold,
    showerUnitPrice: tariff?.fenPerUnit ?? 0,
    showerUnit: tariff?.unit ?? "",
    showerHoldAmount: tariff?.preauthAmount ?? 0,
    heartbeatSeconds: s.heartbeatSeconds,
  });
}

function delta(d: BlocklistDelta): BlocklistDelta {
  return { version: d.version, complete: d.complete, added: d.added, removed: d.removed };
}

/** Heartbeat `0x02`: alive, and the blocklist changes the reader is missing (§4.2). */
export async function heartbeat(
  ctx: ServiceContext,
  terminal: Terminal,
  request: MessageOf<0x02>,
): Promise<Reply> {
  // Thousands of readers heartbeat every 30 s: one that holds the version already pushed is
  // answered from memory (an empty delta at its own version).
  const pushed = ctx.pushedBlocklistVersion?.() ?? null;
  const d = pushed !== null && request.blocklistVersion === pushed
    ? { version: pushed, complete: true, added: [], removed: [] }
    : await blocklistSince(ctx.db, request.blocklistVersion, MAX_BLOCKLIST_ENTRIES);
  // A version the server handed out (a future one restarts the delta from 0) is acknowledged.
  if (d.version >= request.blocklistVersion) {
    noteBlocklistHeld(ctx, terminal.id, request.blocklistVersion);
  }
  return replyOf({
    code: MessageCode.HeartbeatReply,
    status: Status.Ok,
    serverTime: serverTime(ctx),
    uploadOffline: request.offlineCount > 0,
    blocklist: delta(d),
  });
}

/** BlocklistSync `0x40` (§4.10). */
export async function blocklistSync(
  ctx: ServiceContext,
  terminal: Terminal,
  request: MessageOf<0x40>,
): Promise<Reply> {
  const d = await blocklistSince(ctx.db, request.fromVersion, MAX_BLOCKLIST_ENTRIES);
  if (d.version >= request.fromVersion) noteBlocklistHeld(ctx, terminal.id, request.fromVersion);
  return replyOf({ code: MessageCode.BlocklistSyncReply, status: Status.Ok, blocklist: delta(d) });
}

/** BalanceInquiry `0x12` (§4.5): every one takes a chip lookup, before the lookup. */
export async function balanceInquiry(
  ctx: ServiceContext,
  terminal: Terminal,
  request: MessageOf<0x12>,
): Promise<Reply> {
  const refuse = (status: number) =>
    replyOf({ code: MessageCode.BalanceInquiryReply, status, balance: 0, available: 0, name: "" });
  if (ctx.lookups && !ctx.lookups.take(terminal.id)) return refuse(Status.RateLimited);
  const card = await findCardByChip(ctx.db, request.chip);
  const refusal = cardRefusal(card);
  if (refusal !== null || !card) return refuse(refusal ?? Status.UnknownChip);
  // What this merchant sees: cash and the 补助 that may be spent here (§4.5).
  const b = await balanceAtMerchant(ctx.db, card.cardAccountId, terminal.merchantId);
  return replyOf({
    code: MessageCode.BalanceInquiryReply,
    status: Status.Ok,
    balance: b.balance,
    available: b.available,
    name: maskName(card.name),
  });
}
