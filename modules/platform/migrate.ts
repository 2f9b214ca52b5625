import type { Kysely } from "kysely";
import { type Migration, type MigrationProvider, Migrator } from "kysely/migration";
import { fileURLToPath as fromFileUrl } from "node:url";

const MIGRATIONS_DIR = new URL("../../migrations/", import.meta.url);

/** Loads `migrations/<timestamp>_<verb_noun>.ts` in name order. */
class FolderMigrationProvider implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    const names: string[] = [];
    for await (const entry of Deno.readDir(fromFileUrl(MIGRATIONS_DIR))) {
      if (entry.isFile && /^\d{8}_\d{4}_[a-z0-9_]+\.ts$/.test(entry.name)) names.push(entry.name);
    }
    names.sort();
    const migrations: Record<string, Migration> = {};
    for (const name of names) {
      migrations[name.replace(/\.ts$/, "")] = await import(new URL(name, MIGRATIONS_DIR).href);
    }
    return migrations;
  }
}

/** Applies every pending migration; throws with the failing migration's name. */
// deno-lint-ignore no-explicit-any
export async function migrateToLatest(db: Kysely<any>): Promise<string[]> {
  const migrator = new Migrator({ db, provider: new FolderMigrationProvider() });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === "Error");
  if (error) {
    const cause = error instanceof Error ? error.message : String(error);
    throw new Error(`Cannot migrate ${failed?.migrationName ?? "database"}: ${cause}`);
  }
  return (results ?? []).filter((r) => r.status === "Success").map((r) => r.migrationName);
}

/** The migrations of this code that the database has not applied yet, in order. */
// deno-lint-ignore no-explicit-any
export async function pendingMigrations(db: Kysely<any>): Promise<string[]> {
  const migrator = new Migrator({ db, provider: new FolderMigrationProvider() });
  return (await migrator.getMigrations()).filter((m) => !m.executedAt).map((m) => m.name);
}
