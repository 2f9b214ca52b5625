/**
 * WeChat Pay API v3, JSAPI (the payer is inside the WeChat webview).
 *
 * Requests carry `Authorization: WECHATPAY2-SHA256-RSA2048 mchid=…,nonce_str=…,signature=…,
 * timestamp=…,serial_no=…`, the signature being RSA-SHA256 with the merchant key over
 * "METHOD\nPATH?QUERY\nTIMESTAMP\nNONCE\nBODY\n". Responses and notifies are signed by the
 * platform key over "TIMESTAMP\nNONCE\nBODY\n" (headers Wechatpay-Timestamp/-Nonce/-Signature/
 * -Serial). Notify resources are AEAD_AES_256_GCM under the APIv3 key, the 16-byte tag appended
 * to the ciphertext.
 */
import {
  createPrivateKey,
  createPublicKey,
  createSign,
  createVerify,
  type KeyObject,
  X509Certificate,
} from "node:crypto";
import { randomToken } from "../platform/crypto.ts";
import { chinaRfc3339 } from "../platform/china_time.ts";
import { oauthAuthorizeUrl, openidForCode, WechatMpError } from "../platform/wechat_mp.ts";
import {
  GatewayError,
  type GatewayOrder,
  type GatewayQuery,
  type GatewayRefund,
  type JsapiParams,
  type NotifyAnswer,
  NotifyRejected,
  type PaymentGateway,
  type PaymentStart,
  type RefundStatus,
  type VerifiedNotify,
} from "./gateway.ts";

/** Everything the WeChat gateway needs, read from WECHAT_* variables. */
export interface WechatConfig {
  appId: string;
  mchId: string;
  /** Serial number of the merchant API certificate. */
  serialNo: string;
  privateKey: KeyObject;
  /** The 32-byte APIv3 key (notify decryption). */
  apiV3Key: string;
  /** Platform verification keys by serial (certificate serial, or PUB_KEY_ID_… of the public key). */
  platformKeys: Map<string, KeyObject>;
  apiBase: string;
  notifyUrl: string;
  /** Service account secret, for the snsapi_base OAuth that gives the payer's openid. */
  appSecret: string | null;
  oauthApiBase: string;
  authorizeBase: string;
}

/**
 * Reads WECHAT_* variables; null when WeChat Pay is not configured (no WECHAT_MCHID: the 服务号's
 * WECHAT_APPID and WECHAT_APP_SECRET alone serve sign-in and messages, platform/wechat_mp.ts).
 */
export function loadWechatConfig(
  env: Record<string, string | undefined>,
  baseUrl: string,
): WechatConfig | null {
  if (!env.WECHAT_MCHID) return null;
  const need = (name: string): string => {
    const v = env[name];
    if (!v) throw new Error(`Cannot configure WeChat Pay: ${name} is not set`);
    return v;
  };
  const apiV3Key = need("WECHAT_APIV3_KEY");
  if (new TextEncoder().encode(apiV3Key).length !== 32) {
    throw new Error("Cannot configure WeChat Pay: WECHAT_APIV3_KEY must be 32 bytes");
  }
  const platformKeys = new Map<string, KeyObject>();
  if (env.WECHAT_PLATFORM_CERT_PATH) {
    const cert = new X509Certificate(Deno.readTextFileSync(env.WECHAT_PLATFORM_CERT_PATH));
    platformKeys.set(cert.serialNumber.toUpperCase(), cert.publicKey);
  }
  if (env.WECHAT_PLATFORM_PUBLIC_KEY_PATH) {
    const id = need("WECHAT_PLATFORM_PUBLIC_KEY_ID");
    platformKeys.set(
      id,
      createPublicKey(Deno.readTextFileSync(env.WECHAT_PLATFORM_PUBLIC_KEY_PATH)),
    );
  }
  if (platformKeys.size === 0) {
    throw new Error(
      "Cannot configure WeChat Pay: set WECHAT_PLATFORM_CERT_PATH or WECHAT_PLATFORM_PUBLIC_KEY_PATH",
    );
  }
  return {
    appId: need("WECHAT_APPID"),
    mchId: need("WECHAT_MCHID"),
    serialNo: need("WECHAT_SERIAL_NO").toUpperCase(),
    privateKey: createPrivateKey(Deno.readTextFileSync(need("WECHAT_PRIVATE_KEY_PATH"))),
    apiV3Key,
    platformKeys,
    apiBase: (env.WECHAT_API_BASE || "https://api.mch.weixin.qq.com").replace(/\/+$/, ""),
    notifyUrl: env.WECHAT_NOTIFY_URL || `${baseUrl}/pay/notify/wechat`,
    appSecret: env.WECHAT_APP_SECRET || null,
    oauthApiBase: (env.WECHAT_OAUTH_API_BASE || "https://api.weixin.qq.com").replace(/\/+$/, ""),
    authorizeBase: (env.WECHAT_AUTHORIZE_BASE || "https://open.weixin.qq.com").replace(/\/+$/, ""),
  };
}

