/**
 * pgbench's built-in scripts on the benchmark's own PostgreSQL, the reference for payments: a
 * closed-loop window with the CPU it cost, and an offered rate with its latency. Both read
 * pgbench's per-transaction log (-l), so a window's transactions and percentiles are exact.
 */
import { basename, dirname, join } from "node:path";
import { delay, OUT, percentile, pgBinary, psql, run } from "./_lib.ts";
import { cpuBetween, type CpuMeter, type CpuUse } from "./_cpu.ts";

/**
 * Initialises pgbench's tables with `scale` (server-side data generation: faster), vacuumed, with
 * autovacuum off for them: the runs use --no-vacuum, and an autovacuum worker cleaning up after
 * simple-update would otherwise burn the cluster's CPU inside the measurements of ours that
 * alternate with it.
 */
export async function pgbenchInit(url: string, scale: number): Promise<number> {
  const start = performance.now();
  const r = await run(pgBinary("pgbench"), ["-i", "-s", String(scale), "-I", "dtGvp", "-q", url], {
    timeoutMs: 20 * 60_000,
  });
  if (r.code !== 0) throw new Error(`pgbench -i failed: ${r.stderr.slice(-400)}`);
  for (const table of ["accounts", "branches", "tellers", "history"]) {
    await psql(url, `alter table pgbench_${table} set (autovacuum_enabled = false)`);
  }
  return (performance.now() - start) / 1000;
}

/** One transaction from pgbench's per-transaction log (-l). */
interface LoggedTransaction {
  /** Completion time, epoch ms. */
  at: number;
  /** Latency in ms (from its scheduled start under --rate); Infinity when skipped or failed. */
  ms: number;
}

async function readLogs(prefix: string): Promise<LoggedTransaction[]> {
  const dir = dirname(prefix);
  const base = basename(prefix);
  const out: LoggedTransaction[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (!e.name.startsWith(`${base}.`)) continue;
    const text = await Deno.readTextFile(join(dir, e.name));
    for (const line of text.split("\n")) {
      // client_id transaction_no time script_no time_epoch time_us [schedule_lag]
      const f = line.split(" ");
      if (f.length < 6) continue;
      const us = Number(f[2]);
      out.push({
        at: Number(f[4]) * 1000 + Number(f[5]) / 1000,
        ms: Number.isFinite(us) ? us / 1000 : Infinity,
      });
    }
  }
  return out;
}

/** pgbench's built-in scripts the bench runs. */
export type Script = "simple-update" | "tpcb-like";

function pgbenchArgs(
  url: string,
  script: Script,
  clients: number,
  seconds: number,
  prefix: string,
): string[] {
  return [
    "-b",
    script,
    "-c",
    String(clients),
    "-j",
    String(Math.min(clients, navigator.hardwareConcurrency || 2)),
    "-T",
    String(seconds),
    "--no-vacuum",
    "-l",
    "--log-prefix",
    prefix,
    url,
  ];
}

async function logDir(): Promise<string> {
  const dir = join(OUT, "pgbench-logs", crypto.randomUUID().slice(0, 8));
  await Deno.mkdir(dir, { recursive: true });
  return dir;
}

/** How long pgbench took to connect its clients last time, by client count. */
const connectSeconds = new Map<number, number>();

/** A closed-loop run, measured in a window inside it (after every client connected). */
export interface PgbenchWindow {
  script: Script;
  clients: number;
  /** Transactions completed inside the window, per second. */
  tps: number;
  transactions: number;
  p50Ms: number;
  p99Ms: number;
  cpu: CpuUse;
}

/**
 * Runs `script` (simple-update unless given) with `clients` connections and measures a `seconds` window that opens once
 * all of them are connected (so the window holds no connection start-up, which would be counted
 * as database CPU), with the CPU used in it and the transactions pgbench logged as completed in it.
 */
