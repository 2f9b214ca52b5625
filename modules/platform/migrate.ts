import { type Kysely, sql } from "kysely";
import {
  DEFAULT_MIGRATION_LOCK_TABLE,
  DEFAULT_MIGRATION_TABLE,
  type Migration,
  MIGRATION_LOCK_ID,
  type MigrationProvider,
  Migrator,
} from "kysely/migration";
import { fileURLToPath as fromFileUrl } from "node:url";

const MIGRATIONS_DIR = new URL("../../migrations/", import.meta.url);

/** Loads `<folder>/<timestamp>_<verb_noun>.ts` in name order. */
class FolderMigrationProvider implements MigrationProvider {
  constructor(readonly folder: URL) {}

  async getMigrations(): Promise<Record<string, Migration>> {
    const names: string[] = [];
    for await (const entry of Deno.readDir(fromFileUrl(this.folder))) {
      if (entry.isFile && /^\d{8}_\d{4}_[a-z0-9_]+\.ts$/.test(entry.name)) names.push(entry.name);
    }
    names.sort();
    const migrations: Record<string, Migration> = {};
    for (const name of names) {
      migrations[name.replace(/\.ts$/, "")] = await import(new URL(name, this.folder).href);
    }
    return migrations;
  }
}

/** What one run of `migrateSchema` did. */
export interface MigrationOutcome {
  /** This code's migrations applied now, in order. */
  applied: string[];
  /**
   * Migrations the database has that this code does not know: a newer release migrated it (a
   * rolling upgrade in progress, or a roll-back). Nothing was applied then.
   */
  newer: string[];
}

/**
 * Brings the schema up to this code, safely beside other releases (docs/OPERATIONS.md §10).
 *
 * Under Kysely's migration lock (so every instance, `deno task migrate` and the tools of every
 * release take turns), in one transaction:
 * - every migration the database has is one of this code's: the pending ones are applied;
 * - the database has migrations this code does not know (a newer release ran them): nothing is
 *   applied, and it is fine as long as every migration of this code is applied (migrations keep
 *   the previous release working: expand, then contract); otherwise it throws, naming both.
 *
 * Kysely's own `migrateToLatest` refuses any executed migration without a file ("corrupted
 * migrations"), so an old instance restarted after a newer release migrated would not start.
 * `allowUnorderedMigrations` would not help: it still refuses a missing file, and would apply an
 * old release's late migration after a newer one's.
 */
export async function migrateSchema(
  // deno-lint-ignore no-explicit-any
  db: Kysely<any>,
  options: { folder?: URL } = {},
): Promise<MigrationOutcome> {
  const provider = new FolderMigrationProvider(options.folder ?? MIGRATIONS_DIR);
  const known = Object.keys(await provider.getMigrations());
  const adapter = db.getExecutor().adapter;
  const lock = { lockTable: DEFAULT_MIGRATION_LOCK_TABLE, lockRowId: MIGRATION_LOCK_ID };
  // Kysely's order: the lock on one connection, the transaction on it, the commit, the unlock;
  // so whoever takes the lock next sees what was committed under it.
  return await db.connection().execute(async (conn) => {
    await adapter.acquireMigrationLock(conn, lock);
    try {
      return await conn.transaction().execute(async (trx) => {
        const executed = await executedMigrations(trx);
        const newer = executed.filter((name) => !known.includes(name));
        if (newer.length === 0) {
          // The migrator takes the same lock again on this session (advisory locks nest).
          return { applied: await runPending(trx, provider), newer };
        }
        const missing = known.filter((name) => !executed.includes(name));
        if (missing.length) {
          throw new Error(
            `Cannot migrate: the database has migrations of another release (${
              newer.join(", ")
            }) and lacks this release's ${missing.join(", ")}; deploy a release that has both`,
          );
        }
        return { applied: [], newer };
      });
    } finally {
      await adapter.releaseMigrationLock(conn, lock);
    }
  });
}

/** Applies every pending migration; throws with the failing migration's name. */
// deno-lint-ignore no-explicit-any
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  return (await migrateSchema(db)).applied;
}

/** The names in Kysely's migration table (none before the first migration). */
// deno-lint-ignore no-explicit-any
async function executedMigrations(db: Kysely<any>): Promise<string[]> {
  const table = await sql<{ exists: boolean }>`
    select to_regclass(${DEFAULT_MIGRATION_TABLE}) is not null as exists`.execute(db);
  if (!table.rows[0].exists) return [];
  const rows = await db.selectFrom(DEFAULT_MIGRATION_TABLE).select("name").execute();
  return rows.map((r) => r.name as string);
}

// deno-lint-ignore no-explicit-any
async function runPending(trx: Kysely<any>, provider: MigrationProvider): Promise<string[]> {
  const migrator = new Migrator({ db: trx, provider });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === "Error");
  if (error) {
    const cause = error instanceof Error ? error.message : String(error);
    throw new Error(`Cannot migrate ${failed?.migrationName ?? "database"}: ${cause}`);
  }
  return (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
}

/** The migrations of this code that the database has not applied yet, in order. */
export async function pendingMigrations(
  // deno-lint-ignore no-explicit-any
  db: Kysely<any>,
  options: { folder?: URL } = {},
): Promise<string[]> {
  const provider = new FolderMigrationProvider(options.folder ?? MIGRATIONS_DIR);
  const migrator = new Migrator({ db, provider });
  return (await migrator.getMigrations()).filter((m) => !m.executedAt).map((m) => m.name);
}
