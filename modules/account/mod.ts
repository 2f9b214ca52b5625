/** 一信通账号: login accounts (phone + login password + school), schools, email binding. */
export {
  type Account,
  ensureSchool,
  findAccount,
  findAccountByPhone,
  findSchool,
  listSchools,
  type School,
} from "./repository.ts";
export { type AccountDeps, accountRoutes } from "./routes.ts";
export { accountAdminRoutes } from "./admin_routes.ts";
export { DEMO_STUDENT, loginThrottleKey, registerAccount, seedDemoAccount } from "./service.ts";
/** Email codes: the masked address shown, and the limits of 找回登录密码 codes (README "Security"). */
export { CODE_MAX_ATTEMPTS, maskEmail, RESET_CODE_SENDS } from "./email_codes.ts";
/**
 * Security events of a login account (password changes, WeChat sign-in bound or released), in
 * commit-safe order after a feed position (platform/feed.ts), for the notifier.
 */
export { accountEventsAfter, type FeedAccountEvent } from "./events.ts";
export type { AccountEventKind } from "./tables.ts";
/**
 * 微信登录: the WeChat (服务号 openid) an account signs in with from the menu; `openidsOf` for
 * WeChat messages; the endings the student chose, run inside a password change or a 挂失.
 */
export {
  accountOfOpenid,
  bindWechatLogin,
  endWechatLoginOnLoss,
  endWechatLoginOnPasswordChange,
  openidsOf,
  setWechatLoginEndings,
  unbindWechatLogin,
  type WechatLogin,
  wechatLoginOf,
} from "./wechat_login.ts";
