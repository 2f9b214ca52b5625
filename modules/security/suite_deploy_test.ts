/**
 * Security suite, issue 11 ("Safe to deploy"): the two modes. A fresh production install is
 * closed (no demo admin, student or readers); a missing required setting stops start-up with one
 * line before anything is written; the sandbox gateway is neither offered nor accepted beside
 * WeChat Pay; no mail code reaches the log; the development outbox needs MAIL_OUTBOX=1 in
 * production; every page is marked 演示环境 in demo mode.
 *
 * The production-mode tests start the real server (`deno run -A main.ts`) against a fresh, empty
 * database on the PostgreSQL server of DATABASE_URL; without DATABASE_URL (the PGlite stage) they
 * are ignored, and the demo-mode ones start it on a fresh DATA_DIR.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { join } from "node:path";
import { sql } from "kysely";
// @ts-types="@types/pg"
import pg from "pg";
import { type Config, loadConfig } from "../platform/config.ts";
import { type DatabaseHandle, openDatabase } from "../platform/database.ts";
import { keyedHash } from "../platform/crypto.ts";
import { type Fetcher, TestClient } from "../platform/testing.ts";
import { createMailer } from "../mail/mod.ts";
import { getBalance } from "../wallet/mod.ts";
import { buildGateways, runTopupTick } from "../topup/mod.ts";
import { makeStudent, setupApp } from "../testkit/mod.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const PG_URL = Deno.env.get("DATABASE_URL") || null;
const onPostgres = PG_URL !== null;
const SECRET = "deploy-suite-app-secret-0123456789abcdef0123";
const PEPPER = "deploy-suite-card-pepper-0123456789abcdef012";

// ---------------------------------------------------------------------------------------------
// Helpers: WeChat Pay key files, empty databases, the real server as a subprocess.

/** WECHAT_* settings with freshly generated key files in `dir` (nothing is sent to WeChat). */
function wechatEnv(dir: string): Record<string, string> {
  const pair = () =>
    generateKeyPairSync("rsa", {
      modulusLength: 2048,
      publicKeyEncoding: { type: "spki", format: "pem" },
      privateKeyEncoding: { type: "pkcs8", format: "pem" },
    });
  const merchant = pair();
  const platform = pair();
  Deno.writeTextFileSync(join(dir, "apiclient_key.pem"), merchant.privateKey);
  Deno.writeTextFileSync(join(dir, "pub_key.pem"), platform.publicKey);
  return {
    WECHAT_APPID: "wx8888888888888888",
    WECHAT_MCHID: "1900000109",
    WECHAT_SERIAL_NO: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
    WECHAT_PRIVATE_KEY_PATH: join(dir, "apiclient_key.pem"),
    WECHAT_APIV3_KEY: "0123456789abcdefABCDEF0123456789",
    WECHAT_PLATFORM_PUBLIC_KEY_PATH: join(dir, "pub_key.pem"),
    WECHAT_PLATFORM_PUBLIC_KEY_ID: "PUB_KEY_ID_0119000001092025112500000000000001",
    WECHAT_API_BASE: "http://127.0.0.1:9",
  };
}

