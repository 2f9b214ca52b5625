import type { Generated } from "kysely";

export type MerchantCategory = "canteen" | "supermarket" | "shower" | "other";

export interface MerchantsTable {
  id: Generated<number>;
  /** Short stable code, e.g. "CANTEEN-1". */
  code: string;
  name: string;
  category: MerchantCategory;
  active: Generated<boolean>;
  created_at: Generated<Date>;
}

export type TerminalKind = "canteen_pos" | "supermarket_pos" | "qr_scanner" | "shower";
export type TerminalStatus = "active" | "disabled";

export interface TerminalsTable {
  id: Generated<number>;
  merchant_id: number;
  kind: TerminalKind;
  name: string;
  status: Generated<TerminalStatus>;
  key_version: Generated<number>;
  last_seen_at: Date | null;
  last_address: string | null;
  error_count: Generated<number>;
  created_at: Generated<Date>;
}

export interface TerminalErrorsTable {
  id: Generated<number>;
  terminal_id: number;
  at: Generated<Date>;
  code: string;
  detail: string;
  address: string | null;
}

/** 商户结算's terms of a merchant run by an outside operator (migration 20261221_0060). */
export interface MerchantSettlementTermsTable {
  merchant_id: number;
  settles: boolean;
  period: "daily" | "weekly" | "monthly";
  /** The management fee the school keeps, in basis points of the net (350 = 3.50%). */
  fee_rate_bp: number;
  payee_name: string | null;
  payee_bank: string | null;
  payee_account: string | null;
  updated_at: Generated<Date>;
}

/** 商户经营者: a staff sign-in tied to the merchant it runs (migration 20261223_0061). */
export interface MerchantOperatorsTable {
  staff_id: number;
  merchant_id: number;
  created_at: Generated<Date>;
}

declare module "../platform/database.ts" {
  interface Database {
    merchants: MerchantsTable;
    merchant_settlement_terms: MerchantSettlementTermsTable;
    merchant_operators: MerchantOperatorsTable;
    terminals: TerminalsTable;
    terminal_errors: TerminalErrorsTable;
  }
}
