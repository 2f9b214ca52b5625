/**
 * The staff 消息 page's reads and actions: the queue's depth, failures by cause, and retrying a
 * failed message (audited).
 */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { jobCounts, retryJobNow, wakeJobWorkers } from "../platform/jobs.ts";
import { writeAudit } from "../staff/mod.ts";
import { MESSAGE_QUEUE } from "./deliver.ts";
import type { MessageKind, MessageState } from "./tables.ts";
import "./tables.ts";

/** What an error_code means, for staff. */
export const ERROR_LABELS: Record<string, string> = {
  "40001": "access_token 无效（已自动重新获取）",
  "40003": "openid 无效",
  "40037": "模板 ID 无效（检查 WECHAT_TEMPLATE_*）",
  "43004": "用户未关注服务号",
  "45009": "接口调用超过限额",
  "-1": "微信系统繁忙",
  timeout: "微信接口超时",
  unreachable: "无法连接微信接口",
  mail: "邮件发送失败",
  no_openid: "未绑定微信，改发邮件",
  no_template: "该类消息未配置模板，改发邮件",
  wechat_off: "未配置服务号，改发邮件",
};

/** The queue as the staff page shows it. */
export async function queueOverview(db: Db, now = new Date()) {
  const counts = await jobCounts(db, MESSAGE_QUEUE, now);
  const since = new Date(now.getTime() - 7 * 86_400_000);
  const byCode = await db.selectFrom("notify_messages")
    .select(["error_code", "state", sql<number>`count(*)::int`.as("n")])
    .where("updated_at", ">=", since).where("error_code", "is not", null)
    .where("state", "in", ["failed", "queued", "sent"])
    .groupBy(["error_code", "state"]).orderBy("n", "desc").execute();
  const failed = await db.selectFrom("notify_messages")
    .select([
      "id",
      "account_id",
      "kind",
      "state",
      "error_code",
      "last_error",
      "attempts",
      "updated_at",
    ])
    .where((eb) =>
      eb.or([
        eb("state", "=", "failed"),
        eb.and([eb("state", "=", "queued"), eb("attempts", ">", 0)]),
      ])
    )
    .orderBy("id", "desc").limit(50).execute();
  return {
    counts: counts.byState as Partial<Record<MessageState, number>>,
    due: counts.due,
    leased: counts.leased,
    byCode: byCode.map((r) => ({ code: r.error_code!, state: r.state, n: r.n })),
    failed: failed.map((r) => ({ ...r, kind: r.kind as MessageKind })),
  };
}

/**
 * 重试: a failed message (or one waiting for its next attempt) is due now with a fresh count of
 * attempts. False when it is neither.
 */
export async function retryMessage(
  db: Db,
  actor: { staffId: number; ip: string | null },
  id: number,
): Promise<boolean> {
  const ok = await db.transaction().execute(async (trx) => {
    const done = await retryJobNow(trx, MESSAGE_QUEUE, id, {
      now: new Date(),
      states: ["failed", "queued"],
      state: "queued",
      resetAttempts: true,
    });
    if (done) {
      await writeAudit(trx, {
        staffId: actor.staffId,
        ip: actor.ip,
        action: "notify.message_retried",
        targetType: "notify_message",
        targetId: id,
      });
    }
    return done;
  });
  if (ok) wakeJobWorkers(MESSAGE_QUEUE);
  return ok;
}

/** 全部重试: every failed message of the last seven days; how many. */
export async function retryAllFailed(
  db: Db,
  actor: { staffId: number; ip: string | null },
): Promise<number> {
  const since = new Date(Date.now() - 7 * 86_400_000);
  const n = await db.transaction().execute(async (trx) => {
    const r = await trx.updateTable("notify_messages")
      .set({ state: "queued", attempts: 0, next_attempt_at: new Date(), updated_at: new Date() })
      .where("state", "=", "failed").where("updated_at", ">=", since).executeTakeFirst();
    const count = Number(r.numUpdatedRows);
    if (count > 0) {
      await writeAudit(trx, {
        staffId: actor.staffId,
        ip: actor.ip,
        action: "notify.failed_retried",
        targetType: "notify_message",
        targetId: "all",
        after: { count },
      });
    }
    return count;
  });
  if (n > 0) wakeJobWorkers(MESSAGE_QUEUE);
  return n;
}

/** A student's latest messages, for 消息通知. */
export async function latestMessages(db: Db, accountId: number, limit = 20) {
  return await db.selectFrom("notify_messages")
    .select(["id", "kind", "data", "state", "channel", "event_at"])
    .where("account_id", "=", accountId).orderBy("id", "desc").limit(limit).execute();
}
