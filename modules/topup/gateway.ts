import type { TopupMethod } from "./tables.ts";

/** What a gateway needs to open a payment for one of our orders. */
export interface GatewayOrder {
  orderNo: string;
  amount: number;
  description: string;
  expiresAt: Date;
  /** The payer's WeChat openid (JSAPI only). */
  openid?: string | null;
}

/** Parameters for WeixinJSBridge.invoke("getBrandWCPayRequest", …) in the webview. */
export interface JsapiParams {
  appId: string;
  timeStamp: string;
  nonceStr: string;
  package: string;
  signType: "RSA";
  paySign: string;
}

/** How the payer continues after the order is created. */
export type PaymentStart =
  | { kind: "redirect"; url: string; reference: string | null }
  | { kind: "jsapi"; reference: string; params: JsapiParams };

/** A notify whose signature checked out, reduced to what we act on. */
export interface VerifiedNotify {
  orderNo: string;
  txnId: string;
  /** Amount the payer paid, in fen. */
  amount: number;
  /** True when the gateway says the payment succeeded. */
  paid: boolean;
  /** Gateway's own state name, for the record. */
  state: string;
}

/** What a gateway says about one of our orders when asked. */
export type GatewayQuery =
  | { state: "paid"; txnId: string; amount: number }
  | { state: "pending" }
  | { state: "closed" }
  | { state: "unknown" };

/** How a gateway wants its notify answered. */
export interface NotifyAnswer {
  status: number;
  body: string | null;
  contentType?: string;
}

/** A refund of (part of) a paid order, as asked of the gateway. */
export interface GatewayRefund {
  orderNo: string;
  /** Ours, unique; the gateway pays at most once per refund number, however often it is asked. */
  refundNo: string;
  amount: number;
  /** The order's amount. */
  total: number;
  reason: string;
}

/**
 * Where a refund stands at the gateway: paid to the payer; still on its way; closed without paying
 * (the money stays with us); abnormal (the payer's account refused it: the gateway holds the money
 * until someone handles it on the merchant platform); or unknown to the gateway (never arrived).
 */
export type RefundStatus =
  | { state: "succeeded"; refundId: string }
  | { state: "processing"; refundId: string | null; detail?: string }
  | { state: "closed"; detail: string }
  | { state: "abnormal"; refundId: string | null }
  | { state: "unknown" };

/** A payment gateway for 充值. */
export interface PaymentGateway {
  readonly method: TopupMethod;
  /** Shown in [支付方式]. */
  readonly label: string;
  createPayment(order: GatewayOrder): Promise<PaymentStart>;
  /** Checks the signature (and decrypts); throws NotifyRejected when it does not check out. */
  verifyNotify(headers: Headers, body: string): Promise<VerifiedNotify>;
  /** The answer for a notify we took (recorded), or refused. */
  answer(ok: boolean, message: string): NotifyAnswer;
  query(orderNo: string): Promise<GatewayQuery>;
  /** Closes an unpaid order; "paid" when it turned out to be paid meanwhile. */
  close(orderNo: string): Promise<"closed" | "paid">;
  /** Asks for a refund; asking again with the same refund number pays nothing more. */
  refund(refund: GatewayRefund): Promise<RefundStatus>;
  queryRefund(refundNo: string): Promise<RefundStatus>;
}

/** A notify we cannot trust (bad signature, stale timestamp, undecryptable). */
export class NotifyRejected extends Error {
  constructor(message: string, readonly orderNo: string | null = null) {
    super(message);
    this.name = "NotifyRejected";
  }
}

/** The gateway could not be reached or answered something we do not understand. */
export class GatewayError extends Error {
  constructor(message: string, readonly code: string | null = null) {
    super(message);
    this.name = "GatewayError";
  }
}
