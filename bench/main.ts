/**
 * `deno task bench`: measures the system against its targets (issues 7, 16 and 20) on this
 * machine and writes bench/RESULTS.md. It starts its own PostgreSQL, runs pgbench as the
 * reference, starts the real server (`deno run -A main.ts`) as a subprocess, and drives it over
 * HTTP (wrk, Chromium) and the reader protocol (the bench's own reader fleets, bench/_fleet.ts).
 *
 * Figures that hold on a shared machine: every ratio from interleaved pairs (reference and ours
 * alternately, the median of the pairs' ratios with its min–max), CPU per operation from /proc,
 * and capacity at p99 ≤ 20 ms with an open loop (Poisson arrivals) for ours and pgbench alike.
 * Each section fails soft: what cannot be measured is written as "not measured: reason". A
 * PostgreSQL that cannot start ends the run at once with exit code 1 (RESULTS.md untouched).
 *
 * Options: --seconds N (one measurement slice, default 3) · --pairs N (interleaved pairs per
 * ratio, 3) · --clients 8,64,256 (closed-loop readers and pgbench clients) · --open-readers 64
 * (open-loop readers and pgbench connections) · --climbs 2 (capacity searches) ·
 * --only pgbench,http,pages,terminal,capacity,import,closeout,blocklist,idle,pglite · --out
 * bench/RESULTS.md · --cash-only (the load cards without their 补助 lots, to compare with a release
 * that had no purses) · --profile card,qr,shower,wallet,refresh,simple-update,lunch,closeout
 * (instead of the measurements: "where the time goes", written to bench/out/; see
 * bench/_where.ts). For a quick trial of one section:
 * `BENCH_CLOSEOUT_CARDS=4000 deno task bench --only closeout --out /tmp/x.md` (a smaller
 * graduation batch, held to the same cards per second; also the batch `--profile closeout` runs).
 */
import { parseArgs } from "node:util";
import { join, resolve } from "node:path";
import {
  fmt,
  OUT,
  type Postgres,
  psql,
  randomHex,
  ROOT,
  run,
  serverEnv,
  startPostgres,
  startServer,
  verdict,
} from "./_lib.ts";
import { machineFacts } from "./_machine.ts";
import { pgbenchInit, pgbenchWindow } from "./_pgbench.ts";
import { Report } from "./_report.ts";
import { createCardholders, loadPurses, openWorld, signedInStudent } from "./_world.ts";
import { blocklistPropagation, idleReadersMemory, importCardholders } from "./_terminal.ts";
import { CpuMeter } from "./_cpu.ts";
import { type Fleets, openFleets } from "./_fleet.ts";
import {
  type Bench,
  declareTables,
  idleBaseline,
  kindLabel,
  KINDS,
  LUNCH,
  perOp,
  type Settings,
} from "./_bench.ts";
import { httpSection, PAGE_PATHS, pagesSection } from "./_sections_web.ts";
import {
  capacitySection,
  closedPairsSection,
  PGLITE_READERS,
  pgliteSection,
} from "./_sections_readers.ts";
import { commitOfTree, profileRun, whereSection } from "./_where.ts";
import { CLOSEOUT_FIGURE, closeoutSection } from "./_sections_closeout.ts";

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "3" },
    pairs: { type: "string", default: "3" },
    clients: { type: "string", default: "8,64,256" },
    "open-readers": { type: "string", default: "64" },
    climbs: { type: "string", default: "2" },
    only: { type: "string", default: "" },
    out: { type: "string", default: "bench/RESULTS.md" },
    profile: { type: "string", default: "" },
    "cash-only": { type: "boolean", default: false },
  },
});
loadPurses.cashOnly = opts["cash-only"]!;
const settings: Settings = {
  seconds: Math.max(1, Number(opts.seconds)),
  pairs: Math.max(1, Math.floor(Number(opts.pairs))),
  clients: opts.clients!.split(",").map(Number).filter((n) => n > 0),
  openReaders: Math.max(1, Math.floor(Number(opts["open-readers"]))),
  climbs: Math.max(1, Math.floor(Number(opts.climbs))),
};
const ONLY = new Set(opts.only ? opts.only.split(",") : []);
const want = (s: string) => ONLY.size === 0 || ONLY.has(s);
/** Web users of the HTTP measurements: each wrk request takes the next one's session. */
const WEB_STUDENTS = 64;
const secrets = { appSecret: randomHex(), cardPepper: randomHex() };

