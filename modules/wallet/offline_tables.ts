import type { ColumnType, Generated } from "kysely";

/** A phone that may pay with 离线付款码 (docs/OFFLINE_PAYMENT_CODES.md §1). */
export interface OfflineCodeDevicesTable {
  id: Generated<number>;
  card_account_id: number;
  /** 7 digits, unique for all time: the part of a code that names the device. */
  handle: string;
  /** With APP_SECRET and the id, derives the device's key (never stored). */
  salt: string;
  /** From the user agent when it was added, for 付款码设置. */
  model: string;
  created_at: Generated<Date>;
  /** When the page last checked in online. */
  seen_at: Generated<Date>;
  /** When it last paid. */
  used_at: Date | null;
  revoked_at: Date | null;
  revoked_reason: "removed" | "frozen" | "replaced" | null;
}

/** One paid step of a device: at most one payment per device and step (the primary key). */
export interface OfflineCodeUsesTable {
  device_id: number;
  step: number;
  card_account_id: number;
  amount: number;
  china_day: ColumnType<string, string, string>;
  reference: string;
  transfer_id: number;
  created_at: Generated<Date>;
}

/** The card office's offline limits (one row, id 1). */
export interface OfflineCodeLimitsTable {
  id: number;
  pay_limit: number;
  daily_limit: number;
  updated_at: Generated<Date>;
  updated_by: number | null;
}

declare module "../platform/database.ts" {
  interface Database {
    offline_code_devices: OfflineCodeDevicesTable;
    offline_code_uses: OfflineCodeUsesTable;
    offline_code_limits: OfflineCodeLimitsTable;
  }
}