/** A new, empty (unmigrated) database on the PostgreSQL server of DATABASE_URL. */
async function emptyDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `yxt_deploy_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const admin = new pg.Client({ connectionString: PG_URL! });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const u = new URL(PG_URL!);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: PG_URL! });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}

/** Tables in the database's public schema (0 = nothing was migrated or written). */
async function tableCount(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query(
      "select count(*)::int as n from information_schema.tables where table_schema = 'public'",
    );
    return r.rows[0].n;
  } finally {
    await c.end();
  }
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** The environment of a server or CLI run: nothing inherited but what Deno itself needs. */
function baseEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/tmp",
    NO_COLOR: "1",
    DENO_NO_UPDATE_CHECK: "1",
    LOG_LEVEL: "info",
    ...extra,
  };
  const denoDir = Deno.env.get("DENO_DIR");
  if (denoDir) env.DENO_DIR = denoDir;
  return env;
}

/** Runs a script of this repository to its end; returns its exit code and all it printed. */
async function runScript(
  script: string,
  env: Record<string, string>,
  args: string[] = [],
): Promise<{ code: number; output: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    cwd: ROOT,
    env: baseEnv(env),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, output: d.decode(out.stdout) + d.decode(out.stderr) };
}

interface Server {
  url: string;
  /** Everything the server printed so far. */
  output(): string;
  /** An HTTP client with cookies and CSRF tokens, like a browser (TestClient over the network). */
  client(): TestClient;
  stop(): Promise<void>;
}

/** Starts `deno run -A main.ts` on free loopback ports; resolves when /healthz answers 200. */
async function startMain(env: Record<string, string>): Promise<Server> {
  const port = freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts"],
    cwd: ROOT,
    env: baseEnv({
      HOST: "127.0.0.1",
      PORT: String(port),
      TERMINAL_PORT: String(freePort()),
      BASE_URL: url,
      ...env,
    }),
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let output = "";
  const decoder = new TextDecoder();
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) output += decoder.decode(chunk, { stream: true });
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  const stop = async () => {
    if (!exited) child.kill("SIGTERM");
    await status;
    await drained;
  };
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (exited) {
      await drained;
      throw new Error(`main.ts exited before it was ready:\n${output}`);
    }
    try {
      const res = await fetch(`${url}/healthz`);
      await res.body?.cancel();
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`main.ts did not answer /healthz:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  // TestClient speaks to an in-process app at http://localhost:8000; this one goes to the server.
  const remote: Fetcher = {
    request: (input, init) =>
      fetch(String(input).replace("http://localhost:8000", url), { ...init, redirect: "manual" }),
  };
  const config = { appSecret: env.APP_SECRET ?? SECRET } as Config;
  return { url, output: () => output, client: () => new TestClient(remote, config), stop };
}

/** The one start-up line that states the mode (a JSON log line). */
function modeLine(output: string): Record<string, unknown> {
  const line = output.split("\n").find((l) => l.includes('"msg":"starting in '));
  assert.ok(line, `no start-up mode line in:\n${output}`);
  return JSON.parse(line);
}

async function count(db: DatabaseHandle["db"], table: string): Promise<number> {
  const r = await sql<{ n: number }>`select count(*)::int as n from ${sql.table(table)}`
    .execute(db);
  return Number(r.rows[0].n);
}

/** Production settings that start: secrets, SMTP (never reached here) and WeChat Pay. */
function productionEnv(databaseUrl: string, dir: string): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    DATA_DIR: join(dir, "data"),
    APP_SECRET: SECRET,
    CARD_PEPPER: PEPPER,
    SMTP_URL: "smtp://127.0.0.1:9",
    ...wechatEnv(dir),
  };
}

// ---------------------------------------------------------------------------------------------
// Production mode: the real server on a fresh PostgreSQL database.

