/** 充值: top-up orders, the payment gateways (WeChat Pay v3 JSAPI, sandbox) and their notifies. */
export { topupRoutes } from "./routes.ts";
/** This deployment's gateways and top-up limits. */
export { buildGateways, type Gateways, sandboxOf, topupLimits } from "./deployment.ts";
/** An order by number, and a gateway's word that it was paid (credits it exactly once). */
export { findOrder, settlePaid, type TopupOrder } from "./orders.ts";
/** What finance reads: flagged orders and notifies, a period's paid orders, recent orders. */
export {
  listFlaggedOrders,
  listOrders,
  type OrderFilter,
  ordersByNumbers,
  pageOrders,
  paidOrdersBetween,
} from "./order_lists.ts";
export { listFlaggedNotifies, resolveFlaggedNotify } from "./notifies.ts";
/** The background loop: pending orders, expiries, sandbox notifies, refunds on their way. */
export { runTopupTick, startTopupLoop } from "./loop.ts";
/** 退回微信: finance pays a paid top-up back through its gateway; the loop follows it to the end. */
export {
  applyRefundStatus,
  checkRefunds,
  listTopupRefunds,
  refundable,
  REFUNDABLE_DAYS,
  refundableByCard,
  refundsOfOrder,
  refundToOrigin,
  requestTopupRefund,
  submitRefunds,
  type TopupRefund,
} from "./refunds.ts";
export { type PaymentGateway, type RefundStatus } from "./gateway.ts";
export { SANDBOX_MODES, type SandboxGateway, type SandboxMode } from "./sandbox.ts";
export { decryptResource, loadWechatConfig, WechatGateway } from "./wechat.ts";
export type { TopupMethod, TopupState } from "./tables.ts";
