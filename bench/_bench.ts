/**
 * What the sections of `deno task bench` share: the run's settings, its PostgreSQL and server, the
 * CPU meter, the reader fleets, the tables of the report, and the helpers that turn measured
 * slices into table cells.
 */
import { fmt, type Postgres, type Server } from "./_lib.ts";
import type { Report, TargetLine } from "./_report.ts";
import { cpuBetween, type CpuMeter, type CpuUse } from "./_cpu.ts";
import type { Fleet, Fleets, Kind, SliceResult } from "./_fleet.ts";
import type { Secrets, Student } from "./_world.ts";
import { type Decision, decisionText, spread, spreadText } from "./_stats.ts";

/** The run's options. */
export interface Settings {
  /** One measurement slice, seconds. */
  seconds: number;
  /** Interleaved pairs per ratio (and repeats of a figure without a reference). */
  pairs: number;
  /** Closed-loop reader counts (and pgbench clients). */
  clients: number[];
  /** Open-loop readers (and pgbench connections) of the capacity search. */
  openReaders: number;
  climbs: number;
}

/** The latency objective of capacity (issue 20). */
export const OBJECTIVE_MS = 20;
/** The lunch peak: 300 readers each offered one payment a second, p99 ≤ 10 ms (issue 20). */
export const LUNCH = { readers: 300, perReader: 1, objectiveMs: 10 };
export const KINDS: Kind[] = ["card", "qr", "shower"];

/** Everything a section works with. */
export interface Bench {
  settings: Settings;
  report: Report;
  meter: CpuMeter;
  pg: Postgres;
  secrets: Secrets;
  /** The server's database. */
  yxtUrl: string;
  /** The server on PostgreSQL, while it runs. */
  server: Server | null;
  /** Signed-in students for the web measurements. */
  students: Student[];
  /** Median closed-loop throughput by "kind:readers", the capacity search's first guess. */
  closedMedian: Map<string, number>;
  /** The reader fleets, made on first use. */
  fleets(): Promise<Fleets>;
  /** pgbench's database, initialised on first use. */
  pgbenchDatabase(): Promise<string>;
}

export const TABLES = {
  ratios: "Interleaved ratios (closed loop)",
  cpu: "CPU per operation",
  capacity: `Capacity at p99 ≤ ${OBJECTIVE_MS} ms (open loop)`,
};

/** Declares the report's own tables, in the order they are written. */
export function declareTables(report: Report, s: Settings): void {
  report.table(
    TABLES.ratios,
    [
      "ratio",
      "ours, median (min–max)",
      "reference, median (min–max)",
      "pair ratio",
      "target",
      "verdict",
    ],
    `Closed loop: N readers each paying as soon as the previous reply arrives, against pgbench simple-update with N clients. After a warm-up of each, ${s.pairs} pairs of ${s.seconds} s slices per ratio (simple-update, then ours).`,
  );
  report.table(
    TABLES.cpu,
    [
      "operation",
      "load",
      "server µs/op",
      "database µs/op",
      "server + database µs/op",
      "load generator µs/op",
      "÷ simple-update's database µs/transaction",
      "target",
      "verdict",
    ],
    "User + system CPU from /proc during each measured slice, divided by the operations it completed; median (min–max) over the slices. Server: the server process with all its threads. Database: every process of the bench's own cluster — postmaster, backends, walwriter, checkpointer, background writer, autovacuum, and children that exited inside the window — except the bench's own connections (its CPU meter and the connection that issues 付款码 for QR readers). Load generator: the bench process (readers, wrk) or pgbench. The ratio column pairs each slice with the simple-update slice just before it. The baseline row is what the server and the cluster use with no load at all.",
  );
  const longest = Math.max(Math.ceil(s.seconds), 5);
  report.table(
    TABLES.capacity,
    [
      "load",
      "capacity per climb",
      "first rate missed per climb",
      "÷ simple-update's capacity",
      "target",
      "verdict",
      "steps (✓ held, ✗ missed)",
    ],
    `Open loop: ${s.openReaders} readers (pgbench: ${s.openReaders} connections, --rate, --latency-limit ${OBJECTIVE_MS}) offered a fixed rate with Poisson arrivals; latency counts from each arrival (pgbench: from the scheduled start), a failed or skipped request as infinitely late. Each step lasts ${s.seconds} s, or long enough for 1,000 arrivals up to ${longest} s. A rate holds when p99 ≤ ${OBJECTIVE_MS} ms; capacity is the highest rate that held. ${s.climbs} climbs, the four loads taking turns step by step (bench/_capacity.ts has the ladder); the ratio's spread is over the climbs.`,
  );
}