if (opts.profile) {
  const code = await profileRun({
    sections: opts.profile.split(","),
    seconds: settings.seconds * 5,
    clients: settings.clients.includes(64) ? 64 : settings.clients[0] ?? 64,
    secrets,
  }).catch((err) => {
    console.error(`bench --profile failed: ${(err as Error).stack ?? err}`);
    return 1;
  });
  Deno.exit(code);
}

const report = new Report();
const machine = await machineFacts();
await Deno.mkdir(OUT, { recursive: true });

// Most sections measure PostgreSQL: a cluster that cannot start is an error, not a table of
// "not measured" rows that exits 0 (and the last good RESULTS.md stays as it was).
let pg: Postgres;
try {
  pg = await startPostgres("bench");
} catch (err) {
  console.error(`bench: PostgreSQL did not start: ${(err as Error).message}`);
  Deno.exit(1);
}
report.note(
  "PostgreSQL: throwaway cluster from .ci/start_postgres.sh (fsync and synchronous_commit on, shared_buffers 256MB).",
);
declareTables(report, settings);

let fleets = null as Fleets | null;
let pgbenchUrl = null as string | null;
const bench: Bench = {
  settings,
  report,
  meter: await CpuMeter.open(pg.url, join(pg.dir, "data")),
  pg,
  secrets,
  yxtUrl: pg.urlFor("yxt"),
  server: null,
  students: [],
  closedMedian: new Map(),
  async fleets() {
    if (fleets) return fleets;
    const most = Math.max(...settings.clients, settings.openReaders);
    const started = performance.now();
    fleets = await openFleets(bench.yxtUrl, secrets, bench.server!.terminalPort, {
      card: Math.max(most, LUNCH.readers),
      qr: most,
      shower: most,
    });
    report.note(
      `Readers: the bench's own fleets (bench/_fleet.ts), ${fleets.card.size} card, ${fleets.qr.size} QR and ${fleets.shower.size} shower readers with two funded cards each, made in ${
        fmt((performance.now() - started) / 1000)
      } s; they stay connected between slices. A QR reader fetches the next payment's 付款码 while the current payment is in flight (over the bench's own database connection), and its latency starts with the code in hand. Shower pairs: start, then end with 10 units.`,
    );
    await idleBaseline(bench);
    return fleets;
  },
  async pgbenchDatabase() {
    if (pgbenchUrl) return pgbenchUrl;
    const url = await pg.createDatabase("pgbench");
    const scale = Math.max(...settings.clients, settings.openReaders);
    const initSeconds = await pgbenchInit(url, scale);
    report.note(
      `pgbench: scale ${scale} (initialised in ${
        fmt(initSeconds)
      } s; autovacuum off for its tables, the runs --no-vacuum), -j ${navigator.hardwareConcurrency}, per-transaction log (-l) so that a window's transactions and percentiles are exact; closed-loop windows open once every client is connected.`,
    );
    return pgbenchUrl = url;
  },
};

async function stopAll(): Promise<void> {
  await fleets?.close().catch(() => {});
  fleets = null;
  if (bench.server) await bench.server.stop("SIGTERM").catch(() => {});
  bench.server = null;
  await bench.meter.close();
  await pg.stop().catch(() => {});
}
Deno.addSignalListener("SIGINT", async () => {
  await stopAll();
  Deno.exit(130);
});

