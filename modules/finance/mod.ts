/** 财务处: refunds, maker-checker adjustments, merchant reports, top-up reconciliation, flags. */
export { financeRoutes } from "./routes.ts";
export {
  type Actor,
  dailyReport,
  decideAdjustment,
  FinanceError,
  proposeAdjustment,
  reconcileStatement,
  refundPayment,
} from "./service.ts";
export { parseCsv, readStatement, reconcile, type ReconcileResult } from "./reconcile.ts";
