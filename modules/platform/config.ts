import { join } from "node:path";
import { parseYuan } from "./money.ts";
import { METRICS_TOKEN_MIN_LENGTH } from "./metrics_access.ts";

/** Runtime configuration, read once from the environment at start. */
export interface Config {
  port: number;
  terminalPort: number;
  databaseUrl: string | null;
  dataDir: string;
  smtpUrl: string | null;
  mailFrom: string;
  /** Root secret: session signing, CSRF tokens, keyed hashes of ID numbers, terminal key derivation. */
  appSecret: string;
  /** Pepper mixed into card-password hashes. */
  cardPepper: string;
  baseUrl: string;
  /** True when BASE_URL is https: cookies get the Secure flag. */
  secureCookies: boolean;
  /** Payment gateway for top-ups: "sandbox" or "wechat". */
  paymentGateway: string;
  /**
   * ALLOW_SANDBOX_GATEWAY=1: the sandbox may run in production or beside WeChat Pay (test
   * deployments only).
   */
  allowSandboxGateway: boolean;
  /** MAIL_OUTBOX=1: production may keep mail in the development outbox instead of SMTP. */
  mailOutbox: boolean;
  /** Meter adapter for utilities: "simulated" or "http". */
  meterAdapter: string;
  /** Seed demo data on an empty database: the demo default; production only with SEED_DEMO=1. */
  seedDemo: boolean;
  logLevel: "debug" | "info" | "warn" | "error";
  env: Record<string, string | undefined>;
}

type Env = Record<string, string | undefined>;

/** A port setting; a bad value falls back here and is named by settingProblems. */
function portVar(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  return raw && isWhole(raw, 65535) ? Number(raw) : fallback;
}