/** µs of CPU per operation. */
export function perOp(seconds: number, ops: number): number {
  return ops > 0 ? (seconds / ops) * 1e6 : NaN;
}

/** A measured slice: what it gave, the CPU it cost, and the operations it completed. */
export interface Measured<T> {
  r: T;
  cpu: CpuUse;
  ops: number;
}

/** A closed- or open-loop slice of a fleet, with the CPU it cost (connecting happens before). */
export async function fleetSlice(
  meter: CpuMeter,
  fleet: Fleet,
  readers: number,
  run: () => Promise<SliceResult>,
): Promise<Measured<SliceResult>> {
  await fleet.connect(readers);
  const a = await meter.sample();
  const r = await run();
  const b = await meter.sample();
  return { r, cpu: cpuBetween(a, b), ops: r.ok + r.errors };
}

/** CPU-per-operation cells — server, database, both, load generator — and each slice's both. */
export function cpuCells(slices: Array<{ cpu: CpuUse; ops: number }>): {
  cells: string[];
  both: number[];
} {
  const server = slices.map((s) => perOp(s.cpu.server, s.ops));
  const db = slices.map((s) => perOp(s.cpu.db, s.ops));
  const both = slices.map((_, i) => server[i] + db[i]);
  const client = slices.map((s) => perOp(s.cpu.client, s.ops));
  return {
    cells: [server, db, both, client].map((xs) => spreadText(spread(xs))),
    both,
  };
}

/**
 * The CPU the server and the cluster use with no load at all (background loops, autovacuum after
 * the fixtures), as a row of the CPU table: what every slice's figure carries besides its own work.
 */
export async function idleBaseline(b: Bench): Promise<void> {
  const a = await b.meter.sample();
  const titles = b.meter.clusterByTitle();
  // What the cluster is doing meanwhile, looked at every 250 ms.
  const busy = new Set<string>();
  for (let i = 0; i < 8; i++) {
    await new Promise((r) => setTimeout(r, 250));
    for (const r of await b.meter.activity()) busy.add(r);
  }
  const u = cpuBetween(a, await b.meter.sample());
  const rate = (s: number) => `${fmt((s / u.seconds) * 1000, 1)} ms/s`;
  const after = b.meter.clusterByTitle();
  const byTitle = [...after].map(([t, s]) => [t, s - (titles.get(t) ?? 0)] as const)
    .filter(([, s]) => s > 0.001).sort((x, y) => y[1] - x[1]).slice(0, 4)
    .map(([t, s]) => `${t} ${rate(s)}`);
  b.report.tableRow(TABLES.cpu, [
    "nothing (baseline)",
    `no load for 2 s: CPU ms per second (database: ${byTitle.join(", ") || "nothing"}; ${
      busy.size ? `seen at work: ${[...busy].sort().join("; ")}` : "no autovacuum or query seen"
    })`,
    rate(u.server),
    rate(u.db),
    rate(u.server + u.db),
    rate(u.client),
    "",
    "",
    "",
  ]);
}

export function kindLabel(kind: Kind): string {
  return kind === "card"
    ? "card payments"
    : kind === "qr"
    ? "QR payments"
    : "shower start+end pairs";
}

/** ", 12 refused/failed (failed 10, OverDailyLimit 2)", or nothing. */
export function errorsText(rs: SliceResult[]): string {
  const total = rs.reduce((a, r) => a + r.errors, 0);
  if (!total) return "";
  const names: Record<string, number> = {};
  for (const r of rs) {
    for (const [k, v] of Object.entries(r.refusals)) names[k] = (names[k] ?? 0) + v;
  }
  return `, ${total} refused/failed (${
    Object.entries(names).map(([k, v]) => `${k} ${v}`).join(", ")
  })`;
}

/** A line of the report's targets. */
export function targetLine(figure: string, target: string, value: string, d: Decision): TargetLine {
  return { figure, target, value, verdict: decisionText(d) };
}
