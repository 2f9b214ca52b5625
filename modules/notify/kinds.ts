/**
 * What each kind of message says: its name, whether a student may switch it off, where it links,
 * and the named values it carries (the keywords a WeChat template maps, the lines of an email and
 * of 消息通知's list).
 */
import type { MessageKind, MessageState } from "./tables.ts";

/** A message's named values: text as shown; `fen` (an amount) and `count` for summaries. */
export type MessageData = Record<string, string | number>;

interface KindInfo {
  label: string;
  /** False: every student gets it (security notices; the summary carries switched-on kinds). */
  switchable: boolean;
  /** Where the message links (a stable URL). */
  path: string;
  /** The values it carries, in the order an email lists them: [name, label]. */
  lines: Array<[string, string]>;
}

export const KINDS: Record<MessageKind, KindInfo> = {
  spend: {
    label: "消费提醒",
    switchable: true,
    path: "/wallet/transactions",
    lines: [
      ["amount", "消费金额"],
      ["merchant", "消费商户"],
      ["channel", "支付方式"],
      ["time", "消费时间"],
      ["balance", "账户余额"],
    ],
  },
  topup: {
    label: "充值到账",
    switchable: true,
    path: "/wallet/transactions",
    lines: [
      ["amount", "充值金额"],
      ["method", "充值方式"],
      ["time", "到账时间"],
      ["balance", "账户余额"],
    ],
  },
  subsidy: {
    label: "补助到账",
    switchable: true,
    path: "/wallet",
    lines: [
      ["amount", "补助金额"],
      ["time", "到账时间"],
      ["balance", "账户余额"],
    ],
  },
  subsidy_expiring: {
    label: "补助即将到期",
    switchable: true,
    path: "/wallet",
    lines: [
      ["purse", "钱包"],
      ["amount", "未用金额"],
      ["until", "到期时间"],
      ["time", "提醒时间"],
    ],
  },
  refund: {
    label: "退款到账",
    switchable: true,
    path: "/wallet/transactions",
    lines: [
      ["amount", "金额"],
      ["what", "类型"],
      ["time", "时间"],
      ["balance", "账户余额"],
    ],
  },
  low_balance: {
    label: "余额不足",
    switchable: true,
    path: "/wallet/recharge",
    lines: [
      ["balance", "当前余额"],
      ["threshold", "提醒阈值"],
      ["time", "时间"],
    ],
  },
  utility_low: {
    label: "电量/水量不足",
    switchable: true,
    path: "/billing/electricity",
    lines: [
      ["room", "宿舍房间"],
      ["utility", "类型"],
      ["remaining", "剩余"],
      ["threshold", "提醒阈值"],
      ["time", "时间"],
    ],
  },
  security: {
    label: "安全提醒",
    switchable: false,
    path: "/security",
    lines: [
      ["event", "事项"],
      ["detail", "说明"],
      ["time", "时间"],
    ],
  },
  summary: {
    label: "夜间消息汇总",
    switchable: false,
    path: "/me/notifications",
    lines: [
      ["period", "免打扰时段"],
      ["detail", "消息"],
      ["time", "时间"],
    ],
  },
};

/** The kinds a student may switch off, in the order 消息通知 lists them. */
export const SWITCHABLE: MessageKind[] = [
  "spend",
  "topup",
  "subsidy",
  "subsidy_expiring",
  "refund",
  "low_balance",
  "utility_low",
];

/** How a message's state reads in 消息通知's list and the staff page. */
export const STATE_LABELS: Record<MessageState, string> = {
  queued: "发送中",
  held: "免打扰，早间汇总",
  sent: "已发送",
  failed: "发送失败",
  no_channel: "未发送（未绑定微信和邮箱）",
  summarized: "已汇总发送",
};

/** The title and lines of a message (an email's subject and body, 消息通知's list). */
export function messageText(
  kind: MessageKind,
  data: MessageData,
): { title: string; lines: string[] } {
  const info = KINDS[kind];
  const title = kind === "security" && typeof data.event === "string"
    ? `安全提醒：${data.event}`
    : kind === "utility_low" && typeof data.utility === "string"
    ? `${data.utility === "水" ? "水量" : "电量"}不足提醒`
    : info.label;
  const lines = info.lines
    .filter(([name]) => data[name] !== undefined && data[name] !== "")
    .map(([name, label]) => `${label}：${data[name]}`);
  return { title, lines };
}
