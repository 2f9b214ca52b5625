/** 财务处: refunds, maker-checker adjustments, merchant reports, top-up reconciliation, flags. */
export { financeRoutes } from "./routes.ts";
/** 本商户: a merchant operator's read-only page of its merchant (mount at "/admin/my-merchant"). */
export { merchantPortalRoutes } from "./portal_routes.ts";
export {
  type Actor,
  decideAdjustment,
  FinanceError,
  proposeAdjustment,
  refundPayment,
} from "./service.ts";
export { dailyReport } from "./reports.ts";
export { reconcileStatement } from "./reconciliations.ts";
export { readStatement, reconcile, type ReconcileResult } from "./reconcile.ts";
/**
 * 脱机消费复核: the terminal server files each offline record it refused to charge
 * (`fileOfflineReview`, in its upload's transaction); finance accepts or rejects it.
 */
export {
  acceptOfflineReview,
  fileOfflineReview,
  listOfflineReviews,
  OFFLINE_REVIEW_REASONS,
  type OfflineReviewItem,
  type OfflineReviewReason,
  rejectOfflineReview,
} from "./offline.ts";
/**
 * 商户结算: statements of the merchants run by outside operators, per ended period, prepared,
 * approved by a second finance member, paid once (the payout booked in the ledger).
 */
export {
  decideStatement,
  feeOf,
  payStatement,
  periodOf,
  prepareStatements,
  settlementLedgerCheck,
  settlementOverview,
  STATEMENT_STATES,
  verifySettlements,
} from "./settlement.ts";
