/** 充值: top-up orders, the payment gateways (WeChat Pay v3 JSAPI, sandbox) and their notifies. */
export { topupRoutes } from "./routes.ts";
export {
  buildGateways,
  chinaDayStart,
  findOrder,
  type Gateways,
  listFlaggedNotifies,
  listFlaggedOrders,
  listOrders,
  ordersByNumbers,
  paidOrdersBetween,
  resolveFlaggedNotify,
  runTopupTick,
  sandboxOf,
  settlePaid,
  startTopupLoop,
  topupLimits,
  type TopupOrder,
} from "./service.ts";
export { type PaymentGateway } from "./gateway.ts";
export { SANDBOX_MODES, type SandboxGateway, type SandboxMode } from "./sandbox.ts";
export { decryptResource, loadWechatConfig, WechatGateway } from "./wechat.ts";
export type { TopupMethod, TopupState } from "./tables.ts";
