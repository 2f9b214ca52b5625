/**
 * The notifier's worker: each round derives messages from what committed (derive.ts), writes the
 * morning summaries that are due (summaries.ts) and delivers what is queued (deliver.ts). Every
 * instance runs one; the feeds, summaries and message leases keep them from doing anything twice.
 */
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { logger } from "../platform/log.ts";
import { startJobWorker } from "../platform/jobs.ts";
import { loadWechatMpConfig } from "../platform/wechat_mp.ts";
import type { Mailer } from "../mail/mod.ts";
import { deriveMessages } from "./derive.ts";
import { deliverDue, type DeliveryContext, MESSAGE_QUEUE } from "./deliver.ts";
import { releaseHeld } from "./summaries.ts";
import { loadTemplates, WechatMessenger } from "./wechat.ts";

const log = logger("notify");

/** The 服务号 messenger of this configuration, or null without WECHAT_APPID/WECHAT_APP_SECRET. */
export function buildMessenger(
  deps: { db: Db; config: Config },
  fetcher?: typeof fetch,
): WechatMessenger | null {
  const mp = loadWechatMpConfig(deps.config.env);
  if (!mp) return null;
  return new WechatMessenger(deps.db, mp, loadTemplates(deps.config.env), fetcher);
}

/** One round: derive, summarise, deliver. Returns how much it did (more than zero: go again). */
export async function runNotifierRound(ctx: DeliveryContext): Promise<number> {
  const now = ctx.now?.() ?? new Date();
  const derived = await deriveMessages(ctx.db, now);
  const summaries = await releaseHeld(ctx.db, now);
  return derived + summaries + await deliverDue(ctx);
}

/**
 * Starts the notifier on this instance (every NOTIFY_POLL_MS, default 1000) and returns the
 * function that stops it (for `deps.onShutdown`); it waits for the round in progress.
 */
export function startNotifier(
  deps: { db: Db; config: Config; mailer: Mailer },
  options: { pollMs?: number; fetcher?: typeof fetch } = {},
): () => Promise<void> {
  const wechat = buildMessenger(deps, options.fetcher);
  const poll = Number(deps.config.env.NOTIFY_POLL_MS ?? "1000");
  log.info("notifier started", {
    wechat: wechat ? [...wechat.templates.keys()] : "off",
    mail: deps.mailer.kind,
  });
  const worker = startJobWorker(MESSAGE_QUEUE, {
    log,
    pollMs: options.pollMs ?? (Number.isFinite(poll) && poll > 0 ? poll : 1000),
    run: () => runNotifierRound({ ...deps, wechat }),
  });
  return () => worker.stop();
}
