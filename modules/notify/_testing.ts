/** The notifier's test world: the app, the WeChat stand-in, and rounds driven with a chosen clock. */
import { setupApp } from "../testkit/mod.ts";
import { testConfig } from "../platform/testing.ts";
import { startWechatStandIn } from "../platform/wechat_standin.ts";
import { createMailer, listOutbox } from "../mail/mod.ts";
import { bindWechatLogin } from "../account/mod.ts";
import { createMerchant } from "../merchant/mod.ts";
import { payFromCard } from "../wallet/mod.ts";
import { horizonPassesNow } from "../platform/feed.ts";
import { buildMessenger, runNotifierRound } from "./loop.ts";
import type { DeliveryContext } from "./deliver.ts";

/** Templates the stand-in knows, one per kind. */
export const TEMPLATES = {
  WECHAT_TEMPLATE_SPEND: "TPL_SPEND",
  WECHAT_TEMPLATE_SPEND_FIELDS: "amount1:amount,thing2:merchant,time3:time,amount4:balance",
  WECHAT_TEMPLATE_TOPUP: "TPL_TOPUP",
  WECHAT_TEMPLATE_SUBSIDY: "TPL_SUBSIDY",
  WECHAT_TEMPLATE_SUBSIDY_EXPIRING: "TPL_SUBSIDY_EXPIRING",
  WECHAT_TEMPLATE_REFUND: "TPL_REFUND",
  WECHAT_TEMPLATE_LOW_BALANCE: "TPL_LOW",
  WECHAT_TEMPLATE_UTILITY_LOW: "TPL_UTILITY",
  WECHAT_TEMPLATE_SECURITY: "TPL_SECURITY",
  WECHAT_TEMPLATE_SUMMARY: "TPL_SUMMARY",
};

/** Noon in China on a weekday: outside the default quiet hours. */
export const NOON = new Date("2026-12-16T12:00:00+08:00");

/**
 * The app with the 服务号 pointed at a fresh stand-in (every template known), a merchant, and
 * `round(now)` running one notifier round with that clock.
 */
export async function notifyWorld(options: { env?: Record<string, string> } = {}) {
  const standin = startWechatStandIn();
  for (const id of Object.values(TEMPLATES)) {
    if (id.startsWith("TPL_")) standin.control.templates.add(id);
  }
  const env = {
    ...testConfig().env,
    ...standin.env,
    ...TEMPLATES,
    WECHAT_MP_TIMEOUT_MS: "400",
    ...options.env,
  };
  const w = await setupApp({ env });
  const merchant = await createMerchant(w.db, {
    code: "CANTEEN1",
    name: "第一食堂",
    category: "canteen",
  });
  const mailer = createMailer({ db: w.db, config: w.config });
  const ctx: DeliveryContext = {
    db: w.db,
    config: w.config,
    mailer,
    wechat: buildMessenger({ db: w.db, config: w.config }),
  };
  let serial = 0;
  return {
    ...w,
    standin,
    merchant,
    ctx,
    /** One notifier round at `now` (default: real time). */
    async round(now?: Date) {
      await horizonPassesNow(w.db);
      return await runNotifierRound({ ...ctx, now: now ? () => now : undefined });
    },
    /** Waits until the feeds' horizon has passed everything committed so far. */
    caughtUp: () => horizonPassesNow(w.db),
    /** Rounds until one finds nothing to do. */
    async settle(now?: Date) {
      await horizonPassesNow(w.db);
      for (let i = 0; i < 20; i++) {
        if (await runNotifierRound({ ...ctx, now: now ? () => now : undefined }) === 0) return;
      }
      throw new Error("the notifier kept finding work");
    },
    /** A card payment at the canteen. */
    pay: (cardAccountId: number, amount: number) =>
      payFromCard(w.db, {
        cardAccountId,
        merchantId: merchant.id,
        amount,
        reference: `test-pay:${cardAccountId}:${++serial}:${crypto.randomUUID()}`,
      }),
    /** Binds a WeChat for sign-in (so messages go there). */
    bindWechat: (
      accountId: number,
      openid = `oStu${accountId}_${crypto.randomUUID().slice(0, 8)}`,
    ) => bindWechatLogin(w.db, accountId, openid).then(() => openid),
    outbox: (to: string) => listOutbox(w.db, { to }),
    async [Symbol.asyncDispose]() {
      await standin.close();
      await w.close();
    },
  };
}

export type NotifyWorld = Awaited<ReturnType<typeof notifyWorld>>;
