/** `deno task migrate`: applies pending migrations to the configured database and exits. */
import { loadConfig } from "./config.ts";
import { openDatabase } from "./database.ts";
import { migrateSchema } from "./migrate.ts";

try {
  const config = loadConfig();
  // On the embedded database this refuses while a server holds DATA_DIR (it migrates on start).
  const handle = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  try {
    const { applied, newer } = await migrateSchema(handle.db);
    if (applied.length) console.log(`Applied: ${applied.join(", ")}`);
    else if (newer.length) {
      console.log(
        `Nothing to apply: the database is ahead of this release (${newer.join(", ")}).`,
      );
    } else console.log("Database is up to date.");
  } finally {
    await handle.close();
  }
} catch (err) {
  console.error((err as Error).message);
  Deno.exit(1);
}
