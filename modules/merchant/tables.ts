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

declare module "../platform/database.ts" {
  interface Database {
    merchants: MerchantsTable;
  }
}
