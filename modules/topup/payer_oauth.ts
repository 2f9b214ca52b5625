/**
 * WeChat's silent OAuth for JSAPI: the payer's openid is learnt once, through a `state` signed for
 * the signed-in account that lasts ten minutes, and remembered for later top-ups.
 */
import type { Config } from "../platform/config.ts";
import { DomainError, NotFoundError } from "../platform/errors.ts";
import { keyedHash, timingSafeEqual } from "../platform/crypto.ts";
import { GatewayError } from "./gateway.ts";
import { type Gateways, type TopupDeps, wechatOf } from "./deployment.ts";
import { rememberOpenid } from "./orders.ts";
import type { WechatGateway } from "./wechat.ts";

const STATE_TTL_S = 600;

async function signedState(config: Config, accountId: number, ts: number): Promise<string> {
  const mac = await keyedHash(config.appSecret, "wechat-oauth", `${accountId}:${ts}`);
  return `${ts}.${mac.slice(0, 32)}`;
}

function wechatIn(gateways: Gateways): WechatGateway {
  const wechat = wechatOf(gateways);
  if (!wechat) throw new NotFoundError("WeChat Pay");
  return wechat;
}

/** Where to send the payer to authorise: WeChat's page, coming back to our callback. */
export async function oauthStartUrl(
  deps: TopupDeps,
  gateways: Gateways,
  accountId: number,
): Promise<string> {
  const wechat = wechatIn(gateways);
  const state = await signedState(deps.config, accountId, Math.floor(Date.now() / 1000));
  return wechat.authorizeUrl(`${deps.config.baseUrl}/wallet/recharge/wechat/callback`, state);
}

/**
 * WeChat's callback: the `state` must be ours, for this account, and fresh; the `code` well
 * formed. Then the openid is asked for and remembered.
 */
export async function rememberPayerFromCallback(
  deps: TopupDeps,
  gateways: Gateways,
  accountId: number,
  callback: { code: string; state: string },
): Promise<void> {
  const wechat = wechatIn(gateways);
  const ts = Number(callback.state.split(".")[0]);
  const fresh = Number.isSafeInteger(ts) && Math.abs(Date.now() / 1000 - ts) < STATE_TTL_S;
  if (
    !fresh || !timingSafeEqual(callback.state, await signedState(deps.config, accountId, ts)) ||
    !/^[A-Za-z0-9_-]{1,128}$/.test(callback.code)
  ) {
    throw new DomainError("Bad OAuth callback", "授权已过期，请返回充值页面重试");
  }
  try {
    await rememberOpenid(deps.db, accountId, await wechat.openidForCode(callback.code));
  } catch (err) {
    if (err instanceof GatewayError) throw new DomainError(err.message, "微信授权失败，请稍后再试");
    throw err;
  }
}
