import type { ColumnType, Generated } from "kysely";

export type LedgerAccountKind =
  | "card"
  | "merchant"
  | "gateway"
  | "utility"
  | "adjustment"
  | "void"
  | "cash"
  | "subsidy";

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
  | "topup_refund_return"
  | "subsidy"
  | "subsidy_reversal"
  | "subsidy_expiry"
  | "subsidy_return";

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
  /** Card wallets only: the money of its lots (purses other than cash), and what holds set aside of it. */
  lots: Generated<number>;
  lots_held: Generated<number>;
  /** Card wallets only: payments per meal period of one China day, {"d": day, "<period>": [n, fen]}. */
  meal_uses: ColumnType<unknown | null, never, never>;
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
  /** What the hold set aside of each lot, in the order it drew them; null: cash only. */
  lots: ColumnType<HoldLot[] | null, string | null, string | null>;
  created_at: Generated<Date>;
}

/** One lot's part of a hold. */
export interface HoldLot {
  lot: number;
  amount: number;
}

/** A purse kind: cash (the one without lots) or one whose money comes in lots (补助, …). */
export interface PurseKindsTable {
  code: string;
  name: string;
  /** Lots of a lower order are spent first; cash always last. */
  spend_order: number;
  /** Where its money may be spent (merchant categories and "utilities"); null: anywhere. */
  categories: string[] | null;
  lots: boolean;
}

/** One grant of one batch to one card: money of a purse, where and until when it may be spent. */
export interface PurseLotsTable {
  id: Generated<number>;
  card_account_id: number;
  purse: string;
  reference: string;
  grant_transfer_id: number;
  funding_account_id: number;
  batch_id: number | null;
  granted: number;
  remaining: number;
  held: Generated<number>;
  valid_from: Date;
  valid_until: Date;
  categories: string[];
  created_at: Generated<Date>;
}

/** A transfer's movement of one lot's money (signed: positive into the lot). */
export interface PurseLegsTable {
  transfer_id: number;
  lot_id: number;
  amount: number;
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
    purse_kinds: PurseKindsTable;
    purse_lots: PurseLotsTable;
    purse_legs: PurseLegsTable;
  }
}
