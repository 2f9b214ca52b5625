/**
 * Test support: a fresh, migrated database per test (PGlite in memory by default, or a new
 * database on the PostgreSQL server of DATABASE_URL), a test configuration, and an in-process
 * HTTP client with a cookie jar that fills in CSRF tokens like a browser would.
 */
import { Kysely, sql } from "kysely";
// @ts-types="@types/pg"
import pg from "pg";
import { PGlite } from "@electric-sql/pglite";
import { type Config, loadConfig } from "./config.ts";
import { type DatabaseHandle, openDatabase } from "./database.ts";
import { migrateToLatest } from "./migrate.ts";
import { keyedHash } from "./crypto.ts";
import { setLogLevel } from "./log.ts";

const TEST_SECRET = "test-app-secret-0123456789abcdef0123456789abcdef";
const TEST_PEPPER = "test-card-pepper-0123456789abcdef0123456789abcdef";

/** A configuration for tests: fixed secrets, no SMTP, sandbox gateway, simulated meters. */
export function testConfig(overrides: Partial<Config> = {}): Config {
  if (!Deno.env.get("LOG_LEVEL")) setLogLevel("warn");
  const config = loadConfig({
    APP_SECRET: TEST_SECRET,
    CARD_PEPPER: TEST_PEPPER,
    DATA_DIR: "/nonexistent-test-data",
    BASE_URL: "http://localhost:8000",
    PAYMENT_GATEWAY: "sandbox",
    ALLOW_SANDBOX_GATEWAY: "1",
    SEED_DEMO: "0",
    // On the PostgreSQL stage the config is production's (DATABASE_URL): mail stays in the outbox.
    MAIL_OUTBOX: "1",
  });
  return { ...config, databaseUrl: Deno.env.get("DATABASE_URL") || null, ...overrides };
}

let liteSnapshot: Promise<Blob> | null = null;

/**
 * The migrated PGlite data directory, built once per migration set and kept on disk so the
 * parallel test workers do not each run every migration.
 */
async function migratedLiteSnapshot(): Promise<Blob> {
  const dir = Deno.env.get("TMPDIR") ?? "/tmp";
  const file = `${dir}/yxt-test-pglite-${await migrationsFingerprint()}.tar`;
  const lock = `${file}.lock`;
  for (let waited = 0; waited < 120_000; waited += 100) {
    try {
      return new Blob([await Deno.readFile(file)]);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    try {
      Deno.mkdirSync(lock);
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
      // Another worker is building it; a lock older than two minutes is left over from a crash.
      const age = Date.now() - (Deno.statSync(lock).mtime?.getTime() ?? 0);
      if (age > 120_000) Deno.removeSync(lock);
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    try {
      const blob = await buildLiteSnapshot();
      const tmp = `${file}.${crypto.randomUUID()}`;
      await Deno.writeFile(tmp, new Uint8Array(await blob.arrayBuffer()));
      await Deno.rename(tmp, file);
      for (const e of Deno.readDirSync(dir)) {
        const stale = /^yxt-test-pglite-[0-9a-f]+\.tar$/.test(e.name) &&
          `${dir}/${e.name}` !== file;
        if (stale) Deno.removeSync(`${dir}/${e.name}`);
      }
      return blob;
    } finally {
      Deno.removeSync(lock);
    }
  }
  throw new Error(`Cannot build the test database snapshot: ${lock} stayed locked`);
}

async function buildLiteSnapshot(): Promise<Blob> {
  const lite = await PGlite.create();
  const handle = await openDatabaseFromLite(lite);
  await migrateToLatest(handle.db);
  const dump = await lite.dumpDataDir("none");
  await handle.close();
  return dump;
}

async function openDatabaseFromLite(lite: PGlite): Promise<DatabaseHandle> {
  const { PGliteDialect } = await import("./_pglite_dialect.ts");
  // deno-lint-ignore no-explicit-any
  const db = new Kysely<any>({ dialect: new PGliteDialect(lite) });
  return {
    db,
    kind: "pglite",
    close: async () => {
      await db.destroy();
      await lite.close();
    },
  };
}

let templateReady: Promise<string> | null = null;

async function migrationsFingerprint(): Promise<string> {
  const names: string[] = [];
  const dir = new URL("../../migrations/", import.meta.url);
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile) {
      names.push(`${e.name}:${(await Deno.stat(new URL(e.name, dir))).mtime?.getTime()}`);
    }
  }
  names.sort();
  return (await keyedHash("fingerprint", "migrations", names.join("|"))).slice(0, 12);
}

