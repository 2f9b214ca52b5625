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

/** 商户结算's statements (migration 20261221_0386). */
export interface SettlementStatementsTable {
  id: Generated<number>;
  merchant_id: number;
  period: "daily" | "weekly" | "monthly";
  /** China days, both inclusive. */
  period_start: string;
  period_end: string;
  cutoff: Date;
  gross: number;
  gross_count: number;
  refunds: number;
  refund_count: number;
  net: number;
  fee_rate_bp: number;
  fee: number;
  payable: number;
  state: Generated<"prepared" | "approved" | "rejected" | "paid">;
  prepared_by: number;
  prepared_at: Generated<Date>;
  decided_by: number | null;
  decided_at: Date | null;
  decision_note: string | null;
  paid_by: number | null;
  paid_at: Date | null;
  bank_reference: string | null;
  payout_transfer_id: number | null;
  fee_transfer_id: number | null;
}

/** The merchant's transfers a statement covers, each in one live statement at most. */
export interface SettlementLinesTable {
  transfer_id: number;
  statement_id: number;
  merchant_delta: number;
  kind: string;
  terminal_id: number | null;
  created_at: Date;
}

declare module "../platform/database.ts" {
  interface Database {
    settlement_statements: SettlementStatementsTable;
    settlement_lines: SettlementLinesTable;
  }
}
