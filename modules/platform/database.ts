import { Kysely, PostgresDialect } from "kysely";
// @ts-types="@types/pg"
import pg from "pg";
import { PGlite } from "@electric-sql/pglite";
import { join } from "node:path";
import { PGliteDialect } from "./_pglite_dialect.ts";
import { type DataDirLock, lockDataDir, securePrivateDir } from "./data_dir.ts";

/**
 * The database schema. Each module adds its own tables to this interface by declaration
 * merging in its `tables.ts`, so no module edits another's table types.
 */
// deno-lint-ignore no-empty-interface
export interface Database {}

/** The query builder every repository takes first. */
export type Db = Kysely<Database>;

const INT8_OID = 20;
const NUMERIC_OID = 1700;

/** bigint columns (money in fen, ids, counts) come back as numbers, never silently rounded. */
export function parseInt8Safe(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) {
    throw new RangeError(`Cannot read bigint ${text}: outside the safe integer range`);
  }
  return n;
}

/** numeric appears as the result of sum(bigint); integral values must stay exact. */
export function parseNumericSafe(text: string): number {
  const n = Number(text);
  if (/^-?\d+$/.test(text) && !Number.isSafeInteger(n)) {
    throw new RangeError(`Cannot read numeric ${text}: outside the safe integer range`);
  }
  return n;
}

/**
 * A statement whose text starts with this comment runs on PostgreSQL as a named prepared statement:
 * parsed and planned once per connection instead of on every call. Only for a few hot statements
 * whose text never varies (pg keeps each one for the connection's lifetime); PGlite prepares it
 * once too (PREPARE, then EXECUTE with the values as literals).
 */
export const PREPARED = "/*prepared*/";

const statementNames = new Map<string, string>();

/**
 * The distinct `PREPARED` texts this process has named (PostgreSQL): each is kept by every
 * connection that ran it, so they must stay few whatever the values (tests check it).
 */
export function preparedTexts(): string[] {
  return [...statementNames.keys()];
}

/** A pool client that runs `PREPARED` statements by name. */
class PreparingClient extends pg.Client {
  // deno-lint-ignore no-explicit-any
  override query(config: any, values?: any, callback?: any): any {
    if (typeof config === "string" && config.startsWith(PREPARED) && Array.isArray(values)) {
      let name = statementNames.get(config);
      if (!name) {
        name = `yxt_${statementNames.size + 1}`;
        statementNames.set(config, name);
      }
      return super.query({ name, text: config, values }, callback);
    }
    return super.query(config, values, callback);
  }
}

const kinds = new WeakMap<Db, "pglite" | "postgres">();

/** Which database `db` is, when `openDatabase` opened it (else null, e.g. after `withPlugin`). */
export function databaseKind(db: Db): "pglite" | "postgres" | null {
  return kinds.get(db) ?? null;
}

/** An open database with what is needed to close it and to tell which kind it is. */
export interface DatabaseHandle {
  db: Db;
  kind: "pglite" | "postgres";
  close(): Promise<void>;
  /** The held DATA_DIR of an embedded database on disk (none for PostgreSQL or in memory). */
  lock?: DataDirLock;
  /** A consistent copy of the embedded database (PGlite's data directory as .tar.gz). */
  dump?(): Promise<Blob>;
}

export interface OpenOptions {
  /** Postgres connection string; null opens the embedded PGlite. */
  databaseUrl: string | null;
  /** Directory for PGlite's files; null keeps PGlite in memory (tests). */
  dataDir?: string | null;
  /** Preloaded PGlite data directory dump (tests start from a migrated snapshot). */
  loadDataDir?: Blob;
  poolSize?: number;
  /** DATA_DIR's lock when the caller already holds it (a restore moves the old files aside first). */
  lock?: DataDirLock;
}

/** Opens PostgreSQL (DATABASE_URL) or the embedded PGlite, returning a Kysely handle. */
export async function openDatabase(options: OpenOptions): Promise<DatabaseHandle> {
  if (options.databaseUrl) {
    const pool = new pg.Pool({
      connectionString: options.databaseUrl,
      // Named (PREPARED) statements keep one generic plan, planned once. The setting holds for
      // every statement with parameters (all of Kysely's) as well: each is planned without its
      // values, so a constant a partial index's predicate needs (`remaining > 0`) is written as
      // a literal (`sql.lit`), never a parameter. Left at auto (tried 2026-12-07), PostgreSQL
      // kept planning the batch statements anew: about a third more CPU per card payment at 8
      // readers in interleaved runs.
      ...(/[?&]options=/.test(options.databaseUrl)
        ? {}
        : { options: "-c plan_cache_mode=force_generic_plan" }),
      max: options.poolSize ?? 20,
      // Connections carry their prepared statements: keep them through quiet spells (pg's
      // default closes them after 10 s idle, and the next burst pays to reconnect and re-prepare).
      idleTimeoutMillis: 300_000,
      Client: PreparingClient,
      types: {
        getTypeParser(oid: number, format?: string) {
          if (oid === INT8_OID) return parseInt8Safe;
          if (oid === NUMERIC_OID) return parseNumericSafe;
          // deno-lint-ignore no-explicit-any
          return (pg.types.getTypeParser as any)(oid, format);
        },
      },
    });
    pool.on("error", (err: Error) => {
      console.error(
        JSON.stringify({ level: "error", msg: "idle database client error", err: err.message }),
      );
    });
    // A client that is checked out when the server ends its connection (a PostgreSQL restart)
    // emits "error" outside any query; unheard, that event would end the whole process. The
    // query in flight fails on its own, and the pool drops the broken client when it is released.
    pool.on("connect", (client: pg.PoolClient) => {
      client.on("error", (err: Error) => {
        console.error(
          JSON.stringify({ level: "error", msg: "database client error", err: err.message }),
        );
      });
    });
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
    kinds.set(db, "postgres");
    return { db, kind: "postgres", close: () => db.destroy() };
  }
  // One process per data directory: refused here, before PGlite reads a byte of it.
  const lock = options.lock ?? (options.dataDir ? lockDataDir(options.dataDir) : undefined);
  const dir = options.dataDir ? join(options.dataDir, "pgdata") : undefined;
  let lite: PGlite;
  try {
    lite = await PGlite.create(dir, {
      loadDataDir: options.loadDataDir,
      parsers: { [INT8_OID]: parseInt8Safe, [NUMERIC_OID]: parseNumericSafe },
    });
    if (options.dataDir) securePrivateDir(options.dataDir);
  } catch (err) {
    lock?.release();
    throw err;
  }
  const db = new Kysely<Database>({
    dialect: new PGliteDialect(lite, { preparedPrefix: PREPARED }),
  });
  kinds.set(db, "pglite");
  return {
    db,
    kind: "pglite",
    lock,
    async dump() {
      // A checkpoint first, so a restore starts without replaying WAL; the dump itself runs
      // while no statement does (PGlite's query lock), a crash-consistent copy.
      await lite.exec("checkpoint");
      return await lite.dumpDataDir("gzip");
    },
    async close() {
      try {
        await db.destroy();
        await lite.close();
        // Files PGlite created while running (new relations, WAL segments) are 0666 too.
        if (options.dataDir) securePrivateDir(options.dataDir);
      } finally {
        lock?.release();
      }
    },
  };
}
