import type { ColumnType, Generated } from "kysely";

export type LedgerAccountKind =
  | "card"
  | "merchant"
  | "gateway"
  | "utility"
  | "adjustment"
  | "void"
  | "cash";

export type TransferKind =
  | "purchase"
  | "shower"
  | "electricity"
  | "water"
  | "topup"
  | "refund"
  | "utility_refund"
  | "reversal"
  | "adjustment"
  | "void"
  | "cash_out"
  | "topup_refund"
  | "topup_refund_return";

export type Channel = "card" | "qr" | "offline";

export interface LedgerAccountsTable {
  id: Generated<number>;
  kind: LedgerAccountKind;
  card_account_id: number | null;
  merchant_id: number | null;
  code: string | null;
  name: string;
  /** Card wallets only: money present, never below `held`. */
  balance: Generated<number>;
  held: Generated<number>;
  /** Card wallets only: what offline uploads took beyond the balance. */
  overdraft: Generated<number>;
  pay_limit: Generated<number>;
  daily_limit: Generated<number>;
  code_frozen: Generated<boolean>;
  spent_day: ColumnType<string | null, string | null, string | null>;
  spent_today: Generated<number>;
  created_at: Generated<Date>;
}

export interface LedgerTransfersTable {
  id: Generated<number>;
  reference: string;
  kind: TransferKind;
  channel: Channel | null;
  debit_account_id: number;
  credit_account_id: number;
  amount: number;
  card_account_id: number | null;
  card_delta: number | null;
  balance_after: number | null;
  merchant_id: number | null;
  terminal_id: number | null;
  related_transfer_id: number | null;
  payment_code: string | null;
  details: ColumnType<unknown, string | null, string | null>;
  created_at: Generated<Date>;
  /**
   * The transaction that wrote it (xid8, read as text): filled by the column's default, never by a
   * money path; null for transfers older than the column. For committed feeds (feed.ts).
   */
  xid: ColumnType<string | null, never, never>;
}

export interface LedgerHoldsTable {
  id: Generated<number>;
  reference: string;
  card_account_id: number;
  merchant_id: number;
  terminal_id: number | null;
  requested: number;
  amount: number;
  state: Generated<"active" | "settled" | "released" | "expired">;
  expires_at: Date;
  settle_reference: string | null;
  settle_transfer_id: number | null;
  charged: number | null;
  uncollected: number | null;
  closed_at: Date | null;
  close_reason: string | null;
  created_at: Generated<Date>;
}

export interface PaymentCodesTable {
  code: string;
  card_account_id: number;
  expires_at: Date;
  superseded_at: Date | null;
  used_at: Date | null;
  transfer_id: number | null;
  created_at: Generated<Date>;
}

declare module "../platform/database.ts" {
  interface Database {
    ledger_accounts: LedgerAccountsTable;
    ledger_transfers: LedgerTransfersTable;
    ledger_holds: LedgerHoldsTable;
    payment_codes: PaymentCodesTable;
  }
}
