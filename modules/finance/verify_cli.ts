/**
 * `deno task verify-ledger [--from BACKUP.tar.gz]`: checks the books of the configured database
 * (or of a copy made by `deno task backup`, opened in memory): the wallet's rules and 商户结算's
 * statements against their payouts (so it lives here, where both are in reach); exit code 1 on a
 * problem. On the embedded database it refuses while a server holds DATA_DIR: back up, then
 * verify the copy.
 */
import { loadConfig } from "../platform/config.ts";
import { openDatabase } from "../platform/database.ts";
import { migrateToLatest } from "../platform/migrate.ts";
import { formatFen } from "../platform/money.ts";
import { DataDirBusyError } from "../platform/data_dir.ts";
import { verifyLedger } from "../wallet/mod.ts";
import { settlementLedgerCheck } from "./settlement.ts";

const from = Deno.args[0] === "--from" ? Deno.args[1] : null;
let handle;
try {
  const config = loadConfig();
  handle = await openDatabase(
    from
      ? { databaseUrl: null, loadDataDir: new Blob([await Deno.readFile(from)]) }
      : { databaseUrl: config.databaseUrl, dataDir: config.dataDir },
  );
} catch (err) {
  console.error(
    err instanceof DataDirBusyError
      ? `${err.message} (a live check: deno task backup --out x.tar.gz, then deno task verify-ledger --from x.tar.gz)`
      : `Cannot verify ledger: ${(err as Error).message}`,
  );
  Deno.exit(2);
}
try {
  if (!from) await migrateToLatest(handle.db);
  const report = await verifyLedger(handle.db, [settlementLedgerCheck]);
  const t = report.totals;
  console.log(`accounts ${t.accounts}, transfers ${t.transfers}`);
  console.log(`moved ${formatFen(t.moved)} between accounts`);
  console.log(
    `card balances ${formatFen(t.cardBalances)} (held ${formatFen(t.held)}, overdraft ${
      formatFen(t.overdraft)
    })`,
  );
  console.log(`money in through gateways ${formatFen(t.externalIn)}`);
  console.log(`money paid out in cash ${formatFen(t.externalOut)}`);
  if (report.ok) {
    console.log("ledger OK");
  } else {
    for (const p of report.problems) console.error(`PROBLEM: ${p}`);
    console.error(`ledger has ${report.problems.length} problem(s)`);
  }
  await handle.close();
  Deno.exit(report.ok ? 0 : 1);
} catch (err) {
  console.error(`Cannot verify ledger: ${(err as Error).message}`);
  await handle.close();
  Deno.exit(2);
}
