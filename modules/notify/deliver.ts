/**
 * Delivering messages: a job queue (platform/jobs.ts) in notify_messages, worked on every
 * instance. A message goes to the student's WeChat (the 服务号 openid bound for sign-in) when its
 * kind has a template; when there is no openid, or WeChat refuses for good (43004 not following,
 * 40003 bad openid, 40037 bad template, …) or keeps failing past the attempts, it goes by email;
 * with neither it ends as no_channel. Passing failures (timeouts, 45009 rate limit, -1 busy, an
 * unreachable API, a mail server down) are retried with backoff. `client_msg_id` is the message's
 * id, so a repeat after a timeout WeChat did take is not shown twice.
 */
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { logger } from "../platform/log.ts";
import { backoffMs, type ClaimedJob, claimJobs, jobQueue, settleJob } from "../platform/jobs.ts";
import { WechatMpError } from "../platform/wechat_mp.ts";
import { findAccount, openidsOf } from "../account/mod.ts";
import type { Mailer } from "../mail/mod.ts";
import { KINDS, type MessageData, messageText } from "./kinds.ts";
import type { WechatMessenger } from "./wechat.ts";
import type { MessageKind, MessageState } from "./tables.ts";
import "./tables.ts";

const log = logger("notify");

/** The message queue: a queued message is due for delivery; every other state is final or held. */
export const MESSAGE_QUEUE = jobQueue<MessageState>({
  name: "notify.messages",
  table: "notify_messages",
  key: "id",
  active: ["queued"],
});

/** How the worker retries. */
export interface DeliveryPolicy {
  /** Attempts before WeChat is given up for email, and email for good. */
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** Longer than a WeChat and a mail timeout together, shorter than client_msg_id's ten minutes. */
  leaseMs: number;
  batchSize: number;
}

export const DEFAULT_POLICY: DeliveryPolicy = {
  maxAttempts: 5,
  baseDelayMs: 15_000,
  maxDelayMs: 5 * 60_000,
  leaseMs: 60_000,
  batchSize: 50,
};

/** What delivering needs. `now` is injected so tests move time instead of sleeping. */
export interface DeliveryContext {
  db: Db;
  config: Config;
  mailer: Mailer;
  /** Null when the 服务号 is not configured: every message goes by email. */
  wechat: WechatMessenger | null;
  policy?: Partial<DeliveryPolicy>;
  now?: () => Date;
}

/** WeChat error codes worth asking again later; any other refusal falls back to email at once. */
const PASSING = new Set([-1, 45009, 45047, 40001, 40014, 42001]);

/** How an error reads in error_code: the WeChat errcode, "timeout" or "unreachable". */
function codeOf(err: unknown): string {
  if (err instanceof WechatMpError) {
    return err.errcode !== null ? String(err.errcode) : err.timedOut ? "timeout" : "unreachable";
  }
  return "error";
}

function passing(err: unknown): boolean {
  if (!(err instanceof WechatMpError)) return true;
  return err.errcode === null || PASSING.has(err.errcode);
}

interface Row {
  id: number;
  account_id: number;
  kind: MessageKind;
  data: MessageData;
}

type Job = ClaimedJob<MessageState>;

async function deliverOne(
  ctx: DeliveryContext,
  policy: DeliveryPolicy,
  job: Job,
  m: Row,
  contact: { openid: string | null; email: string | null },
  now: Date,
): Promise<void> {
  const settle = (change: Parameters<typeof settleJob<MessageState>>[3]) =>
    settleJob(ctx.db, MESSAGE_QUEUE, job, change, { now });
  const retry = (code: string, error: string) =>
    settle({
      nextAttemptAt: new Date(now.getTime() + backoffMs(policy, job.attempts)),
      lastError: error,
      set: { error_code: code },
    });
  const lastTry = job.attempts >= policy.maxAttempts;
  const url = `${ctx.config.baseUrl}${KINDS[m.kind].path}`;
  const template = ctx.wechat?.templateFor(m.kind) ?? null;
  let why = !ctx.wechat
    ? "wechat_off"
    : !contact.openid
    ? "no_openid"
    : template
    ? null
    : "no_template";
  if (ctx.wechat && template && contact.openid) {
    try {
      await ctx.wechat.send({
        openid: contact.openid,
        template,
        data: m.data,
        url,
        clientMsgId: `yxt${m.id}`,
      });
      await settle({
        state: "sent",
        lastError: null,
        set: { channel: "wechat", sent_at: now, error_code: null },
      });
      return;
    } catch (err) {
      why = codeOf(err);
      if (passing(err) && !lastTry) {
        await retry(why, (err as Error).message);
        return;
      }
      log.warn("wechat message refused, trying email", { messageId: m.id, code: why });
    }
  }
  if (!contact.email) {
    const refused = why !== null && !["wechat_off", "no_openid", "no_template"].includes(why);
    await settle(
      refused
        ? { state: "failed", lastError: `WeChat ${why}, no email`, set: { error_code: why } }
        : { state: "no_channel", set: { error_code: why } },
    );
    return;
  }
  const { title, lines } = messageText(m.kind, m.data);
  try {
    await ctx.mailer.send({
      to: contact.email,
      subject: `【校园一信通】${title}`,
      text: `${lines.join("\n")}\n\n查看详情：${url}\n（您可在“我的 → 消息通知”中设置提醒）`,
    });
    // The email went; error_code keeps why WeChat did not (staff see fallbacks by cause).
    await settle({
      state: "sent",
      lastError: null,
      set: { channel: "email", sent_at: now, error_code: why },
    });
  } catch (err) {
    if (lastTry) {
      await settle({
        state: "failed",
        lastError: (err as Error).message,
        set: { error_code: "mail" },
      });
    } else {
      await retry("mail", (err as Error).message);
    }
  }
}

/** Claims and delivers what is due now; returns how many were claimed. Safe on many instances. */
export async function deliverDue(ctx: DeliveryContext): Promise<number> {
  const policy = { ...DEFAULT_POLICY, ...ctx.policy };
  const now = ctx.now?.() ?? new Date();
  const jobs = await claimJobs(ctx.db, MESSAGE_QUEUE, {
    now,
    leaseMs: policy.leaseMs,
    limit: policy.batchSize,
  });
  if (jobs.length === 0) return 0;
  const rows = await ctx.db.selectFrom("notify_messages")
    .select(["id", "account_id", "kind", "data"])
    .where("id", "in", jobs.map((j) => j.key)).execute();
  const byId = new Map(rows.map((r) => [r.id, r as Row]));
  const accountIds = [...new Set(rows.map((r) => r.account_id))];
  const openids = ctx.wechat ? await openidsOf(ctx.db, accountIds) : new Map<number, string>();
  const emails = new Map<number, string | null>();
  for (const id of accountIds) emails.set(id, (await findAccount(ctx.db, id))?.email ?? null);
  await Promise.all(jobs.map(async (job) => {
    const m = byId.get(job.key)!;
    try {
      await deliverOne(ctx, policy, job, m, {
        openid: openids.get(m.account_id) ?? null,
        email: emails.get(m.account_id) ?? null,
      }, now);
    } catch (err) {
      // The lease runs out and another attempt follows; nothing was recorded as sent.
      log.error("message delivery crashed", { messageId: job.key, err: (err as Error).message });
    }
  }));
  return jobs.length;
}
