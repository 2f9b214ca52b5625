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