Deno.test({
  name:
    "a fresh production install is closed: no demo admin, student or readers; the first staff member comes from create-admin (PostgreSQL)",
  ignore: !onPostgres,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "yxt-deploy-" });
    const database = await emptyDatabase();
    const env = productionEnv(database.url, dir);
    const server = await startMain(env);
    let db: DatabaseHandle | null = null;
    try {
      const staff = server.client();
      const asAdmin = await staff.post("/admin/login", {
        username: "admin",
        password: "Admin12345",
      });
      assert.notEqual(asAdmin.status, 303, "the demo admin signed in on a production install");
      assert.ok(!staff.cookies.has("yxt_staff"));
      const student = server.client();
      const asStudent = await student.post("/login", {
        phone: "13800000001",
        password: "Demo12345",
      });
      assert.notEqual(asStudent.status, 303, "the demo student signed in on a production install");
      assert.ok(!student.cookies.has("yxt_sid"));
      // The 登录 page carries no 演示环境 mark: this is the real service.
      assert.doesNotMatch(await student.page("/login"), /演示环境/);

      db = await openDatabase({ databaseUrl: database.url, poolSize: 1 });
      for (const table of ["staff", "accounts", "card_accounts", "terminals", "ledger_transfers"]) {
        assert.equal(await count(db.db, table), 0, `${table} is not empty on a fresh install`);
      }

      // The first staff member: `deno task create-admin`, which prints nothing secret.
      const password = "Fresh-Install-9x7";
      const created = await runScript("modules/staff/create_admin_cli.ts", env, [
        "root",
        "系统管理员",
        password,
      ]);
      assert.equal(created.code, 0, created.output);
      assert.match(created.output, /Created staff root/);
      assert.ok(!created.output.includes(password), "create-admin printed the password");
      assert.ok(!created.output.includes(SECRET) && !created.output.includes(PEPPER));
      assert.equal(await count(db.db, "staff"), 1);
      const first = server.client();
      const signedIn = await first.post("/admin/login", { username: "root", password });
      assert.equal(signedIn.status, 303);
      assert.ok(first.cookies.has("yxt_staff"));

      // The mode, stated at start-up in one log line; no demo sign-in printed.
      const mode = modeLine(server.output());
      assert.equal(mode.mode, "production");
      assert.equal(mode.demoData, false);
      assert.deepEqual(mode.gateways, ["wechat"]);
      assert.doesNotMatch(server.output(), /Admin12345|Demo12345/);
    } finally {
      await db?.close();
      await server.stop();
      await database.drop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "a missing required setting stops production start-up with one line naming it, before anything is written (PostgreSQL)",
  ignore: !onPostgres,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "yxt-deploy-" });
    const cases: Array<{ name: string; change: Record<string, string | null>; names: RegExp }> = [
      { name: "APP_SECRET", change: { APP_SECRET: null }, names: /\bAPP_SECRET\b/ },
      { name: "CARD_PEPPER", change: { CARD_PEPPER: null }, names: /\bCARD_PEPPER\b/ },
      { name: "SMTP_URL", change: { SMTP_URL: null }, names: /\bSMTP_URL\b.*MAIL_OUTBOX=1/ },
      {
        name: "a payment gateway",
        change: Object.fromEntries(Object.keys(wechatEnv(dir)).map((k) => [k, null])),
        names: /WECHAT_MCHID.*ALLOW_SANDBOX_GATEWAY=1/,
      },
      {
        name: "the sandbox beside WeChat Pay",
        change: { PAYMENT_GATEWAY: "sandbox" },
        names: /ALLOW_SANDBOX_GATEWAY=1/,
      },
      {
        name: "a WeChat Pay key",
        change: { WECHAT_APIV3_KEY: null },
        names: /\bWECHAT_APIV3_KEY\b/,
      },
      // Settings the app, the workers and the reader listener read: checked as early, demo data
      // asked for or not.
      {
        name: "a short METRICS_TOKEN",
        change: { METRICS_TOKEN: "too-short-token", SEED_DEMO: "1" },
        names: /\bMETRICS_TOKEN must be at least 24 characters/,
      },
      {
        name: "the meter API without its address and key",
        change: { METER_ADAPTER: "http", SEED_DEMO: "1" },
        names: /\bMETER_API_URL\b.*\bMETER_API_KEY\b/,
      },
      {
        name: "a top-up limit that is no amount",
        change: { TOPUP_MAX_YUAN: "一千", SEED_DEMO: "1" },
        names: /\bTOPUP_MAX_YUAN\b/,
      },
      {
        name: "a reader setting that is no number",
        change: { TERMINAL_OFFLINE_PAYMENT_LIMIT: "15元", SEED_DEMO: "1" },
        names: /\bTERMINAL_OFFLINE_PAYMENT_LIMIT\b/,
      },
    ];
    const databases = await Promise.all(cases.map(() => emptyDatabase()));
    try {
      await Promise.all(cases.map(async (c, i) => {
        const env = productionEnv(databases[i].url, dir);
        env.DATA_DIR = join(dir, `data-${i}`);
        for (const [k, v] of Object.entries(c.change)) {
          if (v === null) delete env[k];
          else env[k] = v;
        }
        const run = await runScript("main.ts", env);
        assert.equal(run.code, 1, `${c.name}: start-up did not fail:\n${run.output}`);
        const lines = run.output.trim().split("\n");
        assert.equal(lines.length, 1, `${c.name}: not one line:\n${run.output}`);
        assert.match(lines[0], c.names, `${c.name}: the line does not name it`);
        assert.ok(!lines[0].includes(SECRET) && !lines[0].includes(PEPPER));
        assert.equal(await tableCount(databases[i].url), 0, `${c.name}: the database was written`);
        assert.throws(() => Deno.statSync(env.DATA_DIR), Deno.errors.NotFound);
      }));
    } finally {
      await Promise.all(databases.map((d) => d.drop()));
      await Deno.remove(dir, { recursive: true });
    }
  },
});

// ---------------------------------------------------------------------------------------------
// Mail: no body, code or token in any log line, in either mode.