/** Creates (once per migration set) a migrated template database on the server. */
async function ensureTemplate(url: string): Promise<string> {
  const name = `yxt_tpl_${await migrationsFingerprint()}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    // Several test processes run at once: one builds the template, the others wait for it.
    await admin.query("select pg_advisory_lock(724001)");
    const exists = await admin.query("select 1 from pg_database where datname = $1", [name]);
    if (exists.rowCount === 0) {
      const building = `${name}_build`;
      await admin.query(`drop database if exists ${building}`);
      await admin.query(`create database ${building}`);
      const u = new URL(url);
      u.pathname = `/${building}`;
      const h = await openDatabase({ databaseUrl: u.toString(), poolSize: 2 });
      try {
        await migrateToLatest(h.db);
      } finally {
        await h.close();
      }
      await admin.query(`alter database ${building} rename to ${name}`);
      await admin.query(`alter database ${name} with is_template true`);
    }
    await admin.query("select pg_advisory_unlock(724001)");
  } finally {
    await admin.end();
  }
  return name;
}

interface SharedLite {
  handle: DatabaseHandle;
  tables: string[];
  rows: Map<string, unknown[]>;
  sequences: Array<{ name: string; value: number | null }>;
  inUse: boolean;
}

let sharedLite: Promise<SharedLite> | null = null;

/**
 * Starting PGlite costs seconds, so each test worker keeps one migrated instance and puts it back
 * to its just-migrated state between tests: truncate every table, restore the rows migrations
 * inserted, reset the sequences.
 */
async function openSharedLite(): Promise<SharedLite> {
  liteSnapshot ??= migratedLiteSnapshot();
  const handle = await openDatabase({ databaseUrl: null, loadDataDir: await liteSnapshot });
  const tables = (await sql<{ tablename: string }>`
    select tablename from pg_tables where schemaname = 'public' and tablename not like 'kysely_%'
    order by tablename`.execute(handle.db)).rows.map((r) => r.tablename);
  const rows = new Map<string, unknown[]>();
  for (const t of tables) {
    const r = await sql<{ j: unknown[] | null }>`select json_agg(t) as j from ${sql.table(t)} t`
      .execute(handle.db);
    if (r.rows[0].j) rows.set(t, r.rows[0].j);
  }
  const sequences = (await sql<{ name: string; value: number | null }>`
    select sequencename as name, last_value as value from pg_sequences where schemaname = 'public'`
    .execute(handle.db)).rows;
  return { handle, tables, rows, sequences, inUse: false };
}

async function resetSharedLite(s: SharedLite): Promise<void> {
  const db = s.handle.db;
  if (s.tables.length) {
    await sql`truncate table ${
      sql.join(s.tables.map((t) => sql.table(t)))
    } restart identity cascade`
      .execute(db);
  }
  await sql`set session_replication_role = replica`.execute(db);
  for (const [table, rows] of s.rows) {
    await sql`insert into ${sql.table(table)} overriding system value
      select * from json_populate_recordset(null::${sql.table(table)}, ${
      JSON.stringify(rows)
    }::json)`
      .execute(db);
  }
  await sql`set session_replication_role = origin`.execute(db);
  for (const seq of s.sequences) {
    if (seq.value !== null) {
      await sql`select setval(${seq.name}::regclass, ${seq.value})`.execute(db);
    }
  }
}

/** A test's database: `await using h = await createTestDatabase()` closes it at the block's end. */
export type TestDatabase = DatabaseHandle & { url: string | null } & AsyncDisposable;

/**
 * A fresh migrated database for one test, dropped (PostgreSQL) or reset (PGlite) on close, which
 * `await using` does by itself.
 */
export async function createTestDatabase(
  options: { poolSize?: number } = {},
): Promise<TestDatabase> {
  const h = await openTestDatabase(options);
  return { ...h, [Symbol.asyncDispose]: () => h.close() };
}

async function openTestDatabase(
  options: { poolSize?: number },
): Promise<DatabaseHandle & { url: string | null }> {
  const url = Deno.env.get("DATABASE_URL");
  if (!url) {
    sharedLite ??= openSharedLite();
    const shared = await sharedLite;
    if (shared.inUse) {
      // A test holding two databases at once gets a separate instance for the second.
      const handle = await openDatabase({ databaseUrl: null, loadDataDir: await liteSnapshot! });
      return { ...handle, url: null };
    }
    shared.inUse = true;
    return {
      db: shared.handle.db,
      kind: "pglite",
      url: null,
      async close() {
        await resetSharedLite(shared);
        shared.inUse = false;
      },
    };
  }
  templateReady ??= ensureTemplate(url);
  const template = await templateReady;
  const name = `yxt_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`create database ${name} template ${template}`);
  await admin.end();
  const u = new URL(url);
  u.pathname = `/${name}`;
  const handle = await openDatabase({
    databaseUrl: u.toString(),
    poolSize: options.poolSize ?? 10,
  });
  return {
    ...handle,
    url: u.toString(),
    async close() {
      await handle.close();
      const a = new pg.Client({ connectionString: url });
      await a.connect();
      await a.query(`drop database if exists ${name} with (force)`);
      await a.end();
    },
  };
}

