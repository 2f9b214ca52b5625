import type { ColumnType, Generated } from "kysely";

export type CardStatus = "normal" | "loss_reported" | "cancelled";
export type ChipStatus = "active" | "lost" | "cancelled";
export type CardKind = "student" | "staff";
export type CardEventActor = "student" | "staff" | "import" | "system" | "reader";

export interface CardAccountsTable {
  id: Generated<number>;
  school_id: number;
  student_number: string;
  name: string;
  kind: CardKind;
  /** Its 卡类别 (card_types): limits, subsidies and price rules. */
  card_type_id: number;
  /** Keyed hash (APP_SECRET) of the 身份证 number; the number itself is never stored. */
  id_number_hash: string;
  /** e.g. 5301**********123X, for display. */
  id_number_masked: string;
  /** Peppered keyed hash that verifies the default card password (see passwords.ts). */
  default_password_check: string;
  /** Argon2id (peppered) of a chosen card password; null while the default is in effect. */
  password_hash: string | null;
  status: Generated<CardStatus>;
  loss_reported_at: Date | null;
  payment_code_frozen: Generated<boolean>;
  account_id: number | null;
  bound_at: Date | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface CardChipsTable {
  id: Generated<number>;
  card_account_id: number;
  chip_number: string;
  status: ChipStatus;
  issued_at: Generated<Date>;
  lost_at: Date | null;
  cancelled_at: Date | null;
}

export interface CardBlocklistHeadTable {
  id: number;
  version: number;
}

export interface CardBlocklistChangesTable {
  version: number;
  chip_number: string;
  op: "add" | "remove";
  at: Generated<Date>;
}

export interface CardEventsTable {
  id: Generated<number>;
  card_account_id: number;
  at: Generated<Date>;
  kind: string;
  actor: CardEventActor;
  staff_id: number | null;
  account_id: number | null;
  chip_number: string | null;
  details: unknown | null;
  /** The transaction that wrote it (xid8 as text), by the column's default; for feed.ts. */
  xid: ColumnType<string | null, never, never>;
}

export interface CardImportsTable {
  id: Generated<number>;
  school_id: number;
  staff_id: number | null;
  file_name: string;
  file_hash: string;
  rows: unknown;
  errors: unknown;
  created_at: Generated<Date>;
  committed_at: Date | null;
  result: unknown | null;
}

/** 卡类别 (migration 20261222_0900). */
export interface CardTypesTable {
  id: Generated<number>;
  name: string;
  /** Whom it is for: the holder's 身份 that 毕业离校 and 补助发放 select by. */
  kind: CardKind;
  /** Ceilings of a card's 付款设置, in fen. */
  pay_limit: number;
  daily_limit: number;
  /** Whether 补助 may be issued to its cards. */
  subsidies: boolean;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

/** A card type's price rule at a merchant category. */
export interface CardTypePricesTable {
  card_type_id: number;
  category: string;
  percent_off: number;
  fen_off: number;
}

/** 餐次 of a canteen merchant, China times of day "HH:MM:SS" [starts, ends). */
export interface MealPeriodsTable {
  id: Generated<number>;
  merchant_id: number;
  name: string;
  starts: string;
  ends: string;
  max_count: number | null;
  max_amount: number | null;
  updated_at: Generated<Date>;
}

/** A card type's discount in a meal period. */
export interface MealPeriodPricesTable {
  meal_period_id: number;
  card_type_id: number;
  percent_off: number;
  fen_off: number;
}

declare module "../platform/database.ts" {
  interface Database {
    card_accounts: CardAccountsTable;
    card_chips: CardChipsTable;
    card_blocklist_head: CardBlocklistHeadTable;
    card_blocklist_changes: CardBlocklistChangesTable;
    card_events: CardEventsTable;
    card_imports: CardImportsTable;
    card_types: CardTypesTable;
    card_type_prices: CardTypePricesTable;
    meal_periods: MealPeriodsTable;
    meal_period_prices: MealPeriodPricesTable;
  }
}
