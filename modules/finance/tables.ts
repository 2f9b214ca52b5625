import type { ColumnType, Generated } from "kysely";

export interface FinanceRefundsTable {
  id: Generated<number>;
  reference: string;
  transfer_id: number;
  amount: number;
  reason: string;
  staff_id: number;
  refund_transfer_id: number | null;
  created_at: Generated<Date>;
}

export interface FinanceAdjustmentsTable {
  id: Generated<number>;
  card_account_id: number;
  /** Signed fen: positive credits the card, negative debits it. */
  amount: number;
  reason: string;
  state: Generated<"proposed" | "approved" | "rejected">;
  proposed_by: number;
  proposed_at: Generated<Date>;
  decided_by: number | null;
  decided_at: Date | null;
  transfer_id: number | null;
}

export interface FinanceReconciliationsTable {
  id: Generated<number>;
  staff_id: number;
  filename: string;
  period_from: ColumnType<Date | string, string, string>;
  period_to: ColumnType<Date | string, string, string>;
  rows_total: number;
  matched: number;
  missing_ours: number;
  missing_theirs: number;
  mismatched: number;
  result: ColumnType<unknown, string, string>;
  created_at: Generated<Date>;
}

export interface FinanceOfflineReviewsTable {
  id: Generated<number>;
  /** The ledger reference the record is charged under: `T<terminal>:O<offline sequence>`. */
  reference: string;
  terminal_id: number;
  terminal_name: string;
  merchant_id: number;
  merchant_name: string;
  offline_sequence: number;
  chip: string;
  card_account_id: number | null;
  amount: number;
  occurred_at: Date;
  /** A key of OFFLINE_REVIEW_REASONS. */
  reason: string;
  state: Generated<"pending" | "accepted" | "rejected">;
  decided_by: number | null;
  decided_at: Date | null;
  note: string | null;
  transfer_id: number | null;
  created_at: Generated<Date>;
}

declare module "../platform/database.ts" {
  interface Database {
    finance_offline_reviews: FinanceOfflineReviewsTable;
    finance_refunds: FinanceRefundsTable;
    finance_adjustments: FinanceAdjustmentsTable;
    finance_reconciliations: FinanceReconciliationsTable;
  }
}