/** The CSRF token the server expects for a cookie jar (same derivation as the middleware). */
export async function csrfFor(
  config: Config,
  cookies: Map<string, string>,
  admin = false,
): Promise<string> {
  let basis: string;
  if (admin && cookies.get("yxt_staff")) basis = `t:${cookies.get("yxt_staff")}`;
  else if (!admin && cookies.get("yxt_sid")) basis = `s:${cookies.get("yxt_sid")}`;
  else basis = `a:${cookies.get("yxt_anon")}`;
  return (await keyedHash(config.appSecret, "csrf", basis)).slice(0, 40);
}

/** The shape of an app that can answer requests in-process (a Hono app). */
export interface Fetcher {
  // deno-lint-ignore no-explicit-any
  request(input: string | Request, init?: RequestInit, env?: any): Response | Promise<Response>;
}

/**
 * A browser-like in-process client: keeps cookies, sends forms with the right CSRF token, and
 * does not follow redirects (tests look at them).
 */
export class TestClient {
  readonly cookies = new Map<string, string>();
  constructor(readonly app: Fetcher, readonly config: Config, readonly ip = "127.0.0.1") {}

  #store(res: Response): void {
    for (const line of res.headers.getSetCookie()) {
      const [pair, ...attrs] = line.split(";");
      const eq = pair.indexOf("=");
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => /max-age=0\b/i.test(a.trim())) || value === "";
      if (expired) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  /** What Deno.serve passes to the app: the client's socket address. */
  #env() {
    return { remoteAddr: { transport: "tcp", hostname: this.ip, port: 50000 } };
  }

  #headers(extra: Record<string, string> = {}): Headers {
    const h = new Headers(extra);
    if (this.cookies.size) {
      h.set(
        "cookie",
        [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; "),
      );
    }
    return h;
  }

  /** GET a path. */
  async get(path: string, headers: Record<string, string> = {}): Promise<Response> {
    const res = await this.app.request(`http://localhost:8000${path}`, {
      headers: this.#headers(headers),
    }, this.#env());
    this.#store(res);
    return res;
  }

  /** GET a path and return the body text, failing on a non-2xx status. */
  async page(path: string, headers: Record<string, string> = {}): Promise<string> {
    const res = await this.get(path, headers);
    const text = await res.text();
    if (res.status >= 300) {
      throw new Error(`GET ${path} answered ${res.status}: ${text.slice(0, 500)}`);
    }
    return text;
  }

  /** POST a form (urlencoded), with the CSRF token unless `csrf: false`. */
  async post(
    path: string,
    fields: Record<string, string | string[]> = {},
    options: { csrf?: boolean; headers?: Record<string, string> } = {},
  ): Promise<Response> {
    // A browser has loaded the form before posting it, which gave it the per-browser cookie.
    if (!this.cookies.has("yxt_anon") && !this.cookies.has("yxt_sid")) await this.get(path);
    const body = new URLSearchParams();
    for (const [k, v] of Object.entries(fields)) {
      for (const item of Array.isArray(v) ? v : [v]) body.append(k, item);
    }
    if (options.csrf !== false) {
      body.set("_csrf", await csrfFor(this.config, this.cookies, path.startsWith("/admin")));
    }
    const res = await this.app.request(`http://localhost:8000${path}`, {
      method: "POST",
      headers: this.#headers({
        "content-type": "application/x-www-form-urlencoded",
        ...options.headers,
      }),
      body,
    }, this.#env());
    this.#store(res);
    return res;
  }
}

/** Runs `sql` statements directly (for test setup that no service offers). */
export { sql };

/**
 * A newer release's migrations, for tests of rolling upgrades and roll-backs: a temporary folder
 * with every migration of this code plus `extra` (file name → source). Remove it when done.
 */
export async function newerMigrations(extra: Record<string, string>): Promise<URL> {
  const folder = await Deno.makeTempDir({ prefix: "yxt-newer-migrations-" });
  const ours = new URL("../../migrations/", import.meta.url);
  for await (const e of Deno.readDir(ours)) {
    if (e.isFile) await Deno.copyFile(new URL(e.name, ours), `${folder}/${e.name}`);
  }
  for (const [name, source] of Object.entries(extra)) {
    await Deno.writeTextFile(`${folder}/${name}`, source);
  }
  return new URL(`file://${folder}/`);
}

/** An additive migration of a "newer release" (a nullable column, a new table). */
export const NEWER_ADDITIVE_MIGRATION = {
  "29990101_0000_add_newer_release_notes.ts": `import { type Kysely, sql } from "kysely";
// deno-lint-ignore no-explicit-any
export async function up(db: Kysely<any>): Promise<void> {
  await sql\`alter table accounts add column newer_release_note text\`.execute(db);
  await sql\`create table newer_release_notes (id bigint generated always as identity primary key,
    note text not null)\`.execute(db);
}
// deno-lint-ignore no-explicit-any
export async function down(db: Kysely<any>): Promise<void> {
  await sql\`drop table newer_release_notes\`.execute(db);
  await sql\`alter table accounts drop column newer_release_note\`.execute(db);
}
`,
};
