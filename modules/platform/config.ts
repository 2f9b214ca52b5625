import { join } from "node:path";

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
  /** The sandbox gateway refuses to run against DATABASE_URL unless this is set. */
  allowSandboxWithDatabase: boolean;
  /** Meter adapter for utilities: "simulated" or "http". */
  meterAdapter: string;
  /** Seed demo data on an empty database. */
  seedDemo: boolean;
  logLevel: "debug" | "info" | "warn" | "error";
  env: Record<string, string | undefined>;
}

type Env = Record<string, string | undefined>;

function intVar(env: Env, name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    throw new Error(`Cannot read configuration: ${name} must be a port number, got "${raw}"`);
  }
  return n;
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
  Deno.mkdirSync(dataDir, { recursive: true });
  Deno.writeTextFileSync(path, JSON.stringify(secrets, null, 2) + "\n", { mode: 0o600 });
  return secrets;
}

/** Reads the configuration; throws with a clear message when something required is missing. */
export function loadConfig(env: Env = Deno.env.toObject()): Config {
  const databaseUrl = env.DATABASE_URL || null;
  const dataDir = env.DATA_DIR || "./data";
  let appSecret = env.APP_SECRET || "";
  let cardPepper = env.CARD_PEPPER || "";
  if (!appSecret || !cardPepper) {
    if (databaseUrl) {
      throw new Error(
        "Cannot start: APP_SECRET and CARD_PEPPER must be set (32+ characters each) when DATABASE_URL is set",
      );
    }
    const stored = loadOrCreateSecrets(dataDir);
    appSecret ||= stored.appSecret;
    cardPepper ||= stored.cardPepper;
  }
  if (appSecret.length < 32 || cardPepper.length < 32) {
    throw new Error("Cannot start: APP_SECRET and CARD_PEPPER must be at least 32 characters");
  }
  const port = intVar(env, "PORT", 8000);
  const baseUrl = (env.BASE_URL || `http://localhost:${port}`).replace(/\/+$/, "");
  const paymentGateway = env.PAYMENT_GATEWAY || (databaseUrl ? "wechat" : "sandbox");
  const level = env.LOG_LEVEL ?? "info";
  return {
    port,
    terminalPort: intVar(env, "TERMINAL_PORT", 9000),
    databaseUrl,
    dataDir,
    smtpUrl: env.SMTP_URL || null,
    mailFrom: env.MAIL_FROM || "校园一信通 <no-reply@yixintong.local>",
    appSecret,
    cardPepper,
    baseUrl,
    secureCookies: baseUrl.startsWith("https://"),
    paymentGateway,
    allowSandboxWithDatabase: env.ALLOW_SANDBOX_GATEWAY === "1",
    meterAdapter: env.METER_ADAPTER || "simulated",
    seedDemo: env.SEED_DEMO !== "0",
    logLevel: (["debug", "info", "warn", "error"].includes(level) ? level : "info") as Config[
      "logLevel"
    ],
    env,
  };
}
