/**
 * What each request does: the dispatch of an accepted request to its handler (the money-moving
 * ones recorded once, once.ts; the read-only ones in reads.ts), and the staff pages' view of a
 * terminal's recorded requests.
 */
import type { Db } from "../modules/platform/database.ts";
import type { Terminal } from "../modules/merchant/mod.ts";
import { type Message, MessageCode, messageName, Status, statusName } from "./messages.ts";
import type { RawFrame } from "./parser.ts";
import { type Reply, replyOf, serverTime, type ServiceContext } from "./context.ts";
import { handleMoneyRequest } from "./once.ts";
import { cardPayment, qrPayment } from "./payments.ts";
import { isOfflineCode, offlineCodePayment } from "./offline_codes.ts";
import { showerEnd, showerStart } from "./showers.ts";
import { reversal } from "./reversal.ts";
import { blocklistAcksWritten, offlineUpload } from "./offline.ts";
import { balanceInquiry, blocklistSync, heartbeat, signOn } from "./reads.ts";
import { listRequests } from "./repository.ts";

/** Handles one accepted request and returns the reply to send. */
export async function handleRequest(
  ctx: ServiceContext,
  terminal: Terminal,
  frame: RawFrame,
  request: Message,
): Promise<Reply> {
  switch (request.code) {
    case MessageCode.SignOn:
      return await signOn(ctx, terminal);
    case MessageCode.Heartbeat:
      return await heartbeat(ctx, terminal, request);
    case MessageCode.BlocklistSync:
      return await blocklistSync(ctx, terminal, request);
    case MessageCode.BalanceInquiry:
      return await balanceInquiry(ctx, terminal, request);
    case MessageCode.CardPayment:
      return await handleMoneyRequest(cardPayment, ctx, terminal, frame, request);
    case MessageCode.QrPayment: {
      // 离线付款码 (87…) are verified from the code; online codes (88…) are looked up.
      const kind = isOfflineCode(request.paymentCode) ? offlineCodePayment : qrPayment;
      return await handleMoneyRequest(kind, ctx, terminal, frame, request);
    }
    case MessageCode.ShowerStart:
      return await handleMoneyRequest(showerStart, ctx, terminal, frame, request);
    case MessageCode.ShowerEnd:
      return await handleMoneyRequest(showerEnd, ctx, terminal, frame, request);
    case MessageCode.Reversal:
      return await handleMoneyRequest(reversal, ctx, terminal, frame, request);
    case MessageCode.OfflineUpload:
    case MessageCode.OfflineUploadItemized:
    case MessageCode.OfflineUploadMixed:
      // Outside the request's transaction: the writes may need its connection.
      await blocklistAcksWritten(terminal.id);
      return await handleMoneyRequest(offlineUpload, ctx, terminal, frame, request);
    default:
      return replyOf({
        code: MessageCode.Error,
        status: Status.UnknownType,
        serverTime: serverTime(ctx),
      });
  }
}

/** Money-moving requests of a terminal for the staff pages, newest first. */
export async function terminalTransactions(db: Db, terminalId: number, limit: number) {
  const rows = await listRequests(db, terminalId, limit);
  return rows.map((r) => ({
    sequence: r.sequence,
    type: messageName(r.type) ?? String(r.type),
    status: statusName(r.status),
    amount: r.amount,
    at: r.created_at,
  }));
}
