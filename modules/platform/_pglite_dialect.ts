import {
  CompiledQuery,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  type Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type QueryResult,
  type TransactionSettings,
} from "kysely";
import type { PGlite } from "@electric-sql/pglite";

/**
 * PGlite is one backend in one process: a single connection. Kysely asks for a connection per
 * query or transaction; a FIFO mutex hands the one connection out so transactions never interleave.
 */
class Mutex {
  #locked = false;
  #waiters: Array<() => void> = [];

  async lock(): Promise<void> {
    if (!this.#locked) {
      this.#locked = true;
      return;
    }
    await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  unlock(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#locked = false;
  }
}

/** A statement prepared on the connection: its name, its parameters' types, when it was made. */
interface PreparedStatement {
  name: string;
  types: string[];
  until: number;
}

/**
 * PGlite has no autovacuum, so nothing invalidates a cached plan as tables grow: a plan made
 * when a table was tiny (a sequential scan) would stay. Plans are made again this often (ms).
 */
const REPLAN_MS = 10_000;

class PGliteConnection implements DatabaseConnection {
  readonly #prepared = new Map<string, PreparedStatement>();
  #count = 0;

  constructor(readonly pg: PGlite, readonly preparedPrefix: string | null) {}

  async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    const parameters = compiled.parameters as unknown[];
    const result = this.preparedPrefix && compiled.sql.startsWith(this.preparedPrefix)
      ? await this.#executePrepared<R>(compiled.sql, parameters)
      : await this.pg.query<R>(compiled.sql, parameters);
    const affected = result.affectedRows;
    return {
      rows: result.rows,
      numAffectedRows: affected !== undefined ? BigInt(affected) : undefined,
    };
  }

  /**
   * Runs a hot statement by EXECUTE of a plan made once by PREPARE: a large statement's parse and
   * plan cost more than its work in PGlite. EXECUTE takes no bind parameters, so the values go
   * into its text as quoted literals cast to the prepared types (see `literal`).
   */
  async #executePrepared<R>(text: string, parameters: unknown[]) {
    let prepared = this.#prepared.get(text);
    if (prepared && prepared.until < Date.now()) {
      this.#prepared.delete(text);
      await this.pg.exec(`deallocate ${prepared.name}`);
      prepared = undefined;
    }
    if (!prepared) {
      const name = `yxt_${++this.#count}`;
      await this.pg.exec(`prepare ${name} as ${text}`);
      const row = (await this.pg.query<{ types: string[] }>(
        "select parameter_types::text[] as types from pg_prepared_statements where name = $1",
        [name],
      )).rows[0];
      prepared = { name, types: row?.types ?? [], until: Date.now() + REPLAN_MS };
      this.#prepared.set(text, prepared);
    }
    const { name, types } = prepared;
    if (parameters.length !== types.length) {
      throw new Error(
        `Cannot execute ${name}: ${parameters.length} values for ${types.length} parameters`,
      );
    }
    const values = parameters.map((v, i) => `${literal(v)}::${types[i]}`).join(", ");
    return await this.pg.query<R>(values ? `execute ${name}(${values})` : `execute ${name}`);
  }

  // deno-lint-ignore require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error("Cannot stream from PGlite: not supported");
  }
}

function hex(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
  return s;
}

/** A value as PostgreSQL's text input (the form PGlite's serializers send for a parameter). */
function text(v: unknown): string {
  if (typeof v === "string") return v;
  if (typeof v === "number") {
    if (!Number.isFinite(v)) throw new Error(`Cannot send ${v} to the database`);
    return String(v);
  }
  if (typeof v === "bigint") return v.toString();
  if (typeof v === "boolean") return v ? "t" : "f";
  if (v instanceof Date) return v.toISOString();
  if (v instanceof Uint8Array) return `\\x${hex(v)}`;
  if (Array.isArray(v)) {
    // Array input syntax: every element double-quoted with \ and " escaped, NULL bare.
    return `{${
      v.map((e) =>
        e === null || e === undefined
          ? "NULL"
          : Array.isArray(e)
          ? text(e)
          : `"${text(e).replace(/[\\"]/g, (c) => `\\${c}`)}"`
      ).join(",")
    }}`;
  }
  return JSON.stringify(v);
}

/**
 * A value as a quoted SQL literal. standard_conforming_strings is on (PostgreSQL's default), so
 * inside '…' only the quote itself needs doubling; a NUL cannot be sent at all.
 */
function literal(v: unknown): string {
  if (v === null || v === undefined) return "NULL";
  const s = text(v);
  if (s.includes("\0")) throw new Error("Cannot send a NUL character to the database");
  return `'${s.replaceAll("'", "''")}'`;
}

class PGliteDriver implements Driver {
  readonly #mutex = new Mutex();
  readonly #connection: PGliteConnection;

  readonly #preparedPrefix: string | null;

  constructor(pg: PGlite, preparedPrefix: string | null) {
    this.#connection = new PGliteConnection(pg, preparedPrefix);
    this.#preparedPrefix = preparedPrefix;
  }

  async init(): Promise<void> {
    // Prepared statements are for planning once: keep the generic plan (as on PostgreSQL).
    if (this.#preparedPrefix) {
      // EXECUTE's values are quoted literals (see `literal`): only with standard strings is
      // doubling the quote the whole escape, so make sure of it rather than trust the default.
      await this.#connection.pg.exec(
        "set plan_cache_mode = force_generic_plan; set standard_conforming_strings = on",
      );
    }
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    await this.#mutex.lock();
    return this.#connection;
  }

  async beginTransaction(conn: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    const level = settings.isolationLevel ? ` isolation level ${settings.isolationLevel}` : "";
    await conn.executeQuery(CompiledQuery.raw(`begin${level}`));
  }

  async commitTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw("commit"));
  }

  async rollbackTransaction(conn: DatabaseConnection): Promise<void> {
    await conn.executeQuery(CompiledQuery.raw("rollback"));
  }

  // deno-lint-ignore require-await
  async releaseConnection(): Promise<void> {
    this.#mutex.unlock();
  }

  async destroy(): Promise<void> {}
}

/**
 * Kysely dialect over an embedded PGlite instance. Statements whose text starts with
 * `preparedPrefix` are prepared once and executed by name (as on PostgreSQL).
 */
export class PGliteDialect implements Dialect {
  constructor(readonly pg: PGlite, readonly options: { preparedPrefix?: string } = {}) {}
  createAdapter() {
    return new PostgresAdapter();
  }
  createDriver(): Driver {
    return new PGliteDriver(this.pg, this.options.preparedPrefix ?? null);
  }
  // deno-lint-ignore no-explicit-any
  createIntrospector(db: Kysely<any>) {
    return new PostgresIntrospector(db);
  }
  createQueryCompiler() {
    return new PostgresQueryCompiler();
  }
}
