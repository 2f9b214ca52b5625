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
export { migrateToLatest } from "./migrate.ts";
export { type AdminNavItem, type AppEnv, createBaseApp, type CurrentStaff } from "./http.ts";
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
export { type Logger, logger } from "./log.ts";
export { Counter, Gauge, Histogram, register } from "./metrics.ts";
export { assetUrl, loadAssets } from "./assets.ts";
export { type FieldErrors, helpers, render, type RenderOptions, renderTemplate } from "./views.ts";
export { fieldErrors, formErrorsHook } from "./forms.ts";
