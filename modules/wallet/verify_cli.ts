/** `deno task verify-ledger`: checks the books of the configured database; exit code 1 on a problem. */
import { loadConfig } from "../platform/config.ts";
import { openDatabase } from "../platform/database.ts";
import { migrateToLatest } from "../platform/migrate.ts";
import { formatFen } from "../platform/money.ts";
import { verifyLedger } from "./verify.ts";

const config = loadConfig();
const handle = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
try {
  await migrateToLatest(handle.db);
  const report = await verifyLedger(handle.db);
  const t = report.totals;
  console.log(`accounts ${t.accounts}, transfers ${t.transfers}`);
  console.log(`debits ${formatFen(t.debits)}, credits ${formatFen(t.credits)}`);
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
