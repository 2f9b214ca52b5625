import type { ColumnType, Generated } from "kysely";

/** What a message announces. */
export type MessageKind =
  | "spend"
  | "topup"
  | "subsidy"
  | "subsidy_expiring"
  | "refund"
  | "low_balance"
  | "utility_low"
  | "security"
  | "summary";

/**
 * queued (a worker delivers it), held (quiet hours: it waits for the morning summary), then one of
 * sent, failed (no channel took it), no_channel (no WeChat and no email), summarized (went out in
 * a summary).
 */
export type MessageState = "queued" | "held" | "sent" | "failed" | "no_channel" | "summarized";

export interface NotifySettingsTable {
  account_id: number;
  /** Kinds the student switched off (never "security"). */
  muted: ColumnType<string[], string[] | undefined, string[]>;
  /** 余额不足 below this many fen. */
  low_balance: Generated<number>;
  quiet: Generated<boolean>;
  /** Minutes into the China day. */
  quiet_start: Generated<number>;
  quiet_end: Generated<number>;
  updated_at: Generated<Date>;
}

export interface NotifyFeedsTable {
  name: string;
  /** xid8 as text. */
  xid: ColumnType<string, string | undefined, string>;
  id: Generated<number>;
  /** A clock's position ('lots_ending': the end of the last lot announced), null for the others. */
  at: ColumnType<Date | null, Date | null | undefined, Date | null>;
  updated_at: Generated<Date>;
}

export interface NotifyMessagesTable {
  id: Generated<number>;
  account_id: number;
  kind: MessageKind;
  source: string;
  data: ColumnType<Record<string, string | number>, string, string>;
  event_at: Date;
  state: MessageState;
  channel: "wechat" | "email" | null;
  attempts: Generated<number>;
  next_attempt_at: Date;
  lease_token: string | null;
  lease_expires_at: Date | null;
  last_error: string | null;
  /** Why the last attempt failed: a WeChat errcode ("43004"), "timeout", "mail", "no_template". */
  error_code: string | null;
  summary_id: number | null;
  sent_at: Date | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface NotifyWechatTokensTable {
  app_id: string;
  token: string;
  expires_at: Date;
  updated_at: Generated<Date>;
}

declare module "../platform/database.ts" {
  interface Database {
    notify_settings: NotifySettingsTable;
    notify_feeds: NotifyFeedsTable;
    notify_messages: NotifyMessagesTable;
    notify_wechat_tokens: NotifyWechatTokensTable;
  }
}
