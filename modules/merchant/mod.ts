/** Merchants (商户): canteen windows, the supermarket, the shower service; and their terminals. */
export {
  CATEGORY_LABELS,
  createMerchant,
  getMerchant,
  listMerchants,
  type Merchant,
} from "./service.ts";
export type { MerchantCategory } from "./tables.ts";
