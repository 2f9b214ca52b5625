import type { ColumnType, Generated } from "kysely";

/** How a batch's balances are refunded. */
export type RefundRule = "origin_first" | "payout_only";
/** How the payout list is paid. */
export type PayoutMethod = "cash" | "bank";
export type BatchState = "draft" | "scheduled" | "cancelled";
export type CardJobState = "pending" | "queued" | "done" | "failed";
/** What happened to a closed card's balance. */
export type Disposition = "none" | "refunded" | "payout" | "kept" | "debt";

/** 毕业离校's batches (migration 20261221_0700). */
export interface CloseoutBatchesTable {
  id: Generated<number>;
  name: string;
  school_id: number;
  criteria: ColumnType<unknown, string, string>;
  close_on: string;
  refund_rule: RefundRule;
  threshold: number;
  payout_method: PayoutMethod;
  state: Generated<BatchState>;
  card_count: number;
  created_by: number;
  created_at: Generated<Date>;
  notified_at: Date | null;
  scheduled_by: number | null;
  scheduled_at: Date | null;
  cancelled_at: Date | null;
}

/** One card of a batch, a job of its own (platform/jobs.ts). */
export interface CloseoutCardsTable {
  id: Generated<number>;
  batch_id: number;
  card_account_id: number;
  student_number: string;
  name: string;
  state: CardJobState;
  attempts: Generated<number>;
  next_attempt_at: Generated<Date>;
  lease_token: string | null;
  lease_expires_at: Date | null;
  last_error: string | null;
  updated_at: Generated<Date>;
  outcome: "closed" | "already_closed" | null;
  /** The cash purse when its money was first decided (before any refund). */
  balance: number | null;
  refunded: number | null;
  refund_nos: string[] | null;
  left_on_card: number | null;
  disposition: Disposition | null;
  debt: number | null;
  finished_at: Date | null;
}

declare module "../platform/database.ts" {
  interface Database {
    closeout_batches: CloseoutBatchesTable;
    closeout_cards: CloseoutCardsTable;
  }
}
