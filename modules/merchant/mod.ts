/**
 * Merchants (商户): canteen windows, the supermarket, the shower service; and their terminals.
 * `merchantsByIds` gives names and categories beside another module's list; `merchantRowSql` is
 * the merchant as SQL, only for the wallet's statements that move a reader's payment (a listed
 * hot-path exception, modules/walls_sql_test.ts).
 */
export {
  CATEGORY_LABELS,
  createMerchant,
  getMerchant,
  listMerchants,
  type Merchant,
  merchantRowSql,
  merchantsByIds,
  updateMerchant,
} from "./service.ts";
export type { MerchantCategory, TerminalKind, TerminalStatus } from "./tables.ts";
/** The terminal registry: register, rotate keys, disable, and what the protocol server records. */
export {
  type Actor,
  deriveTerminalKey,
  findTerminal,
  findTerminals,
  listReaderKeys,
  listTerminalErrors,
  listTerminals,
  recordTerminalError,
  recordTerminalSeen,
  registerTerminal,
  rotateTerminalKey,
  setTerminalStatus,
  type Terminal,
  TERMINAL_KIND_LABELS,
  terminalKeyHex,
} from "./terminals.ts";
/** 商户结算's terms of each merchant: settled or not, how often, the fee, the payee. */
export {
  PERIOD_LABELS,
  setSettlementTerms,
  type SettlementPeriod,
  type SettlementTerms,
  settlementTerms,
} from "./settlement_terms.ts";
/** 商户经营者: an outside operator's read-only sign-in, tied to the merchant it runs. */
export {
  addMerchantOperator,
  merchantOfOperator,
  type MerchantOperator,
  merchantOperators,
} from "./operators.ts";
/** Reader activity the protocol server provides to the staff pages. */
export {
  provideTerminalActivity,
  type TerminalActivity,
  type TerminalTransaction,
} from "./activity.ts";
/** Staff pages for merchants and terminals, mounted under /admin. */
export { merchantRoutes } from "./routes.ts";
/** Demo merchants and readers for the embedded setup. */
export {
  DEMO_SETTLED_MERCHANT,
  DEMO_TERMINALS,
  seedDemoMerchants,
  seedDemoSettlementTerms,
} from "./demo.ts";
