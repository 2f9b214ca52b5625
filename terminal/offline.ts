/**
 * Offline uploads: the payments a POS accepted while it could not reach the server, applied in
 * the reader's own offline sequence, each once.
 */
import { logger } from "../modules/platform/log.ts";
import type { Terminal } from "../modules/merchant/mod.ts";
import { findCardByChip } from "../modules/card/mod.ts";
import { applyOfflinePayment } from "../modules/wallet/mod.ts";
import { type Message, MessageCode, Status } from "./messages.ts";
import { offlineAcked, saveOfflineRecord } from "./repository.ts";
import type { Outcome, ServiceContext } from "./service.ts";

const log = logger("terminal.offline");

const MAX_AMOUNT = 100_000_000;

/** Applies an upload's records (inside the request's transaction) and returns its reply. */
export async function applyOfflineUpload(
  ctx: ServiceContext,
  t: Terminal,
  m: Extract<Message, { code: 0x50 }>,
): Promise<Outcome> {
  let acked = await offlineAcked(ctx.db, t.id);
  let applied = 0;
  let duplicates = 0;
  let total = 0;
  const records = [...m.records].sort((a, b) => a.offlineSequence - b.offlineSequence);
  for (const r of records) {
    if (r.offlineSequence <= acked) {
      duplicates++;
      continue;
    }
    // A gap: what follows waits until the missing record arrives (the ack tells the reader).
    if (r.offlineSequence !== acked + 1) break;
    const card = await findCardByChip(ctx.db, r.chip);
    let balanceAfter: number | null = null;
    let outcome = "unknown_chip";
    if (card && r.amount > 0 && r.amount <= MAX_AMOUNT) {
      const paid = await applyOfflinePayment(ctx.db, {
        cardAccountId: card.cardAccountId,
        merchantId: t.merchantId,
        terminalId: t.id,
        amount: r.amount,
        reference: `T${t.id}:O${r.offlineSequence}`,
        occurredAt: new Date(r.occurredAt * 1000),
      });
      balanceAfter = paid.balanceAfter;
      outcome = "applied";
      total += r.amount;
    } else if (card) {
      outcome = "invalid_amount";
    }
    await saveOfflineRecord(ctx.db, {
      terminalId: t.id,
      offlineSequence: r.offlineSequence,
      occurredAt: new Date(r.occurredAt * 1000),
      chip: r.chip,
      amount: r.amount,
      cardAccountId: card?.cardAccountId ?? null,
      outcome,
      balanceAfter,
    });
    if (outcome !== "applied") {
      log.warn("offline record not applied", {
        terminal: t.id,
        offlineSequence: r.offlineSequence,
        outcome,
      });
    }
    acked = r.offlineSequence;
    applied++;
  }
  return {
    message: {
      code: MessageCode.OfflineUploadReply,
      status: Status.Ok,
      ackedSequence: acked,
      applied,
      duplicates,
    },
    amount: total,
    cardAccountId: null,
  };
}