Deno.test("no email code reaches the log: production keeps mail in the outbox only with MAIL_OUTBOX=1, and never logs its text", async () => {
  const dir = await Deno.makeTempDir({ prefix: "yxt-deploy-" });
  const database = onPostgres ? await emptyDatabase() : null;
  const dataDir = join(dir, "data");
  // PostgreSQL stage: production with demo data asked for and the outbox allowed explicitly;
  // PGlite stage: the demo (embedded database, no SMTP_URL).
  const env: Record<string, string> = database
    ? {
      DATABASE_URL: database.url,
      DATA_DIR: dataDir,
      APP_SECRET: SECRET,
      CARD_PEPPER: PEPPER,
      MAIL_OUTBOX: "1",
      SEED_DEMO: "1",
      PAYMENT_GATEWAY: "sandbox",
      ALLOW_SANDBOX_GATEWAY: "1",
    }
    : { DATA_DIR: dataDir, APP_SECRET: SECRET, CARD_PEPPER: PEPPER };
  const server = await startMain(env);
  let stopped = false;
  try {
    const student = server.client();
    const signedIn = await student.post("/login", { phone: "13800000001", password: "Demo12345" });
    assert.equal(signedIn.status, 303);
    const sent = await student.post("/me/email/code", { email: "deploy-suite@example.com" });
    assert.equal(sent.status, 200);
    assert.match(await sent.text(), /验证码已发送/);
    await server.stop();
    stopped = true;
    const handle = await openDatabase(
      database ? { databaseUrl: database.url, poolSize: 1 } : { databaseUrl: null, dataDir },
    );
    let body: string;
    try {
      const row = await handle.db.selectFrom("mail_outbox").select("body_text")
        .where("to_address", "=", "deploy-suite@example.com").executeTakeFirstOrThrow();
      body = row.body_text;
    } finally {
      await handle.close();
    }
    const code = /\b(\d{6})\b/.exec(body)?.[1];
    assert.ok(code, `no code in the mail: ${body}`);
    const log = server.output();
    assert.match(log, /mail kept in development outbox/);
    assert.ok(!log.includes(code), "the email code is in the server log");
    for (const line of body.split("\n").map((l) => l.trim()).filter((l) => l.length > 8)) {
      assert.ok(!log.includes(line), `a line of the mail body is in the log: ${line}`);
    }
    assert.equal(modeLine(log).mode, database ? "production" : "demo");
    assert.equal(modeLine(log).mail, "development outbox");
  } finally {
    if (!stopped) await server.stop();
    await database?.drop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("production refuses the development outbox without MAIL_OUTBOX=1", async () => {
  const h = await setupApp();
  try {
    const base = {
      APP_SECRET: SECRET,
      CARD_PEPPER: PEPPER,
      DATABASE_URL: "postgres://db.example/yxt",
      ALLOW_SANDBOX_GATEWAY: "1",
    };
    assert.throws(() => loadConfig(base, { server: true }), /SMTP_URL is not set/);
    const production = loadConfig(base);
    assert.throws(() => createMailer({ db: h.db, config: production }), /SMTP_URL/);
    const outbox = loadConfig({ ...base, MAIL_OUTBOX: "1" }, { server: true });
    assert.equal(createMailer({ db: h.db, config: outbox }).kind, "outbox");
    const demo = loadConfig({ APP_SECRET: SECRET, CARD_PEPPER: PEPPER }, { server: true });
    assert.equal(createMailer({ db: h.db, config: demo }).kind, "outbox");
  } finally {
    await h.h.close();
  }
});

Deno.test("every setting the app, its workers and the reader listener read is checked by loadConfig, one line naming it", () => {
  const demo = { APP_SECRET: SECRET, CARD_PEPPER: PEPPER };
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ METRICS_TOKEN: "short" }, /METRICS_TOKEN must be at least 24 characters/],
    [{ METER_ADAPTER: "vendor" }, /METER_ADAPTER must be simulated or http/],
    [{ METER_ADAPTER: "http" }, /METER_API_URL is not set.*METER_API_KEY is not set/],
    [
      { METER_ADAPTER: "http", METER_API_URL: "meter.example.edu.cn", METER_API_KEY: "k" },
      /METER_API_URL must be an http/,
    ],
    [{ METER_TIMEOUT_MS: "0" }, /METER_TIMEOUT_MS must be a whole number above 0/],
    [{ TOPUP_MIN_YUAN: "0" }, /TOPUP_MIN_YUAN must be an amount in yuan above 0/],
    [{ TOPUP_DAILY_YUAN: "-5" }, /TOPUP_DAILY_YUAN must be an amount/],
    [{ TOPUP_MIN_YUAN: "2000" }, /TOPUP_MIN_YUAN must not be above TOPUP_MAX_YUAN/],
    [{ TOPUP_MAX_YUAN: "3000" }, /TOPUP_MAX_YUAN must not be above TOPUP_DAILY_YUAN/],
    [{ TERMINAL_MAX_CONNECTIONS: "lots" }, /TERMINAL_MAX_CONNECTIONS must be a whole number/],
    [{ TERMINAL_TIMESTAMP_WINDOW: "-1" }, /TERMINAL_TIMESTAMP_WINDOW must be a whole number/],
    [{ SHOWER_HOLD_TIMEOUT: "1h" }, /SHOWER_HOLD_TIMEOUT must be a whole number/],
    [{ TERMINAL_PORT: "70000" }, /TERMINAL_PORT must be a port number/],
    [{ TRUST_PROXY: "yes" }, /TRUST_PROXY must be 1 or 0/],
    [{ LOG_LEVEL: "verbose" }, /LOG_LEVEL must be debug, info, warn or error/],
    [{ BASE_URL: "yxt.example.edu.cn" }, /BASE_URL must be an http/],
  ];
  for (const [change, names] of cases) {
    for (const env of [demo, { ...demo, DATABASE_URL: "postgres://db.example/yxt" }]) {
      assert.throws(() => loadConfig({ ...env, ...change }), names);
    }
  }
  // Two problems at once are named in the one line; a secret's value never is.
  assert.throws(
    () => loadConfig({ ...demo, METRICS_TOKEN: "s3cret", TOPUP_MAX_YUAN: "x" }),
    (e: Error) =>
      !e.message.includes("\n") && /METRICS_TOKEN/.test(e.message) &&
      /TOPUP_MAX_YUAN/.test(e.message) && !e.message.includes("s3cret"),
  );
  // Good values pass.
  const fine = loadConfig({
    ...demo,
    METRICS_TOKEN: "m".repeat(24),
    METER_ADAPTER: "http",
    METER_API_URL: "https://meter.example.edu.cn/api",
    METER_API_KEY: "meter-key",
    TOPUP_MIN_YUAN: "0.50",
    TOPUP_MAX_YUAN: "500",
    TOPUP_DAILY_YUAN: "500",
    TERMINAL_MAX_CONNECTIONS: "0",
    TRUST_PROXY: "1",
  });
  assert.equal(fine.meterAdapter, "http");
});

