/** pgbench's built-in scripts on the benchmark's own PostgreSQL: the reference for payments/s. */
import { pgBinary, run } from "./_lib.ts";

/** One pgbench run's outcome. */
export interface PgbenchResult {
  script: "simple-update" | "tpcb-like";
  clients: number;
  tps: number;
  latencyMs: number;
  failed: number;
}

/** Initialises pgbench's tables with `scale` (server-side data generation: faster). */
export async function pgbenchInit(url: string, scale: number): Promise<number> {
  const start = performance.now();
  const r = await run(pgBinary("pgbench"), ["-i", "-s", String(scale), "-I", "dtGvp", "-q", url], {
    timeoutMs: 20 * 60_000,
  });
  if (r.code !== 0) throw new Error(`pgbench -i failed: ${r.stderr.slice(-400)}`);
  return (performance.now() - start) / 1000;
}

/** Runs a built-in script for `seconds` with `clients` connections. */
export async function pgbenchRun(
  url: string,
  script: PgbenchResult["script"],
  clients: number,
  seconds: number,
): Promise<PgbenchResult> {
  const r = await run(pgBinary("pgbench"), [
    "-b",
    script,
    "-c",
    String(clients),
    "-j",
    String(Math.min(clients, navigator.hardwareConcurrency || 2)),
    "-T",
    String(seconds),
    "--no-vacuum",
    url,
  ], { timeoutMs: (seconds + 120) * 1000 });
  const out = r.stdout + r.stderr;
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(out);
  const lat = /latency average = ([\d.]+) ms/.exec(out);
  const failed = /number of failed transactions: (\d+)/.exec(out);
  if (r.code !== 0 || !tps) {
    throw new Error(`pgbench ${script} -c ${clients} failed: ${out.slice(-400)}`);
  }
  return {
    script,
    clients,
    tps: Number(tps[1]),
    latencyMs: lat ? Number(lat[1]) : NaN,
    failed: failed ? Number(failed[1]) : 0,
  };
}