// --- pgbench, the reference --------------------------------------------------------------------
if (want("pgbench")) {
  // simple-update is measured again and again in the interleaved pairs when those run.
  const scripts = want("terminal")
    ? ["tpcb-like"] as const
    : ["simple-update", "tpcb-like"] as const;
  const figures = scripts.flatMap((s) => settings.clients.map((c) => `${s}, ${c} clients`));
  await report.section("pgbench", figures, async () => {
    const url = await bench.pgbenchDatabase();
    for (const script of scripts) {
      for (const clients of settings.clients) {
        const w = await pgbenchWindow(url, bench.meter, {
          clients,
          seconds: settings.seconds,
          script,
        });
        report.add({
          section: "pgbench",
          figure: `${script}, ${clients} clients`,
          value: `${fmt(w.tps)} TPS, p50 ${fmt(w.p50Ms, 1)} ms, p99 ${
            fmt(w.p99Ms, 1)
          } ms; database CPU ${fmt(perOp(w.cpu.db, w.transactions))} µs/transaction`,
          verdict: "reference (one slice; the ratios pair slices of their own)",
        });
      }
    }
  });
}

// --- the server on PostgreSQL --------------------------------------------------------------------
if (
  ["http", "pages", "terminal", "capacity", "import", "closeout", "blocklist", "idle"].some(want)
) {
  await report.section("server", ["start on PostgreSQL"], async () => {
    await pg.createDatabase("yxt");
    const dataDir = join(OUT, "server-data");
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    const env = serverEnv({
      databaseUrl: bench.yxtUrl,
      dataDir,
      ...secrets,
      extra: { BENCH_HELLO: "1" },
    });
    bench.server = await startServer(env, "bench-server");
    bench.meter.serverPid = bench.server.pid;
    report.note(
      "Server: `deno run -A main.ts` on PostgreSQL, default LOG_LEVEL (one log line per request to a file), log at bench/out/bench-server.log.",
    );
  });
}
const server = bench.server;

if (server && (want("http") || want("pages"))) {
  await report.section("fixtures", ["signed-in students"], async () => {
    const world = await openWorld(bench.yxtUrl);
    try {
      const cards = await createCardholders(world.db, secrets, {
        first: 1,
        count: WEB_STUDENTS,
        balance: 100_000,
        tag: "http",
      });
      for (const [i, card] of cards.entries()) {
        const phone = `139${String(i + 1).padStart(8, "0")}`;
        bench.students.push(await signedInStudent(world.db, server.url, card, phone));
      }
    } finally {
      await world.close();
    }
  });
}

if (server && want("http")) {
  await report.section(
    "HTTP",
    ["bare Hono hello", "余额 /wallet", "付款码 refresh"],
    () => httpSection(bench),
  );
}
if (server && want("pages")) {
  await report.section(
    "pages",
    [...PAGE_PATHS.map((p) => `cold load ${p}`), "付款码 QR visible, Regular 3G"],
    () => pagesSection(bench),
  );
}
if (server && want("terminal")) {
  await report.section(
    "readers (PostgreSQL)",
    settings.clients.flatMap((c) => KINDS.map((k) => `${kindLabel(k)}, ${c} readers`)),
    () => closedPairsSection(bench),
  );
}
if (server && want("capacity")) {
  await report.section(
    "capacity",
    ["simple-update", ...KINDS].map((n) => `capacity ${n}`).concat("lunch peak"),
    () => capacitySection(bench),
  );
}

// --- the card office and connected readers at scale ----------------------------------------------
if (server && want("import")) {
  const rows = 50_000;
  const figure = `${fmt(rows)} cardholders from CSV`;
  await report.section("import", [figure], async () => {
    const r = await importCardholders(server, bench.yxtUrl, secrets, rows);
    report.add({
      section: "import",
      figure,
      value: `${fmt(r.seconds, 1)} s (${fmt(rows / r.seconds)} rows/s)`,
      target: "≤ 10 s",
      verdict: verdict(r.seconds <= 10),
    });
    report.note(
      "Import: a CSV uploaded on the card office's import page, its preview, then the commit; the time from upload to committed. 50,000 rows (issue 20) in place of the 20,000 of issue 7, within the same 10 s.",
    );
  });
}

