/**
 * What this deployment offers for top-ups: its payment gateways (WeChat Pay, the sandbox), the
 * amounts it allows, and what the top-up services are built from.
 */
import { type Config, gatewayProblem } from "../platform/config.ts";
import type { Db } from "../platform/database.ts";
import { parseYuan } from "../platform/money.ts";
import type { PaymentGateway } from "./gateway.ts";
import { SandboxGateway } from "./sandbox.ts";
import { loadWechatConfig, WechatGateway } from "./wechat.ts";
import type { TopupMethod } from "./tables.ts";

/** What the top-up services need. */
export interface TopupDeps {
  db: Db;
  config: Config;
}

/** The gateways configured for this deployment, in the order [支付方式] lists them. */
export type Gateways = Map<TopupMethod, PaymentGateway>;

/** Limits on top-ups, in fen. */
export interface TopupLimits {
  min: number;
  max: number;
  daily: number;
  /** Unpaid orders one card account may have open at once. */
  maxOpen: number;
}

/** An unpaid order can be paid for this long; then it is closed at the gateway. */
export const ORDER_TTL_MS = 15 * 60_000;

/** Quick amounts offered on the 充值 page, in yuan. */
export const QUICK_AMOUNTS = [10, 20, 50, 100, 200, 500];

/** An amount setting in yuan, as fen (`fallback` when unset); a start-up error when it is not one. */
export function yuanVar(
  env: Record<string, string | undefined>,
  name: string,
  fallback: number,
): number {
  const raw = env[name];
  if (!raw) return fallback;
  const fen = parseYuan(raw);
  if (fen === null || fen <= 0) {
    throw new Error(`Cannot read configuration: ${name} must be an amount in yuan`);
  }
  return fen;
}

/** The limits in force: TOPUP_MIN_YUAN (1), TOPUP_MAX_YUAN (1000), TOPUP_DAILY_YUAN (2000). */
export function topupLimits(config: Config): TopupLimits {
  return {
    min: yuanVar(config.env, "TOPUP_MIN_YUAN", 100),
    max: yuanVar(config.env, "TOPUP_MAX_YUAN", 100_000),
    daily: yuanVar(config.env, "TOPUP_DAILY_YUAN", 200_000),
    maxOpen: 5,
  };
}

/**
 * The gateways of this deployment. WeChat Pay is on when its WECHAT_* settings are set (and
 * required when PAYMENT_GATEWAY=wechat, the default then and in production). The sandbox is on
 * when PAYMENT_GATEWAY=sandbox, the default only in demo mode with no real gateway; in production
 * or beside WeChat Pay it needs ALLOW_SANDBOX_GATEWAY=1 (platform/config.ts: gatewayProblem).
 */
export function buildGateways(deps: TopupDeps, fetcher: typeof fetch = fetch): Gateways {
  const { config } = deps;
  const problem = gatewayProblem(config);
  if (problem) throw new Error(`Cannot start: ${problem}`);
  const gateways: Gateways = new Map();
  const wechat = loadWechatConfig(config.env, config.baseUrl);
  if (wechat) gateways.set("wechat", new WechatGateway(wechat, fetcher));
  if (config.paymentGateway === "sandbox") {
    const late = Number(config.env.SANDBOX_LATE_SECONDS ?? "30");
    gateways.set(
      "sandbox",
      new SandboxGateway(deps.db, config.appSecret, {
        defaultMode: config.env.SANDBOX_NOTIFY_MODE,
        lateSeconds: Number.isFinite(late) && late >= 0 ? late : 30,
      }),
    );
  }
  return gateways;
}

/** The sandbox gateway, when this deployment has one. */
export function sandboxOf(gateways: Gateways): SandboxGateway | null {
  const g = gateways.get("sandbox");
  return g instanceof SandboxGateway ? g : null;
}

/** The WeChat gateway, when configured. */
export function wechatOf(gateways: Gateways): WechatGateway | null {
  const g = gateways.get("wechat");
  return g instanceof WechatGateway ? g : null;
}