Deno.test("a bad setting stops demo start-up before DATA_DIR is created", async () => {
  const dir = await Deno.makeTempDir({ prefix: "yxt-deploy-" });
  try {
    const dataDir = join(dir, "data");
    const run = await runScript("main.ts", { DATA_DIR: dataDir, METRICS_TOKEN: "too-short" });
    assert.equal(run.code, 1, run.output);
    const lines = run.output.trim().split("\n");
    assert.equal(lines.length, 1, run.output);
    assert.match(lines[0], /\bMETRICS_TOKEN\b/);
    assert.throws(() => Deno.statSync(dataDir), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the demo's DATA_DIR is created 0700 before its secrets are written into it", async () => {
  const dir = await Deno.makeTempDir({ prefix: "yxt-deploy-" });
  try {
    const dataDir = join(dir, "nested", "data");
    loadConfig({ DATA_DIR: dataDir });
    for (const d of [dataDir, join(dir, "nested")]) {
      assert.equal(Deno.statSync(d).mode! & 0o777, 0o700, d);
    }
    assert.equal(Deno.statSync(join(dataDir, "secrets.json")).mode! & 0o777, 0o600);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------
// The modes themselves: demo data, the 演示环境 mark.

Deno.test("demo data: the demo default, in production only with SEED_DEMO=1", () => {
  const secrets = { APP_SECRET: SECRET, CARD_PEPPER: PEPPER };
  const production = { ...secrets, DATABASE_URL: "postgres://db.example/yxt" };
  assert.equal(loadConfig(production).seedDemo, false);
  assert.equal(loadConfig({ ...production, SEED_DEMO: "0" }).seedDemo, false);
  assert.equal(loadConfig({ ...production, SEED_DEMO: "1" }).seedDemo, true);
  assert.equal(loadConfig(secrets).seedDemo, true);
  assert.equal(loadConfig({ ...secrets, SEED_DEMO: "0" }).seedDemo, false);
});

Deno.test("every student and staff page is marked 演示环境 in demo mode, and not in production", async () => {
  const dir = await Deno.makeTempDir({ prefix: "yxt-deploy-" });
  const demo = loadConfig({ APP_SECRET: SECRET, CARD_PEPPER: PEPPER }, { server: true });
  const production = loadConfig({
    APP_SECRET: SECRET,
    CARD_PEPPER: PEPPER,
    DATABASE_URL: "postgres://db.example/yxt",
    SMTP_URL: "smtp://127.0.0.1:9",
    ...wechatEnv(dir),
  }, { server: true });
  try {
    for (const [config, marked] of [[demo, true], [production, false]] as const) {
      const ctx = await setupApp(config);
      try {
        const { client } = await makeStudent(ctx);
        const anonymous = new TestClient(ctx.app, ctx.config);
        const pages = [
          await anonymous.page("/login"),
          await anonymous.page("/admin/login"),
          await client.page("/"),
          await client.page("/wallet"),
          await (await client.get("/no-such-page")).text(),
        ];
        for (const html of pages) {
          assert.equal(/class="demo-mark"[^>]*>演示环境/.test(html), marked, html.slice(0, 300));
        }
      } finally {
        await ctx.h.close();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------------
// The sandbox gateway beside WeChat Pay: neither offered nor accepted.

Deno.test("with WeChat Pay configured the 测试支付 sandbox is neither offered nor accepted: no order, no credit (demo and production)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "yxt-deploy-" });
  const secrets = { APP_SECRET: SECRET, CARD_PEPPER: PEPPER, ...wechatEnv(dir) };
  const configs = {
    // The attack of issue 11: the embedded database with WECHAT_* set.
    demo: loadConfig(secrets, { server: true }),
    production: loadConfig({
      ...secrets,
      DATABASE_URL: "postgres://db.example/yxt",
      SMTP_URL: "smtp://127.0.0.1:9",
    }, { server: true }),
  };
  try {
    for (const [mode, config] of Object.entries(configs)) {
      const ctx = await setupApp(config);
      try {
        const { client, cardAccountId, accountId } = await makeStudent(ctx);
        const page = await client.page("/wallet/recharge");
        assert.match(page, /微信支付/, mode);
        assert.doesNotMatch(page, /测试支付|value="sandbox"/, `${mode}: the sandbox is offered`);

        const forced = await client.post("/wallet/recharge", { amount: "1000", method: "sandbox" });
        assert.equal(forced.status, 422, mode);
        assert.match(await forced.text(), /未开放测试支付/);
        assert.equal(await count(ctx.db, "topup_orders"), 0, `${mode}: an order was made`);

        // A sandbox order left from before WeChat Pay was configured: its own pages, its confirm
        // and a correctly signed notify are all refused, and nothing is credited.
        const orderNo = `YXT20261203000000${String(accountId).padStart(8, "0")}`.slice(0, 32);
        await ctx.db.insertInto("topup_orders").values({
          order_no: orderNo,
          account_id: accountId,
          card_account_id: cardAccountId,
          method: "sandbox",
          amount: 100_000,
          gateway_txn_id: null,
          prepay_id: null,
          transfer_id: null,
          expires_at: new Date(Date.now() + 600_000),
          paid_at: null,
          closed_at: null,
          last_checked_at: null,
          flag_reason: null,
        }).execute();
        await ctx.db.insertInto("sandbox_payments").values({
          order_no: orderNo,
          amount: 100_000,
          txn_id: "SBX-deploy-suite",
        }).execute();
        assert.equal((await client.get(`/pay/sandbox/${orderNo}`)).status, 404, mode);
        assert.equal((await client.post(`/pay/sandbox/${orderNo}/confirm`)).status, 404, mode);
        const body = JSON.stringify({
          order_no: orderNo,
          txn_id: "SBX-deploy-suite",
          amount: 100_000,
          state: "SUCCESS",
          notify_id: "N-deploy-suite",
        });
        const ts = String(Math.floor(Date.now() / 1000));
        const notify = await ctx.app.request("http://localhost:8000/pay/notify/sandbox", {
          method: "POST",
          headers: {
            "content-type": "application/json",
            "x-sandbox-timestamp": ts,
            "x-sandbox-signature": await keyedHash(SECRET, "sandbox-notify", `${ts}\n${body}`),
          },
          body,
        });
        assert.equal(notify.status, 404, mode);
        // The background loop, with this deployment's gateways, delivers and credits nothing.
        await runTopupTick(ctx, buildGateways(ctx), ctx.app);
        const order = await ctx.db.selectFrom("topup_orders").select("state")
          .where("order_no", "=", orderNo).executeTakeFirstOrThrow();
        assert.equal(order.state, "pending", mode);
        assert.equal((await getBalance(ctx.db, cardAccountId)).balance, 0, `${mode}: credited`);
      } finally {
        await ctx.h.close();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
