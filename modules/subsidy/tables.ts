import type { Generated } from "kysely";

export type BatchState = "draft" | "approving" | "approved" | "withdrawn";

/** 补助发放's batches (migration 20261222_0800). */
export interface SubsidyBatchesTable {
  id: Generated<number>;
  name: string;
  purpose: string;
  school_id: number;
  purse: string;
  source: "list" | "card_type";
  card_type_id: number | null;
  valid_from: Date;
  valid_until: Date;
  categories: string[];
  state: Generated<BatchState>;
  recipients: number;
  total: number;
  refused: number;
  created_by: number;
  created_at: Generated<Date>;
  approved_by: number | null;
  approved_at: Date | null;
  completed_at: Date | null;
  withdrawn_by: number | null;
  withdrawn_at: Date | null;
}

/** One row of a batch: a card and its amount, or why the row is refused. */
export interface SubsidyRecipientsTable {
  id: Generated<number>;
  batch_id: number;
  line: number;
  student_number: string;
  name: string | null;
  card_account_id: number | null;
  amount: number | null;
  error: string | null;
  granted_at: Date | null;
}

declare module "../platform/database.ts" {
  interface Database {
    subsidy_batches: SubsidyBatchesTable;
    subsidy_recipients: SubsidyRecipientsTable;
  }
}