if (server && want("closeout")) {
  await report.section("closeout", [CLOSEOUT_FIGURE], () => closeoutSection(bench));
}

// The reader fleets are done: connected, they would receive the pushes of the blocklist section
// too, and hold memory.
await fleets?.close();
fleets = null;

if (server && want("blocklist")) {
  const steps = [{ readers: 200, boundMs: 1000 }, { readers: 1000, boundMs: 200 }];
  const figure = (n: number) => `loss report to ${fmt(n)} connected readers`;
  await report.section("blocklist", steps.map((s) => figure(s.readers)), async () => {
    for (const s of steps) {
      const r = await blocklistPropagation(server, bench.yxtUrl, secrets, s.readers);
      report.add({
        section: "blocklist",
        figure: figure(s.readers),
        value: `p50 ${fmt(r.p50Ms)} ms, p99 ${fmt(r.p99Ms)} ms, max ${fmt(r.maxMs)} ms (${
          fmt(r.reached)
        }/${fmt(s.readers)} reached)`,
        target: `p99 ≤ ${fmt(s.boundMs)} ms`,
        verdict: verdict(r.p99Ms <= s.boundMs && r.reached === s.readers),
      });
    }
  });
}

if (server && want("idle")) {
  const counts = [1000, 5000];
  const figure = (n: number) => `RSS with ${fmt(n)} idle readers`;
  await report.section("memory", counts.map(figure), async () => {
    // A fresh server process (same configuration, same database): the one measured above still
    // holds what every earlier section left in its heap.
    await server.stop("SIGTERM");
    bench.server = null;
    bench.meter.serverPid = null;
    const r = await idleReadersMemory(server.env, bench.yxtUrl, secrets, counts);
    for (const s of r.steps) {
      report.add({
        section: "memory",
        figure: figure(s.count),
        value: `${fmt(s.rssMb)} MB (a fresh server process; before connecting: ${
          fmt(r.baselineMb)
        } MB; ${fmt(s.connected)} connected)`,
        target: "≤ 300 MB",
        verdict: verdict(s.rssMb <= 300 && s.connected === s.count),
      });
    }
  });
}

if (bench.server) await bench.server.stop("SIGTERM");
bench.server = null;
bench.meter.serverPid = null;
if (pgbenchUrl) await psql(pg.url, "drop database if exists pgbench with (force)").catch(() => {});

if (want("pglite")) {
  await report.section(
    "readers (PGlite)",
    PGLITE_READERS.map((n) => `card payments, ${n} readers`),
    () => pgliteSection(bench),
  );
}

await stopAll();

const how =
  `Commit ${await commitOfTree()}. Options: ${settings.seconds} s slices, ${settings.pairs} pairs per ratio; closed loop at ${
    settings.clients.join(", ")
  } readers (pgbench clients); open loop with ${settings.openReaders} readers (pgbench connections), ${settings.climbs} capacity climbs${
    ONLY.size ? `; only ${[...ONLY].join(",")}` : ""
  }.`;
const loadEnd = await Deno.readTextFile("/proc/loadavg").catch(() => "unknown");
report.note(
  `Load average at the end (1/5/15 min): ${
    loadEnd.split(" ").slice(0, 3).join(" ")
  } on ${navigator.hardwareConcurrency} cores. The machine is shared: other processes' CPU use shows in every throughput and latency, references included, which is why ratios come from interleaved pairs; CPU per operation hardly depends on it.`,
);
const outPath = resolve(ROOT, opts.out!);
await Deno.writeTextFile(outPath, report.render(machine, how, await whereSection()));
// In the repository's own format (CI checks it with deno fmt --check).
await run(Deno.execPath(), ["fmt", outPath]);
console.log(`\nwrote ${opts.out} (${fmt(performance.now() / 1000)} s)`);
