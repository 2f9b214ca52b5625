/**
 * 一信通: composes configuration, database, the HTTP app and the terminal listener.
 * `createApp` is what tests drive in-process; running this file starts the servers.
 */
import { Hono } from "hono";
import {
  type AppEnv,
  type Config,
  createBaseApp,
  type Db,
  deployMode,
  describeMode,
  FORM_BODY_LIMIT,
  loadAssets,
  loadConfig,
  logger,
  migrateSchema,
  openDatabase,
  showsDemoMark,
  UPLOAD_BODY_LIMIT,
} from "./modules/platform/mod.ts";
import { sessionMiddleware } from "./modules/security/mod.ts";
import { loadStaff, staffRoutes } from "./modules/staff/mod.ts";
import { seedDemoData } from "./modules/demo/mod.ts";
import { listReaderKeys, merchantRoutes } from "./modules/merchant/mod.ts";
import { startTerminalServer } from "./terminal/mod.ts";
import { accountAdminRoutes, accountRoutes } from "./modules/account/mod.ts";
import { createMailer, mailAdminRoutes, type Mailer } from "./modules/mail/mod.ts";
import { homeRoutes } from "./modules/home/mod.ts";
import {
  cardAdminRoutes,
  cardRoutes,
  cardTypeRoutes,
  mealPeriodRoutes,
} from "./modules/card/mod.ts";
import { billingAdminRoutes, billingRoutes, startBillingWorker } from "./modules/billing/mod.ts";
import { loadWechatConfig, startTopupLoop, topupRoutes } from "./modules/topup/mod.ts";
import {
  financeRoutes,
  merchantPortalRoutes,
  settlementLedgerCheck,
} from "./modules/finance/mod.ts";
import { closeoutRoutes, startCloseoutWorker } from "./modules/closeout/mod.ts";
import { startSubsidyWorker, subsidyRoutes } from "./modules/subsidy/mod.ts";
import {
  cardClosingRoutes,
  ledgerAdminRoutes,
  registerTransferLabeler,
  startHoldExpiryLoop,
  walletRoutes,
} from "./modules/wallet/mod.ts";
import { describeUtilityTransfers } from "./modules/billing/mod.ts";
import {
  loadTemplates,
  notifyAdminRoutes,
  notifyRoutes,
  startNotifier,
} from "./modules/notify/mod.ts";
import { operatorRoutes } from "./modules/platform/operator.ts";
import { operatorToken } from "./modules/platform/data_dir.ts";
import { markDraining } from "./modules/platform/readiness.ts";

/** What every module's routes and services are built from. */
export interface AppDeps {
  db: Db;
  config: Config;
  /** Registers work to do on shutdown (stop background loops). */
  onShutdown(fn: () => Promise<void> | void): void;
  /** Outgoing mail; when absent, createApp builds one from config (SMTP_URL or the outbox). */
  mailer?: Mailer;
}

/** Paths that outside systems POST to without a browser session (gateway notifies). */
const CSRF_EXEMPT = ["/pay/notify/"];

/**
 * The forms that upload a file (导入持卡人, 充值对账's statement, 从CSV导入房间, 毕业离校's 学号
 * list, 补助发放's list): their bodies may reach UPLOAD_BODY_LIMIT; every other body is refused above
 * FORM_BODY_LIMIT.
 */
export const UPLOAD_PATHS = [
  "/admin/cards/import",
  "/admin/closeout/new",
  "/admin/subsidy/new",
  "/admin/finance/reconcile",
  "/admin/billing/buildings/import",
];

/** Builds the whole HTTP application. */
export function createApp(deps: AppDeps): Hono<AppEnv> {
  const app = createBaseApp({
    db: deps.db,
    demoMark: showsDemoMark(deps.config),
    bodyLimits: {
      forms: FORM_BODY_LIMIT,
      uploads: { paths: UPLOAD_PATHS, maxSize: UPLOAD_BODY_LIMIT },
    },
    metricsToken: deps.config.env.METRICS_TOKEN || null,
  });
  app.use("*", sessionMiddleware(deps, { exempt: CSRF_EXEMPT }));
  app.use("/admin/*", loadStaff(deps.db));
  app.use("/admin", loadStaff(deps.db));
  app.route("/admin", staffRoutes(deps));
  app.route("/admin", merchantRoutes(deps));
  const mailer = deps.mailer ?? createMailer(deps);
  app.route("/admin", accountAdminRoutes(deps));
  app.route("/admin", mailAdminRoutes({ db: deps.db, mailer }));
  app.route("/", accountRoutes({ ...deps, mailer }));
  app.route("/", homeRoutes(deps));
  app.route("/billing", billingRoutes(deps));
  app.route("/admin/billing", billingAdminRoutes(deps));
  app.route("/", topupRoutes(deps));
  app.route("/admin/finance", financeRoutes(deps));
  app.route("/admin/my-merchant", merchantPortalRoutes(deps));
  app.route("/security", cardRoutes(deps));
  app.route("/admin/cards", cardAdminRoutes(deps));
  app.route("/admin/cards", cardClosingRoutes(deps));
  app.route("/admin/card-types", cardTypeRoutes(deps));
  app.route("/admin/meal-periods", mealPeriodRoutes(deps));
  app.route("/admin/closeout", closeoutRoutes(deps));
  app.route("/admin/subsidy", subsidyRoutes(deps));
  // 交易记录 shows 电费/冷水 purchases with their room and delivery state.
  registerTransferLabeler(describeUtilityTransfers);
  app.route("/", walletRoutes(deps));
  app.route("/admin/ledger", ledgerAdminRoutes({ ...deps, checks: [settlementLedgerCheck] }));
  app.route("/", notifyRoutes(deps));
  app.route("/admin", notifyAdminRoutes(deps));
  return app;
}