export async function pgbenchWindow(
  url: string,
  meter: CpuMeter,
  options: { clients: number; seconds: number; script?: Script },
): Promise<PgbenchWindow> {
  const script = options.script ?? "simple-update";
  const dir = await logDir();
  const prefix = join(dir, "window");
  // pgbench's -T counts from before its connections: the run lasts as long as connecting took
  // last time, the window, and a second to open it.
  const connecting = connectSeconds.get(options.clients) ?? 1 + options.clients / 64;
  const spawned = Date.now();
  const proc = new Deno.Command(pgBinary("pgbench"), {
    args: pgbenchArgs(
      url,
      script,
      options.clients,
      Math.ceil(connecting + options.seconds + 1),
      prefix,
    ),
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = proc.output();
  let ended = false;
  output.finally(() => ended = true);
  try {
    const deadline = Date.now() + 60_000;
    let backends: number[] = [];
    while ((backends = await meter.backends("pgbench")).length < options.clients) {
      if (ended) throw new Error(`pgbench ended before connecting: ${await failure(output)}`);
      if (Date.now() > deadline) throw new Error("pgbench did not connect within 60 s");
      await delay(25);
    }
    const took = (Date.now() - spawned) / 1000;
    connectSeconds.set(options.clients, Math.max(took, connecting * 0.8));
    // Past every backend's first transaction (a new backend fills its caches then).
    await delay(300);
    // pgbench may end before the window does (its clock can start before its last connection):
    // samples every 250 ms, and the window closes at the last one taken before its last
    // transaction completed.
    const samples = [{ at: Date.now(), cpu: await meter.sample([proc.pid]) }];
    const until = samples[0].at + options.seconds * 1000;
    while (!ended && Date.now() < until) {
      await delay(Math.min(250, until - Date.now()));
      if (!ended) samples.push({ at: Date.now(), cpu: await meter.sample([proc.pid]) });
    }
    const out = await output;
    if (out.code !== 0) throw new Error(`pgbench failed: ${await failure(output)}`);
    // Its backends end after pgbench does; the next measurement must not see their exit.
    await meter.gone(backends);
    const logged = await readLogs(prefix);
    const lastDone = logged.reduce((m, t) => Math.max(m, t.at), 0);
    const first = samples[0];
    const last = samples.filter((x) => x.at <= lastDone).at(-1)!;
    if (last.at - first.at < Math.min(1000, options.seconds * 500)) {
      throw new Error(`pgbench ran only ${last.at - first.at} ms after its clients connected`);
    }
    const t0 = first.at;
    const t1 = last.at;
    const inWindow = logged.filter((t) => t.at >= t0 && t.at <= t1);
    const sorted = inWindow.map((t) => t.ms).sort((x, y) => x - y);
    return {
      script,
      clients: options.clients,
      tps: inWindow.length / ((t1 - t0) / 1000),
      transactions: inWindow.length,
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
      cpu: cpuBetween(first.cpu, last.cpu),
    };
  } finally {
    if (!ended) {
      try {
        proc.kill("SIGKILL");
      } catch { /* gone */ }
    }
    await output.catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

async function failure(output: Promise<Deno.CommandOutput>): Promise<string> {
  const o = await output;
  const dec = new TextDecoder();
  return (dec.decode(o.stderr) + dec.decode(o.stdout)).trim().slice(-300);
}

/** simple-update offered at a fixed rate (pgbench --rate, Poisson arrivals). */
export interface PgbenchOpen {
  rate: number;
  offered: number;
  /** Latency from each transaction's scheduled start; skipped ones count as infinitely late. */
  p50Ms: number;
  p99Ms: number;
  skipped: number;
  /** Share slower than the latency limit, skipped included. */
  overLimit: number;
}

/**
 * Offers simple-update at `rate` transactions a second over `clients` connections for `seconds`
 * (whole seconds: pgbench's -T), with `--latency-limit`: a transaction already later than the
 * limit when its turn comes is skipped, and counts as late. Connecting happens inside -T; the
 * first half second of transactions is not counted (a second more makes up for both).
 */
export async function pgbenchOpen(
  url: string,
  options: { clients: number; rate: number; seconds: number; limitMs: number },
): Promise<PgbenchOpen> {
  const dir = await logDir();
  const prefix = join(dir, "rate");
  try {
    const seconds = Math.max(1, Math.round(options.seconds));
    const r = await run(pgBinary("pgbench"), [
      ...pgbenchArgs(url, "simple-update", options.clients, seconds + 1, prefix).slice(0, -1),
      "--rate",
      String(Math.round(options.rate)),
      "--latency-limit",
      String(options.limitMs),
      url,
    ], { timeoutMs: (seconds + 120) * 1000 });
    if (r.code !== 0) {
      throw new Error(`pgbench --rate failed: ${(r.stderr + r.stdout).slice(-300)}`);
    }
    // The first half second is left out: new backends fill their caches with their first
    // transactions (ours are measured on connections that stay open).
    const logged = await readLogs(prefix);
    const from = logged.reduce((m, t) => Math.min(m, t.at), Infinity) + 500;
    const sorted = logged.filter((t) => t.at >= from).map((t) => t.ms).sort((x, y) => x - y);
    return {
      rate: options.rate,
      offered: sorted.length,
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
      skipped: sorted.filter((ms) => ms === Infinity).length,
      overLimit: sorted.length
        ? sorted.filter((ms) => ms > options.limitMs).length / sorted.length
        : NaN,
    };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