function randomSecret(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Secrets for the embedded setup are generated once and kept in DATA_DIR/secrets.json,
 * so a restart keeps sessions, ID-number hashes and terminal keys valid.
 */
function loadOrCreateSecrets(dataDir: string): { appSecret: string; cardPepper: string } {
  const path = join(dataDir, "secrets.json");
  try {
    const parsed = JSON.parse(Deno.readTextFileSync(path));
    if (typeof parsed.appSecret === "string" && typeof parsed.cardPepper === "string") {
      return parsed;
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const secrets = { appSecret: randomSecret(), cardPepper: randomSecret() };
  // Private from the start: the secrets are written before the directory is checked and repaired.
  Deno.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  Deno.writeTextFileSync(path, JSON.stringify(secrets, null, 2) + "\n", { mode: 0o600 });
  return secrets;
}

/**
 * The two modes. Demo: the embedded database (no DATABASE_URL), with demo data, the sandbox
 * gateway and the development outbox. Production: DATABASE_URL; every secret and service set.
 */
export type DeployMode = "demo" | "production";

/** The mode of a configuration: production whenever DATABASE_URL is set. */
export function deployMode(config: Pick<Config, "databaseUrl">): DeployMode {
  return config.databaseUrl ? "production" : "demo";
}

/**
 * True when WeChat Pay is configured: WECHAT_MCHID (loadWechatConfig then checks every WECHAT_*
 * setting it needs). The 服务号's WECHAT_APPID and WECHAT_APP_SECRET alone are sign-in and messages.
 */
export function wechatConfigured(env: Env): boolean {
  return !!env.WECHAT_MCHID;
}

type GatewaySettings = Pick<
  Config,
  "databaseUrl" | "paymentGateway" | "allowSandboxGateway" | "env"
>;

/**
 * The sandbox gateway (测试支付) may run only in demo mode with no real gateway configured, or
 * with ALLOW_SANDBOX_GATEWAY=1: otherwise a student could pay themselves with it.
 */
export function sandboxAllowed(config: GatewaySettings): boolean {
  return config.allowSandboxGateway || (!config.databaseUrl && !wechatConfigured(config.env));
}

/** What is wrong with the payment gateway settings, as a line for the operator; null when fine. */
export function gatewayProblem(config: GatewaySettings): string | null {
  if (config.paymentGateway !== "wechat" && config.paymentGateway !== "sandbox") {
    return `PAYMENT_GATEWAY must be wechat or sandbox, got "${config.paymentGateway}"`;
  }
  if (config.paymentGateway === "wechat" && !wechatConfigured(config.env)) {
    return "no payment gateway: set WECHAT_MCHID and the other WECHAT_* settings (or ALLOW_SANDBOX_GATEWAY=1 for a test deployment with the sandbox)";
  }
  if (config.paymentGateway === "sandbox" && !sandboxAllowed(config)) {
    return wechatConfigured(config.env)
      ? "PAYMENT_GATEWAY=sandbox beside WeChat Pay needs ALLOW_SANDBOX_GATEWAY=1 (test deployments only)"
      : "the sandbox payment gateway needs ALLOW_SANDBOX_GATEWAY=1 with DATABASE_URL (test deployments only)";
  }
  return null;
}

/** Mail may go to the development outbox (no SMTP_URL): in demo mode, or with MAIL_OUTBOX=1. */
export function outboxAllowed(config: Pick<Config, "databaseUrl" | "mailOutbox">): boolean {
  return !config.databaseUrl || config.mailOutbox;
}

/** Whether pages carry the 演示环境 mark: demo mode, or production with demo data or the sandbox. */
export function showsDemoMark(
  config: Pick<Config, "databaseUrl" | "seedDemo" | "allowSandboxGateway">,
): boolean {
  return deployMode(config) === "demo" || config.seedDemo || config.allowSandboxGateway;
}

/** One line for the start-up log: the mode and what it implies. */
export function describeMode(config: Config): Record<string, unknown> {
  const gateways = [
    ...(wechatConfigured(config.env) ? ["wechat"] : []),
    ...(config.paymentGateway === "sandbox" ? ["sandbox"] : []),
  ];
  return {
    mode: deployMode(config),
    database: config.databaseUrl ? "postgresql" : "embedded",
    demoData: config.seedDemo,
    gateways,
    mail: config.smtpUrl ? "smtp" : "development outbox",
  };
}

/** Everything but the secrets, read from the environment without touching the disk. */
function readSettings(env: Env): Omit<Config, "appSecret" | "cardPepper"> {
  const databaseUrl = env.DATABASE_URL || null;
  const allowSandboxGateway = env.ALLOW_SANDBOX_GATEWAY === "1";
  const port = portVar(env, "PORT", 8000);
  const baseUrl = (env.BASE_URL || `http://localhost:${port}`).replace(/\/+$/, "");
  // 充值 uses WeChat Pay when it is configured; the sandbox only where it may run.
  const paymentGateway = env.PAYMENT_GATEWAY ||
    (!wechatConfigured(env) && (!databaseUrl || allowSandboxGateway) ? "sandbox" : "wechat");
  const level = env.LOG_LEVEL ?? "info";
  return {
    port,
    terminalPort: portVar(env, "TERMINAL_PORT", 9000),
    databaseUrl,
    dataDir: env.DATA_DIR || "./data",
    smtpUrl: env.SMTP_URL || null,
    mailFrom: env.MAIL_FROM || "校园一信通 <no-reply@yixintong.local>",
    baseUrl,
    secureCookies: baseUrl.startsWith("https://"),
    paymentGateway,
    allowSandboxGateway,
    mailOutbox: env.MAIL_OUTBOX === "1",
    meterAdapter: env.METER_ADAPTER || "simulated",
    // Demo data only in demo mode, unless asked for explicitly.
    seedDemo: databaseUrl ? env.SEED_DEMO === "1" : env.SEED_DEMO !== "0",
    logLevel: (["debug", "info", "warn", "error"].includes(level) ? level : "info") as Config[
      "logLevel"
    ],
    env,
  };
}

function isWhole(raw: string, max: number): boolean {
  return /^\d{1,10}$/.test(raw) && Number(raw) <= max;
}

/** Settings read as a whole number (readers' limits in fen, seconds, counts; see README). */
const WHOLE_NUMBERS = [
  "TERMINAL_TIMESTAMP_WINDOW",
  "TERMINAL_PASSWORD_THRESHOLD",
  "TERMINAL_OFFLINE_PAYMENT_LIMIT",
  "TERMINAL_OFFLINE_TOTAL_LIMIT",
  "TERMINAL_OFFLINE_MAX_RECORDS",
  "TERMINAL_OFFLINE_MAX_AGE",
  "TERMINAL_HEARTBEAT_SECONDS",
  "TERMINAL_AUTH_TIMEOUT_MS",
  "TERMINAL_MAX_UNAUTH_PER_HOST",
  "TERMINAL_MAX_UNAUTHENTICATED",
  "TERMINAL_MAX_CONNECTIONS",
  "TERMINAL_INQUIRIES_PER_MINUTE",
  "SHOWER_HOLD_TIMEOUT",
  "METER_SIM_DELAY_MS",
  "SANDBOX_LATE_SECONDS",
] as const;

/** Switches that are on with `1`; anything but `0`, `1` or unset is a typo. */
const FLAGS = ["SEED_DEMO", "MAIL_OUTBOX", "ALLOW_SANDBOX_GATEWAY", "TRUST_PROXY"] as const;

/** 充值 limits in yuan, smallest first: one top-up's least and most, and a day's most. */
const TOPUP_LIMITS = [
  ["TOPUP_MIN_YUAN", 100],
  ["TOPUP_MAX_YUAN", 100_000],
  ["TOPUP_DAILY_YUAN", 200_000],
] as const;

/**
 * Every setting with a wrong value, as a line naming it (never printing a secret's value). The
 * modules that read these settings later find them valid: nothing fails after the database is
 * opened, migrated or seeded.
 */
function settingProblems(env: Env): string[] {
  const problems: string[] = [];
  const set = (name: string) => env[name] !== undefined && env[name] !== "";
  for (const name of ["PORT", "TERMINAL_PORT"]) {
    if (set(name) && !isWhole(env[name]!, 65535)) {
      problems.push(`${name} must be a port number, got "${env[name]}"`);
    }
  }
  for (const name of WHOLE_NUMBERS) {
    if (set(name) && !isWhole(env[name]!, 0xffff_ffff)) {
      problems.push(`${name} must be a whole number, got "${env[name]}"`);
    }
  }
  if (
    set("METER_TIMEOUT_MS") && !(isWhole(env.METER_TIMEOUT_MS!, 0xffff_ffff) &&
      Number(env.METER_TIMEOUT_MS) > 0)
  ) {
    problems.push(`METER_TIMEOUT_MS must be a whole number above 0, got "${env.METER_TIMEOUT_MS}"`);
  }
  for (const name of FLAGS) {
    if (set(name) && env[name] !== "0" && env[name] !== "1") {
      problems.push(`${name} must be 1 or 0, got "${env[name]}"`);
    }
  }
  if (set("LOG_LEVEL") && !["debug", "info", "warn", "error"].includes(env.LOG_LEVEL!)) {
    problems.push(`LOG_LEVEL must be debug, info, warn or error, got "${env.LOG_LEVEL}"`);
  }
  if (set("BASE_URL") && !/^https?:\/\/[^/\s]+(\/\S*)?$/.test(env.BASE_URL!)) {
    problems.push(`BASE_URL must be an http:// or https:// address, got "${env.BASE_URL}"`);
  }
  if (set("METRICS_TOKEN") && env.METRICS_TOKEN!.length < METRICS_TOKEN_MIN_LENGTH) {
    problems.push(`METRICS_TOKEN must be at least ${METRICS_TOKEN_MIN_LENGTH} characters`);
  }
  const meter = env.METER_ADAPTER || "simulated";
  if (meter !== "simulated" && meter !== "http") {
    problems.push(`METER_ADAPTER must be simulated or http, got "${meter}"`);
  }
  if (meter === "http") {
    if (!/^https?:\/\/\S+$/.test(env.METER_API_URL ?? "")) {
      problems.push(
        set("METER_API_URL")
          ? "METER_API_URL must be an http:// or https:// address (METER_ADAPTER=http)"
          : "METER_API_URL is not set (required with METER_ADAPTER=http)",
      );
    }
    if (!set("METER_API_KEY")) {
      problems.push("METER_API_KEY is not set (required with METER_ADAPTER=http)");
    }
  }
  const yuan: number[] = [];
  for (const [name, fallback] of TOPUP_LIMITS) {
    const fen = set(name) ? parseYuan(env[name]!) : fallback;
    if (fen === null || fen <= 0) {
      problems.push(
        `${name} must be an amount in yuan above 0 (e.g. 1000 or 0.50), got "${env[name]}"`,
      );
    } else yuan.push(fen);
  }
  if (yuan.length === TOPUP_LIMITS.length) {
    for (let i = 1; i < yuan.length; i++) {
      if (yuan[i - 1] > yuan[i]) {
        problems.push(`${TOPUP_LIMITS[i - 1][0]} must not be above ${TOPUP_LIMITS[i][0]}`);
      }
    }
  }
  return problems;
}

const SECRETS = ["APP_SECRET", "CARD_PEPPER"] as const;

/** Missing or short secrets: production needs both set; demo generates what is not set. */
function secretProblems(env: Env): string[] {
  const problems: string[] = [];
  const missing = SECRETS.filter((name) => !env[name]);
  if (env.DATABASE_URL && missing.length) {
    problems.push(
      missing.length > 1
        ? `${missing.join(" and ")} are not set (32+ random characters each)`
        : `${missing[0]} is not set (32+ random characters)`,
    );
  }
  for (const name of SECRETS) {
    if (env[name] && env[name]!.length < 32) {
      problems.push(`${name} must be at least 32 characters`);
    }
  }
  return problems;
}

/** What the server (not the command-line tools) needs besides: mail and a payment gateway. */
function serverProblems(settings: Omit<Config, "appSecret" | "cardPepper">): string[] {
  const problems: string[] = [];
  if (!settings.smtpUrl && !outboxAllowed(settings)) {
    problems.push(
      "SMTP_URL is not set (or MAIL_OUTBOX=1 to keep mail in the development outbox)",
    );
  }
  const gateway = gatewayProblem(settings);
  if (gateway) problems.push(gateway);
  return problems;
}

/**
 * Reads the configuration; throws one line naming every missing or wrong setting, before
 * anything is written (the demo's generated secrets come after the checks). `server: true` (the
 * HTTP server) also requires mail and a payment gateway.
 */
export function loadConfig(
  env: Env = Deno.env.toObject(),
  options: { server?: boolean } = {},
): Config {
  const settings = readSettings(env);
  const problems = [
    ...secretProblems(env),
    ...settingProblems(env),
    ...(options.server ? serverProblems(settings) : []),
  ];
  if (problems.length) {
    const mode = settings.databaseUrl ? " in production mode (DATABASE_URL is set)" : "";
    throw new Error(`Cannot start${mode}: ${problems.join("; ")}`);
  }
  let appSecret = env.APP_SECRET || "";
  let cardPepper = env.CARD_PEPPER || "";
  if (!appSecret || !cardPepper) {
    const stored = loadOrCreateSecrets(settings.dataDir);
    appSecret ||= stored.appSecret;
    cardPepper ||= stored.cardPepper;
  }
  return { ...settings, appSecret, cardPepper };
}