/** Refund refusals that pass: ask again later with the same out_refund_no. */
const RETRY_LATER = new Set(["SYSTEM_ERROR", "FREQUENCY_LIMITED", "NOT_ENOUGH"]);

/** Notifies and responses older or newer than this are refused (replay protection). */
const MAX_CLOCK_SKEW_SECONDS = 300;

function rsaSign(key: KeyObject, message: string): string {
  return createSign("RSA-SHA256").update(message).sign(key, "base64");
}

function rsaVerify(key: KeyObject, message: string, signature: string): boolean {
  try {
    return createVerify("RSA-SHA256").update(message).verify(key, signature, "base64");
  } catch {
    return false;
  }
}

function nonce(): string {
  return randomToken(24).replace(/[-_]/g, "x").slice(0, 32);
}

function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Decrypts an AEAD_AES_256_GCM notify resource with the APIv3 key. */
export async function decryptResource(
  apiV3Key: string,
  resource: { ciphertext: string; nonce: string; associated_data?: string },
): Promise<string> {
  const enc = new TextEncoder();
  const key = await crypto.subtle.importKey("raw", enc.encode(apiV3Key), "AES-GCM", false, [
    "decrypt",
  ]);
  const plain = await crypto.subtle.decrypt(
    {
      name: "AES-GCM",
      iv: enc.encode(resource.nonce),
      additionalData: enc.encode(resource.associated_data ?? ""),
      tagLength: 128,
    },
    key,
    fromBase64(resource.ciphertext) as BufferSource,
  );
  return new TextDecoder().decode(plain);
}

interface Transaction {
  appid?: string;
  mchid?: string;
  out_trade_no?: string;
  transaction_id?: string;
  trade_state?: string;
  amount?: { total?: number; payer_total?: number; currency?: string };
}

/** The WeChat Pay v3 JSAPI gateway. */
export class WechatGateway implements PaymentGateway {
  readonly method = "wechat" as const;
  readonly label = "微信支付";

  constructor(readonly config: WechatConfig, private readonly fetcher: typeof fetch = fetch) {}

  /** The Authorization header for a request (exported for the tests' stand-in). */
  authorization(method: string, pathAndQuery: string, body: string): string {
    const ts = String(Math.floor(Date.now() / 1000));
    const n = nonce();
    const signature = rsaSign(
      this.config.privateKey,
      `${method}\n${pathAndQuery}\n${ts}\n${n}\n${body}\n`,
    );
    return `WECHATPAY2-SHA256-RSA2048 mchid="${this.config.mchId}",nonce_str="${n}",` +
      `signature="${signature}",timestamp="${ts}",serial_no="${this.config.serialNo}"`;
  }

