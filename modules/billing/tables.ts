import type { ColumnType, Generated } from "kysely";

/** A dorm utility account kind of a room. */
export type Utility = "electricity" | "water";
export type TariffKind = Utility | "shower";
export type TariffUnit = "kwh" | "ton" | "liter" | "second";
export type PurchaseStatus = "paying" | "declined" | "delivering" | "delivered" | "refunded";
export type JobState = "paying" | "pending" | "refunding" | "delivered" | "refunded" | "declined";

export interface BillingBuildingsTable {
  id: Generated<number>;
  /** Short stable code used in CSV imports, e.g. "B01". */
  code: string;
  name: string;
  created_at: Generated<Date>;
}

export interface BillingRoomsTable {
  id: Generated<number>;
  building_id: number;
  /** Room number as printed on the door, e.g. "305". */
  number: string;
  capacity: Generated<number>;
  active: Generated<boolean>;
  created_at: Generated<Date>;
}

export interface BillingResidentsTable {
  account_id: number;
  room_id: number;
  chosen_at: Generated<Date>;
  /** Set when the card office placed or moved the resident. */
  moved_by_staff_id: number | null;
}

export interface BillingTariffsTable {
  id: Generated<number>;
  kind: TariffKind;
  unit: TariffUnit;
  fen_per_unit: number;
  /** Shower only: the amount held on the card at the start of a shower. */
  preauth_amount: number | null;
  created_by_staff_id: number | null;
  created_at: Generated<Date>;
}

export interface BillingRoomMetersTable {
  room_id: number;
  utility: Utility;
  /** Remaining credit in fen, as last reported by the meter system. */
  balance: number;
  reported_at: Date;
  /** Set when the credit crossed below the room size's threshold (one alert until it is back). */
  low_since: Date | null;
}

export interface BillingLowCreditThresholdsTable {
  utility: Utility;
  /** Room size (床位数). */
  capacity: number;
  /** Thousandths of the tariff's unit (度 or 吨). */
  milli_units: number;
  updated_by_staff_id: number | null;
  updated_at: Generated<Date>;
}

export interface BillingLowCreditAlertsTable {
  id: Generated<number>;
  room_id: number;
  utility: Utility;
  /** The reported credit, fen. */
  balance: number;
  remaining_milli: number;
  threshold_milli: number;
  at: Date;
  /** The transaction that wrote it (xid8 as text), by the column's default; for feed.ts. */
  xid: ColumnType<string, never, never>;
}

export interface BillingPurchasesTable {
  id: Generated<number>;
  /** Our order number, sent to the meter system (its idempotency key). */
  order_no: string;
  account_id: number;
  /** The one-time token of the form that created it (unique per account). */
  form_token: string;
  card_account_id: number;
  payer_name: string;
  room_id: number;
  /** "1号楼 305" at the time of purchase. */
  room_label: string;
  utility: Utility;
  amount: number;
  tariff_id: number;
  fen_per_unit: number;
  /** Purchased quantity in thousandths of the tariff's unit. */
  milli_units: number;
  status: PurchaseStatus;
  transfer_id: number | null;
  refund_transfer_id: number | null;
  created_at: Generated<Date>;
  paid_at: Date | null;
  delivered_at: Date | null;
  refunded_at: Date | null;
}

export interface BillingDeliveryJobsTable {
  purchase_id: number;
  state: JobState;
  attempts: Generated<number>;
  next_attempt_at: Date;
  lease_token: string | null;
  lease_expires_at: Date | null;
  last_error: string | null;
  updated_at: Generated<Date>;
}

export interface BillingSimMetersTable {
  room_id: number;
  utility: string;
  balance: Generated<number>;
  updated_at: Generated<Date>;
}

export interface BillingSimOrdersTable {
  order_no: string;
  room_id: number;
  utility: string;
  amount: number;
  balance_after: number;
  applied_at: Generated<Date>;
}

export interface BillingSimFaultsTable {
  scope: string;
  created_at: Generated<Date>;
}

declare module "../platform/database.ts" {
  interface Database {
    billing_buildings: BillingBuildingsTable;
    billing_rooms: BillingRoomsTable;
    billing_residents: BillingResidentsTable;
    billing_tariffs: BillingTariffsTable;
    billing_room_meters: BillingRoomMetersTable;
    billing_low_credit_thresholds: BillingLowCreditThresholdsTable;
    billing_low_credit_alerts: BillingLowCreditAlertsTable;
    billing_purchases: BillingPurchasesTable;
    billing_delivery_jobs: BillingDeliveryJobsTable;
    billing_sim_meters: BillingSimMetersTable;
    billing_sim_orders: BillingSimOrdersTable;
    billing_sim_faults: BillingSimFaultsTable;
  }
}