async function start(): Promise<void> {
  const log = logger("main");
  // Every required setting is checked before anything is written: no migration, no demo data,
  // no generated secrets file when one is missing (one line naming it, exit 1).
  const config = loadConfig(Deno.env.toObject(), { server: true });
  // WeChat Pay's key files are read now too, so a bad one stops start-up just as early.
  loadWechatConfig(config.env, config.baseUrl);
  // And the 服务号's message templates (WECHAT_TEMPLATE_*).
  loadTemplates(config.env);
  log.info(`starting in ${deployMode(config)} mode`, describeMode(config));
  const handle = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  // Beside a newer release (a rolling upgrade, a roll-back) this applies nothing and starts as
  // long as every migration of this code is applied (docs/OPERATIONS.md §10).
  const { applied, newer } = await migrateSchema(handle.db);
  if (applied.length) log.info("migrations applied", { applied });
  if (newer.length) log.info("the database has a newer release's migrations", { newer });
  await loadAssets();

  const stoppers: Array<() => Promise<void> | void> = [];
  const deps: AppDeps = { db: handle.db, config, onShutdown: (fn) => stoppers.push(fn) };
  if (config.seedDemo) {
    const seeded = await seedDemoData(deps);
    if (seeded) log.info("demo data seeded");
  }
  const app = createApp(deps);
  // Delivers paid utility purchases to the meter system; refunds what cannot be delivered.
  deps.onShutdown(startBillingWorker(deps));
  deps.onShutdown(startCloseoutWorker(deps));
  deps.onShutdown(startSubsidyWorker(deps));
  // Sandbox notifies, queries of pending top-ups, closing expired ones.
  deps.onShutdown(startTopupLoop(deps, app));
  // Releases shower holds whose end never arrived.
  deps.onShutdown(startHoldExpiryLoop(deps));
  // 消息通知: messages from what committed, delivered through the 服务号 or by email.
  deps.onShutdown(startNotifier({ ...deps, mailer: createMailer(deps) }));

  // BENCH_HELLO=1: a bare Hono route outside the middleware, the reference of `deno task bench`.
  const hello = Deno.env.get("BENCH_HELLO") === "1"
    ? new Hono().get("/__bench/hello", (c) => c.text("hello"))
    : null;
  // Readers over TCP. Registered last, so it stops first on shutdown: no new connections, requests
  // in flight finish and are answered before the database closes.
  const terminals = startTerminalServer(deps, { port: config.terminalPort });
  deps.onShutdown(() => terminals.close());
  // `deno task backup` and `sim keys` of the embedded database go through here (the server holds
  // DATA_DIR); outside the public app, answering only the token written into DATA_DIR's lock file.
  const opsToken = operatorToken();
  const ops = handle.lock
    ? operatorRoutes({
      token: opsToken,
      dump: handle.dump,
      readers: () => listReaderKeys(handle.db, config.appSecret),
    })
    : null;
  const hostname = Deno.env.get("HOST") ?? "0.0.0.0";
  const server = Deno.serve(
    { port: config.port, hostname, onListen: () => {} },
    (req, info) =>
      hello && req.url.endsWith("/__bench/hello")
        ? hello.fetch(req)
        : ops && new URL(req.url).pathname.startsWith("/ops/")
        ? ops.fetch(req)
        : app.fetch(req, { remoteAddr: info.remoteAddr }),
  );
  const local = ["0.0.0.0", "::", ""].includes(hostname)
    ? "127.0.0.1"
    : hostname.includes(":")
    ? `[${hostname}]`
    : hostname;
  handle.lock?.announce({ url: `http://${local}:${config.port}`, token: opsToken });

  console.log(`\n  校园一信通 is running at ${config.baseUrl}/`);
  console.log(
    `  Database: ${
      handle.kind === "pglite" ? `embedded PGlite in ${config.dataDir}/pgdata` : "PostgreSQL"
    }`,
  );
  console.log(`  Readers: TCP port ${terminals.port}  (deno task sim --terminal 10001)`);
  if (config.seedDemo) {
    console.log(
      `  Staff console: ${config.baseUrl}/admin  (demo sign-in: admin / Admin12345, a new password is asked first)`,
    );
    console.log(
      `  Student demo: ${config.baseUrl}/login  (phone 13800000001 / password Demo12345)\n`,
    );
  } else {
    console.log(
      `  Staff console: ${config.baseUrl}/admin  (first staff member: deno task create-admin <username> <name> <password>)\n`,
    );
  }

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("shutting down", { signal });
    // Load balancers polling /readyz stop sending new work while this one finishes its own.
    markDraining();
    for (const stop of stoppers.reverse()) {
      try {
        await stop();
      } catch (err) {
        log.error("shutdown step failed", { err: (err as Error).message });
      }
    }
    await server.shutdown();
    await handle.close();
    log.info("stopped");
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", () => shutdown("SIGTERM"));
  Deno.addSignalListener("SIGINT", () => shutdown("SIGINT"));
}

if (import.meta.main) {
  try {
    await start();
  } catch (err) {
    console.error((err as Error).message);
    Deno.exit(1);
  }
}