  #verifySigned(headers: Headers, body: string): string | null {
    const ts = headers.get("wechatpay-timestamp") ?? "";
    const n = headers.get("wechatpay-nonce") ?? "";
    const sig = headers.get("wechatpay-signature") ?? "";
    const serial = headers.get("wechatpay-serial") ?? "";
    if (!ts || !n || !sig || !serial) return "missing Wechatpay-* headers";
    if (
      !/^\d{1,12}$/.test(ts) || Math.abs(Date.now() / 1000 - Number(ts)) > MAX_CLOCK_SKEW_SECONDS
    ) {
      return `timestamp ${ts.slice(0, 20)} outside the allowed window`;
    }
    const key = this.config.platformKeys.get(serial) ??
      this.config.platformKeys.get(serial.toUpperCase());
    if (!key) return `unknown platform serial ${serial.slice(0, 64)}`;
    if (!rsaVerify(key, `${ts}\n${n}\n${body}\n`, sig)) return "platform signature does not verify";
    return null;
  }

  async #call(method: "GET" | "POST", pathAndQuery: string, payload?: unknown) {
    const body = payload === undefined ? "" : JSON.stringify(payload);
    let res: Response;
    try {
      res = await this.fetcher(this.config.apiBase + pathAndQuery, {
        method,
        headers: {
          authorization: this.authorization(method, pathAndQuery, body),
          accept: "application/json",
          "content-type": "application/json",
          "user-agent": "yixintong/1.0",
        },
        body: method === "POST" ? body : undefined,
        signal: AbortSignal.timeout(10_000),
      });
    } catch (err) {
      throw new GatewayError(`WeChat Pay unreachable: ${(err as Error).message}`);
    }
    const text = await res.text();
    let json: Record<string, unknown> = {};
    if (text) {
      try {
        json = JSON.parse(text);
      } catch {
        throw new GatewayError(`WeChat Pay answered ${res.status} with a body that is not JSON`);
      }
    }
    if (res.ok) {
      const problem = this.#verifySigned(res.headers, text);
      if (problem) throw new GatewayError(`WeChat Pay response refused: ${problem}`);
    }
    return { status: res.status, json };
  }

  async createPayment(order: GatewayOrder): Promise<PaymentStart> {
    if (!order.openid) throw new GatewayError("JSAPI needs the payer's openid", "NO_OPENID");
    const { status, json } = await this.#call("POST", "/v3/pay/transactions/jsapi", {
      appid: this.config.appId,
      mchid: this.config.mchId,
      description: order.description,
      out_trade_no: order.orderNo,
      time_expire: chinaRfc3339(order.expiresAt),
      notify_url: this.config.notifyUrl,
      amount: { total: order.amount, currency: "CNY" },
      payer: { openid: order.openid },
    });
    if (status !== 200 || typeof json.prepay_id !== "string") {
      throw new GatewayError(
        `WeChat Pay refused the order: ${status} ${String(json.code ?? "")} ${
          String(json.message ?? "")
        }`,
        typeof json.code === "string" ? json.code : null,
      );
    }
    return { kind: "jsapi", reference: json.prepay_id, params: this.jsapiParams(json.prepay_id) };
  }

  /** Signs the parameters the webview passes to getBrandWCPayRequest. */
  jsapiParams(prepayId: string): JsapiParams {
    const timeStamp = String(Math.floor(Date.now() / 1000));
    const nonceStr = nonce();
    const pkg = `prepay_id=${prepayId}`;
    return {
      appId: this.config.appId,
      timeStamp,
      nonceStr,
      package: pkg,
      signType: "RSA",
      paySign: rsaSign(
        this.config.privateKey,
        `${this.config.appId}\n${timeStamp}\n${nonceStr}\n${pkg}\n`,
      ),
    };
  }

  async verifyNotify(headers: Headers, body: string): Promise<VerifiedNotify> {
    const problem = this.#verifySigned(headers, body);
    if (problem) throw new NotifyRejected(problem);
    let envelope: {
      event_type?: string;
      resource?: {
        algorithm?: string;
        ciphertext?: string;
        nonce?: string;
        associated_data?: string;
      };
    };
    try {
      envelope = JSON.parse(body);
    } catch {
      throw new NotifyRejected("notify body is not JSON");
    }
    const r = envelope.resource;
    if (!r || r.algorithm !== "AEAD_AES_256_GCM" || !r.ciphertext || !r.nonce) {
      throw new NotifyRejected("notify resource is missing or not AEAD_AES_256_GCM");
    }
    let tx: Transaction;
    try {
      tx = JSON.parse(
        await decryptResource(this.config.apiV3Key, {
          ciphertext: r.ciphertext,
          nonce: r.nonce,
          associated_data: r.associated_data,
        }),
      );
    } catch {
      throw new NotifyRejected("notify resource does not decrypt with the APIv3 key");
    }
    if (tx.mchid !== this.config.mchId || tx.appid !== this.config.appId) {
      throw new NotifyRejected(
        `notify is for another merchant (${String(tx.mchid)})`,
        tx.out_trade_no ?? null,
      );
    }
    if (
      typeof tx.out_trade_no !== "string" || typeof tx.transaction_id !== "string" ||
      !Number.isSafeInteger(tx.amount?.total)
    ) {
      throw new NotifyRejected("notify transaction lacks out_trade_no, transaction_id or amount");
    }
    return {
      orderNo: tx.out_trade_no,
      txnId: tx.transaction_id,
      amount: tx.amount!.total!,
      paid: tx.trade_state === "SUCCESS" && envelope.event_type === "TRANSACTION.SUCCESS",
      state: `${envelope.event_type ?? ""}/${tx.trade_state ?? ""}`,
    };
  }

  answer(ok: boolean, message: string): NotifyAnswer {
    // WeChat: 200 (or 204) means taken; 4xx/5xx with {"code":"FAIL"} makes it retry later.
    return ok
      ? {
        status: 200,
        body: JSON.stringify({ code: "SUCCESS", message: "成功" }),
        contentType: "application/json",
      }
      : {
        status: 401,
        body: JSON.stringify({ code: "FAIL", message }),
        contentType: "application/json",
      };
  }

  async query(orderNo: string): Promise<GatewayQuery> {
    const path = `/v3/pay/transactions/out-trade-no/${encodeURIComponent(orderNo)}?mchid=${
      encodeURIComponent(this.config.mchId)
    }`;
    const { status, json } = await this.#call("GET", path);
    if (status === 404 || json.code === "ORDER_NOT_EXIST" || json.code === "ORDERNOTEXIST") {
      return { state: "unknown" };
    }
    if (status !== 200) {
      throw new GatewayError(`WeChat Pay query failed: ${status} ${String(json.code ?? "")}`);
    }
    const tx = json as Transaction;
    if (tx.out_trade_no !== orderNo) {
      throw new GatewayError("WeChat Pay query answered for another order");
    }
    switch (tx.trade_state) {
      case "SUCCESS":
      case "REFUND":
        if (typeof tx.transaction_id !== "string" || !Number.isSafeInteger(tx.amount?.total)) {
          throw new GatewayError("WeChat Pay query: paid order without transaction_id or amount");
        }
        return { state: "paid", txnId: tx.transaction_id, amount: tx.amount!.total! };
      case "NOTPAY":
      case "USERPAYING":
        return { state: "pending" };
      case "CLOSED":
      case "REVOKED":
      case "PAYERROR":
        return { state: "closed" };
      default:
        throw new GatewayError(`WeChat Pay query: unknown trade_state ${String(tx.trade_state)}`);
    }
  }

  async close(orderNo: string): Promise<"closed" | "paid"> {
    const path = `/v3/pay/transactions/out-trade-no/${encodeURIComponent(orderNo)}/close`;
    const { status, json } = await this.#call("POST", path, { mchid: this.config.mchId });
    if (status === 204 || status === 200) return "closed";
    if (json.code === "ORDERPAID") return "paid";
    if (json.code === "ORDER_CLOSED" || json.code === "ORDERCLOSED") return "closed";
    throw new GatewayError(`WeChat Pay close failed: ${status} ${String(json.code ?? "")}`);
  }

  /**
   * 申请退款 (POST /v3/refund/domestic/refunds). Throttling, the merchant's own balance being short
   * and server errors leave the refund processing (asked again later with the same out_refund_no);
   * any other refusal closes it.
   */
  async refund(r: GatewayRefund): Promise<RefundStatus> {
    const { status, json } = await this.#call("POST", "/v3/refund/domestic/refunds", {
      out_trade_no: r.orderNo,
      out_refund_no: r.refundNo,
      reason: r.reason.slice(0, 80),
      amount: { refund: r.amount, total: r.total, currency: "CNY" },
    });
    if (status === 200) return this.#refundStatus(r.refundNo, json);
    const code = String(json.code ?? "");
    if (status >= 500 || RETRY_LATER.has(code)) {
      return { state: "processing", refundId: null, detail: `${status} ${code}`.trim() };
    }
    return {
      state: "closed",
      detail: `${status} ${code} ${String(json.message ?? "")}`.trim().slice(0, 200),
    };
  }

  /** 查询单笔退款 (GET /v3/refund/domestic/refunds/{out_refund_no}). */
  async queryRefund(refundNo: string): Promise<RefundStatus> {
    const { status, json } = await this.#call(
      "GET",
      `/v3/refund/domestic/refunds/${encodeURIComponent(refundNo)}`,
    );
    if (status === 404 || json.code === "RESOURCE_NOT_EXISTS") return { state: "unknown" };
    if (status !== 200) {
      throw new GatewayError(
        `WeChat Pay refund query failed: ${status} ${String(json.code ?? "")}`,
      );
    }
    return this.#refundStatus(refundNo, json);
  }

  #refundStatus(refundNo: string, json: Record<string, unknown>): RefundStatus {
    if (json.out_refund_no !== refundNo) {
      throw new GatewayError("WeChat Pay answered for another refund");
    }
    const refundId = typeof json.refund_id === "string" ? json.refund_id : null;
    switch (json.status) {
      case "SUCCESS":
        if (!refundId) throw new GatewayError("WeChat Pay refund succeeded without refund_id");
        return { state: "succeeded", refundId };
      case "PROCESSING":
        return { state: "processing", refundId };
      case "CLOSED":
        return { state: "closed", detail: "CLOSED" };
      case "ABNORMAL":
        return { state: "abnormal", refundId };
      default:
        throw new GatewayError(`WeChat Pay refund: unknown status ${String(json.status)}`);
    }
  }

  /** Where to send the payer to learn their openid (snsapi_base, silent inside WeChat). */
  authorizeUrl(redirectUri: string, state: string): string {
    return oauthAuthorizeUrl(this.config, redirectUri, state);
  }

  /** Exchanges an OAuth code for the payer's openid (the 服务号's OAuth, platform/wechat_mp.ts). */
  async openidForCode(code: string): Promise<string> {
    if (!this.config.appSecret) throw new GatewayError("WECHAT_APP_SECRET is not set", "NO_SECRET");
    try {
      return await openidForCode(
        {
          appId: this.config.appId,
          appSecret: this.config.appSecret,
          apiBase: this.config.oauthApiBase,
          authorizeBase: this.config.authorizeBase,
          timeoutMs: 10_000,
        },
        code,
        this.fetcher,
      );
    } catch (err) {
      if (err instanceof WechatMpError) throw new GatewayError(`WeChat OAuth: ${err.message}`);
      throw err;
    }
  }
}
