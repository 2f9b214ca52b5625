/**
 * The morning summary: when a student's quiet hours end, the messages they held go out as one
 * message (夜间消息汇总) instead of one each. Each held message is taken once (`skip locked`, and
 * marked summarized in the transaction that writes the summary), whichever instance gets there.
 */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { formatFen } from "../platform/money.ts";
import { KINDS, type MessageData, SWITCHABLE } from "./kinds.ts";
import { minuteOf } from "./derive.ts";
import { minuteText, settingsOf } from "./settings.ts";
import type { MessageKind } from "./tables.ts";
import "./tables.ts";

/** "消费 3 笔 共¥35.00；充值到账 1 笔 共¥100.00；余额不足 1 条" for the held messages. */
export function summaryDetail(held: Array<{ kind: MessageKind; data: MessageData }>): string {
  // Security notices never wait, so the held ones are of the kinds a student may switch off.
  const parts: string[] = [];
  for (const kind of SWITCHABLE) {
    const of = held.filter((m) => m.kind === kind);
    if (of.length === 0) continue;
    const money = of.every((m) => typeof m.data.fen === "number");
    const total = of.reduce((a, m) => a + (typeof m.data.fen === "number" ? m.data.fen : 0), 0);
    const label = kind === "spend" ? "消费" : KINDS[kind].label;
    parts.push(
      money ? `${label} ${of.length} 笔 共${formatFen(total)}` : `${label} ${of.length} 条`,
    );
  }
  return parts.join("；");
}

/**
 * Writes one summary for each student whose held messages are due (their quiet hours ended);
 * returns how many summaries it wrote.
 */
export async function releaseHeld(db: Db, now = new Date(), limit = 100): Promise<number> {
  const due = await db.selectFrom("notify_messages").select("account_id").distinct()
    // A literal 'held': the held messages' index is partial, and a plan made without the values
    // (platform/database.ts) can use it only so; without it every round read all messages.
    .where("state", "=", sql.lit("held")).where("next_attempt_at", "<=", now).limit(limit)
    .execute();
  let written = 0;
  for (const { account_id: accountId } of due) {
    written += await db.transaction().execute(async (trx) => {
      const held = await trx.selectFrom("notify_messages")
        .select(["id", "kind", "data", "event_at"])
        .where("account_id", "=", accountId).where("state", "=", "held")
        .where("next_attempt_at", "<=", now).orderBy("id").forUpdate().skipLocked().execute();
      if (held.length === 0) return 0;
      const s = (await settingsOf(trx, [accountId])).get(accountId)!;
      const summary = await trx.insertInto("notify_messages").values({
        account_id: accountId,
        kind: "summary",
        source: `summary:${held[0].id}`,
        data: JSON.stringify({
          period: `${minuteText(s.quietStart)}–${minuteText(s.quietEnd)}`,
          detail: summaryDetail(held),
          count: held.length,
          time: minuteOf(now),
        }),
        event_at: now,
        state: "queued",
        next_attempt_at: now,
      }).onConflict((oc) => oc.column("source").doNothing()).returning("id").executeTakeFirst();
      await trx.updateTable("notify_messages")
        .set({ state: "summarized", summary_id: summary?.id ?? null, updated_at: now })
        .where("id", "in", held.map((m) => m.id)).execute();
      return summary ? 1 : 0;
    });
  }
  return written;
}
