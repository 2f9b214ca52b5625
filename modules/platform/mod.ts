/** The shell every module stands on: configuration, database, HTTP app, views, errors, money. */
export {
  type Config,
  type DeployMode,
  deployMode,
  describeMode,
  loadConfig,
  showsDemoMark,
} from "./config.ts";
export { type Database, type DatabaseHandle, type Db, openDatabase } from "./database.ts";
export { migrateSchema, migrateToLatest } from "./migrate.ts";
export type { AdminNavItem, AppEnv, CurrentStaff } from "./app_env.ts";
export { createBaseApp } from "./http.ts";
export {
  type BodyLimits,
  FORM_BODY_LIMIT,
  PayloadTooLargeError,
  UPLOAD_BODY_LIMIT,
} from "./body_limit.ts";
export {
  describeWait,
  DomainError,
  ForbiddenError,
  NotFoundError,
  TooManyAttemptsError,
} from "./errors.ts";
export { fenToYuanText, formatFen, parseYuan } from "./money.ts";
export {
  chinaDateTime,
  chinaDay,
  chinaDayRange,
  chinaDaySql,
  chinaDayStart,
  chinaDigits,
  chinaMonth,
  chinaMonthRange,
  chinaMonthSql,
  chinaMonthStart,
  chinaRfc3339,
  chinaWeekStart,
} from "./china_time.ts";
export { type Logger, logger } from "./log.ts";
export { Counter, Gauge, Histogram, register } from "./metrics.ts";
export { assetUrl, loadAssets } from "./assets.ts";
export { type FieldErrors, helpers, render, type RenderOptions, renderTemplate } from "./views.ts";
export { fieldErrors, formErrorsHook } from "./forms.ts";
