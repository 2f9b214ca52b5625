/**
 * 消息通知 (the notifier): a WeChat 服务号 template message, or an email when there is no WeChat,
 * for every spend, top-up, refund, low balance, low room credit and security event, derived from
 * committed facts (derive.ts) and delivered by the job queue on every instance (deliver.ts), with
 * quiet hours and a morning summary; the students' settings and the staff 消息 page.
 */
import "./tables.ts";

/** 我的 → 消息通知 (mount at "/") and the staff 消息 page (mount at "/admin"). */
export { notifyAdminRoutes, notifyRoutes } from "./routes.ts";
/** The worker every instance runs (main.ts), and one round of it for tests and tools. */
export { buildMessenger, runNotifierRound, startNotifier } from "./loop.ts";
/** The message queue (platform/jobs.ts) and the delivery policy. */
export { DEFAULT_POLICY, type DeliveryContext, MESSAGE_QUEUE } from "./deliver.ts";
export { DEFAULT_SETTINGS, type NotifySettings, quietUntil, saveSettings } from "./settings.ts";
export { KINDS, messageText, SWITCHABLE } from "./kinds.ts";
export { loadTemplates, type Template, WechatMessenger } from "./wechat.ts";
export type { MessageKind, MessageState } from "./tables.ts";
