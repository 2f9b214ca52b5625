/**
 * `deno task backup`: a copy of the embedded database (DATA_DIR/pgdata) of a running or stopped
 * system, and its restore.
 *
 *   deno task backup [--out FILE]             .tar.gz of the database; through the running server
 *                                             when it holds DATA_DIR, else read directly
 *   deno task backup restore FILE [--force]   puts a copy back into DATA_DIR (the server stopped);
 *                                             --force moves an existing pgdata aside first
 *
 * The copy holds balances and personal data: it is written 0600. DATA_DIR/secrets.json (the
 * generated APP_SECRET and CARD_PEPPER) is not in it: it never changes, keep one copy of it
 * apart from the backups. With DATABASE_URL set, use PostgreSQL's own tools (docs/OPERATIONS.md).
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { loadConfig } from "../modules/platform/config.ts";
import { openDatabase } from "../modules/platform/database.ts";
import { DataDirBusyError, lockDataDir } from "../modules/platform/data_dir.ts";
import { askHolder, OperatorError } from "../modules/platform/operator.ts";
import { verifyLedger } from "../modules/wallet/mod.ts";

/** Why a backup or restore did not happen, in one line for the operator. */
export class BackupError extends Error {}

/** Takes a copy of the embedded database of `dataDir` into `out`; returns its size in bytes. */
export async function backup(dataDir: string, out: string): Promise<number> {
  let blob: Blob;
  try {
    const handle = await openDatabase({ databaseUrl: null, dataDir });
    try {
      blob = await handle.dump!();
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (!(err instanceof DataDirBusyError)) throw err;
    const res = await askHolder(err, "/ops/backup");
    blob = await res.blob();
  }
  const tmp = `${out}.partial`;
  await Deno.writeFile(tmp, blob.stream(), { mode: 0o600 });
  await Deno.chmod(tmp, 0o600);
  await Deno.rename(tmp, out);
  return blob.size;
}

/** What a restore put back. */
export interface Restored {
  bytes: number;
  movedAside: string | null;
  ledgerOk: boolean;
  problems: string[];
  transfers: number;
}

/**
 * Restores a copy into `dataDir/pgdata` while holding DATA_DIR (refused when a server runs), then
 * verifies the books of what was restored.
 */
export async function restore(
  dataDir: string,
  file: string,
  options: { force?: boolean } = {},
): Promise<Restored> {
  const bytes = await Deno.readFile(file).catch((err) => {
    throw new BackupError(`Cannot read backup ${file}: ${err.message}`);
  });
  if (bytes[0] !== 0x1f || bytes[1] !== 0x8b) {
    throw new BackupError(`Cannot restore ${file}: not a .tar.gz made by deno task backup`);
  }
  const lock = lockDataDir(dataDir);
  let movedAside: string | null = null;
  try {
    const pgdata = join(dataDir, "pgdata");
    const exists = await Deno.stat(pgdata).then(() => true, () => false);
    if (exists) {
      if (!options.force) {
        throw new BackupError(
          `Cannot restore into ${pgdata}: it exists; pass --force to move it aside first`,
        );
      }
      movedAside = `${pgdata}.before-restore-${stamp()}`;
      await Deno.rename(pgdata, movedAside);
    }
    const handle = await openDatabase({
      databaseUrl: null,
      dataDir,
      lock,
      loadDataDir: new Blob([bytes]),
    });
    try {
      const report = await verifyLedger(handle.db);
      return {
        bytes: bytes.length,
        movedAside,
        ledgerOk: report.ok,
        problems: report.problems,
        transfers: report.totals.transfers,
      };
    } finally {
      await handle.close();
    }
  } finally {
    lock.release();
  }
}

function stamp(): string {
  return new Date().toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { out: { type: "string" }, force: { type: "boolean", default: false } },
  });
  try {
    if (Deno.env.get("DATABASE_URL")) {
      throw new BackupError(
        "Cannot back up with DATABASE_URL set: use PostgreSQL's base backups and WAL archiving (docs/OPERATIONS.md)",
      );
    }
    const { dataDir } = loadConfig();
    if (positionals[0] === "restore") {
      if (!positionals[1]) throw new BackupError("Usage: deno task backup restore FILE [--force]");
      const r = await restore(dataDir, positionals[1], { force: values.force });
      if (r.movedAside) console.log(`The old database was moved to ${r.movedAside}`);
      console.log(`Restored ${r.bytes} bytes into ${join(dataDir, "pgdata")}`);
      for (const p of r.problems) console.error(`PROBLEM: ${p}`);
      console.log(r.ledgerOk ? `ledger OK (${r.transfers} transfers)` : "ledger has problems");
      Deno.exit(r.ledgerOk ? 0 : 1);
    }
    if (positionals[0]) {
      throw new BackupError(`Cannot run backup ${positionals[0]}: unknown command`);
    }
    const out = values.out ?? `yxt-backup-${stamp()}.tar.gz`;
    const size = await backup(dataDir, out);
    console.log(`Backup written to ${out} (${size} bytes)`);
  } catch (err) {
    console.error(
      err instanceof BackupError || err instanceof DataDirBusyError ||
        err instanceof OperatorError
        ? err.message
        : `Cannot back up: ${(err as Error).message}`,
    );
    Deno.exit(1);
  }
}
