import type { Generated } from "kysely";

export type TopupMethod = "sandbox" | "wechat";
export type TopupState = "pending" | "paid" | "closed";

export interface TopupOrdersTable {
  id: Generated<number>;
  /** Our order number, sent to the gateway as out_trade_no. */
  order_no: string;
  /** Who opened it; null for 代充 (paid by someone without an account here). */
  account_id: number | null;
  card_account_id: number;
  amount: number;
  method: TopupMethod;
  state: Generated<TopupState>;
  gateway_txn_id: string | null;
  prepay_id: string | null;
  transfer_id: number | null;
  expires_at: Date;
  created_at: Generated<Date>;
  paid_at: Date | null;
  closed_at: Date | null;
  last_checked_at: Date | null;
  flagged: Generated<boolean>;
  flag_reason: string | null;
  /** 代充: paid by someone else for this card account. */
  proxy: Generated<boolean>;
  /** 代充's payer ("wx:<openid>" or "web:<hash of a browser token>"), for limits and its page. */
  payer_key: string | null;
}

/** A card account's 代充 link: whoever has it may pay into that card, and learns nothing else. */
export interface TopupProxyLinksTable {
  card_account_id: number;
  token: string;
  created_at: Generated<Date>;
}

export interface TopupNotifiesTable {
  id: Generated<number>;
  method: string;
  order_no: string | null;
  received_at: Generated<Date>;
  outcome: string;
  amount: number | null;
  expected_amount: number | null;
  gateway_txn_id: string | null;
  detail: string | null;
  flagged: Generated<boolean>;
  resolved_by: number | null;
  resolved_at: Date | null;
  resolution: string | null;
}

export interface TopupWechatPayersTable {
  account_id: number;
  openid: string;
  updated_at: Generated<Date>;
}

export interface SandboxPaymentsTable {
  order_no: string;
  amount: number;
  state: Generated<"NOTPAY" | "SUCCESS" | "CLOSED">;
  txn_id: string;
  created_at: Generated<Date>;
  paid_at: Date | null;
}

export interface SandboxNotifiesTable {
  id: Generated<number>;
  order_no: string;
  body: string;
  tamper: string | null;
  due_at: Date;
  delivered_at: Date | null;
  attempts: Generated<number>;
  last_status: number | null;
}

export interface SandboxSettingsTable {
  id: number;
  notify_mode: string;
  updated_at: Generated<Date>;
}

export type TopupRefundState = "processing" | "succeeded" | "failed" | "abnormal";

export interface TopupRefundsTable {
  id: Generated<number>;
  refund_no: string;
  reference: string;
  order_id: number;
  amount: number;
  reason: string;
  staff_id: number;
  state: Generated<TopupRefundState>;
  transfer_id: number;
  return_transfer_id: number | null;
  gateway_refund_id: string | null;
  gateway_state: string | null;
  created_at: Generated<Date>;
  finished_at: Date | null;
  last_checked_at: Date | null;
}

export interface SandboxRefundsTable {
  refund_no: string;
  order_no: string;
  amount: number;
  refund_id: string;
  created_at: Generated<Date>;
}

declare module "../platform/database.ts" {
  interface Database {
    topup_orders: TopupOrdersTable;
    topup_proxy_links: TopupProxyLinksTable;
    topup_notifies: TopupNotifiesTable;
    topup_wechat_payers: TopupWechatPayersTable;
    sandbox_payments: SandboxPaymentsTable;
    sandbox_notifies: SandboxNotifiesTable;
    sandbox_settings: SandboxSettingsTable;
    topup_refunds: TopupRefundsTable;
    sandbox_refunds: SandboxRefundsTable;
  }
}
