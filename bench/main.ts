/**
 * `deno task bench`: measures the system against the targets of issue 7 on this machine and
 * writes bench/RESULTS.md. It starts its own PostgreSQL, runs pgbench as the reference, starts
 * the real server (`deno run -A main.ts`) as a subprocess, and drives it over HTTP (wrk,
 * Chromium) and the reader protocol (the simulator's load mode). Each section fails soft: what
 * cannot be measured is written as "not measured: reason".
 *
 * Options: --seconds N (each load measurement, default 10) · --clients 8,64,256 ·
 * --only pgbench,http,pages,terminal,pglite,import,blocklist,idle · --out bench/RESULTS.md
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
  type Server,
  serverEnv,
  startPostgres,
  startServer,
  verdict,
} from "./_lib.ts";
import { machineFacts } from "./_machine.ts";
import { pgbenchInit, type PgbenchResult, pgbenchRun } from "./_pgbench.ts";
import { Report } from "./_report.ts";
import { wrk } from "./_wrk.ts";
import { coldLoadWeight, launchChromium, timeUntilVisible } from "./_browser.ts";
import { createCardholders, openWorld, signedInStudent, type Student } from "./_world.ts";
import {
  blocklistPropagation,
  idleReadersMemory,
  importCardholders,
  inProcessLoad,
  type LoadKind,
  preparePgliteLoad,
  simulatorLoad,
} from "./_terminal.ts";

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "10" },
    clients: { type: "string", default: "8,64,256" },
    only: { type: "string", default: "" },
    out: { type: "string", default: "bench/RESULTS.md" },
  },
});
const SECONDS = Math.max(1, Number(opts.seconds));
const CLIENTS = opts.clients!.split(",").map(Number).filter((n) => n > 0);
const ONLY = new Set(opts.only ? opts.only.split(",") : []);
const want = (s: string) => ONLY.size === 0 || ONLY.has(s);

const report = new Report();
const machine = await machineFacts();
await Deno.mkdir(OUT, { recursive: true });

let pg = null as Postgres | null;
let server = null as Server | null;
const simpleUpdate = new Map<number, number>();
const appSecret = randomHex();
const cardPepper = randomHex();

async function stopAll(): Promise<void> {
  if (server) await server.stop("SIGTERM").catch(() => {});
  server = null;
  if (pg) await pg.stop().catch(() => {});
  pg = null;
}
Deno.addSignalListener("SIGINT", async () => {
  await stopAll();
  Deno.exit(130);
});

let pgStartError = "";
await report.section("PostgreSQL", ["start"], async () => {
  pg = await startPostgres("bench").catch((err) => {
    pgStartError = (err as Error).message;
    throw err;
  });
  report.note(
    `PostgreSQL: throwaway cluster from .ci/start_postgres.sh (fsync and synchronous_commit on, shared_buffers 256MB).`,
  );
});

// --- 1. pgbench, the reference -------------------------------------------------------------
if (want("pgbench")) {
  const figures = CLIENTS.flatMap((
    c,
  ) => [`simple-update TPS, ${c} clients`, `tpcb-like TPS, ${c} clients`]);
  await report.section("pgbench", figures, async () => {
    if (!pg) throw new Error("PostgreSQL did not start");
    const url = await pg.createDatabase("pgbench");
    const scale = Math.max(...CLIENTS);
    const initSeconds = await pgbenchInit(url, scale);
    report.note(
      `pgbench: scale ${scale} (initialised in ${
        initSeconds.toFixed(0)
      } s), ${SECONDS} s per run, -j ${navigator.hardwareConcurrency}.`,
    );
    for (const script of ["simple-update", "tpcb-like"] as const) {
      for (const clients of CLIENTS) {
        const r: PgbenchResult = await pgbenchRun(url, script, clients, SECONDS);
        if (script === "simple-update") simpleUpdate.set(clients, r.tps);
        report.add({
          section: "pgbench",
          figure: `${script} TPS, ${clients} clients`,
          value: `${fmt(r.tps)} TPS, mean latency ${fmt(r.latencyMs, 1)} ms${
            r.failed ? `, ${r.failed} failed` : ""
          }`,
        });
      }
    }
    await psql(pg.url, "drop database if exists pgbench with (force)");
  });
}

// --- the server on PostgreSQL ----------------------------------------------------------------
let student = null as Student | null;
/** Web users of the HTTP measurements: each wrk request takes the next one's session. */
const WEB_STUDENTS = 64;
const PGLITE_READERS = [8, 64];
const needsServer = ["http", "pages", "terminal", "import", "blocklist", "idle"].some(want);
if (needsServer) {
  await report.section("server", ["start on PostgreSQL"], async () => {
    if (!pg) throw new Error("PostgreSQL did not start");
    const url = await pg.createDatabase("yxt");
    const dataDir = join(OUT, "server-data");
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    const env = serverEnv({
      databaseUrl: url,
      dataDir,
      appSecret,
      cardPepper,
      extra: { BENCH_HELLO: "1" },
    });
    server = await startServer(env, "bench-server");
    report.note(
      `Server: \`deno run -A main.ts\` on PostgreSQL, default LOG_LEVEL (one log line per request to a file), log at bench/out/bench-server.log.`,
    );
  });
}

const students: Student[] = [];
if (server && (want("http") || want("pages"))) {
  await report.section("fixtures", ["signed-in students"], async () => {
    const world = await openWorld(pg!.urlFor("yxt"));
    try {
      const cards = await createCardholders(world.db, { appSecret, cardPepper }, {
        first: 1,
        count: WEB_STUDENTS,
        balance: 100_000,
        tag: "http",
      });
      for (const [i, card] of cards.entries()) {
        students.push(
          await signedInStudent(
            world.db,
            server!.url,
            card,
            `139${String(i + 1).padStart(8, "0")}`,
          ),
        );
      }
      student = students[0];
    } finally {
      await world.close();
    }
  });
}

// --- 4. HTTP -----------------------------------------------------------------------------------
if (server && want("http")) {
  const conns = 64;
  const figures = ["bare Hono hello", "余额 /wallet", "付款码 refresh"];
  await report.section("HTTP", figures, async () => {
    const s = server!;
    const hello = await wrk(`${s.url}/__bench/hello`, { connections: conns, seconds: SECONDS });
    if (hello.errors) {
      throw new Error(
        `hello route answered ${hello.errors} errors: is BENCH_HELLO wired in main.ts?`,
      );
    }
    report.add({
      section: "HTTP",
      figure: "bare Hono hello",
      value: `${fmt(hello.requestsPerSecond)} req/s, p50 ${fmt(hello.p50Ms, 1)} ms, p99 ${
        fmt(hello.p99Ms, 1)
      } ms`,
      verdict: "reference",
    });
    if (!students.length) throw new Error("no signed-in students (see the fixtures row)");
    const sessions = students.map((st) => ({ cookie: st.cookieHeader }));
    const wallet = await wrk(`${s.url}/wallet`, { connections: conns, seconds: SECONDS, sessions });
    const okWallet = wallet.requestsPerSecond >= 3000 && wallet.p99Ms <= 50 && wallet.errors === 0;
    report.add({
      section: "HTTP",
      figure: "余额 /wallet",
      value: `${fmt(wallet.requestsPerSecond)} req/s, p50 ${fmt(wallet.p50Ms, 1)} ms, p99 ${
        fmt(wallet.p99Ms, 1)
      } ms${wallet.errors ? `, ${wallet.errors} errors` : ""}`,
      target: "≥ 3,000 req/s, p99 ≤ 50 ms",
      verdict: `${verdict(okWallet)}; ${
        ratio(wallet.requestsPerSecond / hello.requestsPerSecond)
      } × hello`,
    });
    const refresh = await wrk(`${s.url}/pay/code/refresh`, {
      connections: conns,
      seconds: SECONDS,
      method: "POST",
      sessions: students.map((st) => ({
        cookie: st.cookieHeader,
        "hx-request": "true",
        "x-csrf-token": st.csrf,
      })),
    });
    report.add({
      section: "HTTP",
      figure: "付款码 refresh",
      value: `${fmt(refresh.requestsPerSecond)} req/s, p50 ${fmt(refresh.p50Ms, 1)} ms, p99 ${
        fmt(refresh.p99Ms, 1)
      } ms${refresh.errors ? `, ${refresh.errors} errors` : ""}`,
      verdict: `${ratio(refresh.requestsPerSecond / hello.requestsPerSecond)} × hello`,
    });
    report.note(
      `HTTP: wrk -t2 -c${conns} -d${SECONDS}s on the same 2-core machine as the server and PostgreSQL, requests rotating over ${students.length} signed-in students; 付款码 refresh is the htmx POST /pay/code/refresh (a new code per request, retiring the old one).`,
    );
  });
}

// --- 5. Page weight and the QR code on Regular 3G ------------------------------------------------
if (server && want("pages")) {
  const paths = ["/login", "/", "/pay/code", "/wallet/transactions"];
  // Issue 16: the three student pages a student opens most stay within 30 KB; /login within 40.
  const budgetKb = (path: string) => path === "/login" ? 40 : 30;
  const figures = [...paths.map((p) => `cold load ${p}`), "付款码 QR visible, Regular 3G"];
  await report.section("pages", figures, async () => {
    const browser = await launchChromium();
    try {
      for (const path of paths) {
        const signedIn = path !== "/login";
        try {
          if (signedIn && !student) throw new Error("no signed-in student (see the fixtures row)");
          const w = await coldLoadWeight(
            browser,
            server!.url,
            path,
            signedIn ? student!.cookies : [],
          );
          if (w.finalPath !== path) {
            throw new Error(`${path} ended at ${w.finalPath} (status ${w.status})`);
          }
          if (w.status !== 200) throw new Error(`${path} answered ${w.status}`);
          report.add({
            section: "pages",
            figure: `cold load ${path}`,
            value: `${fmt(w.bytes / 1024, 1)} KB in ${w.requests} requests (largest: ${
              w.largest.map((l) => `${l.url} ${fmt(l.bytes / 1024, 1)} KB`).join(", ")
            })`,
            target: `≤ ${budgetKb(path)} KB`,
            verdict: verdict(w.bytes <= budgetKb(path) * 1024),
          });
        } catch (err) {
          report.notMeasured(
            "pages",
            `cold load ${path}`,
            (err as Error).message,
            `≤ ${budgetKb(path)} KB`,
          );
        }
      }
      if (!student) throw new Error("no signed-in student (see the fixtures row)");
      const t = await timeUntilVisible(
        browser,
        server!.url,
        "/pay/code",
        ".paycode__qr svg",
        student.cookies,
      );
      if (t.finalPath !== "/pay/code") throw new Error(`/pay/code ended at ${t.finalPath}`);
      report.add({
        section: "pages",
        figure: "付款码 QR visible, Regular 3G",
        value: `${fmt(t.ms)} ms`,
        target: "≤ 1,500 ms",
        verdict: verdict(t.ms <= 1500),
      });
    } finally {
      await browser.close();
    }
    report.note(
      "Pages: headless Chromium, fresh context per load (cold cache); bytes are DevTools' encodedDataLength (headers + compressed bodies) of every request until the load event plus 1.5 s (for a request still open, such as the 付款码 long poll, the bytes received so far). QR: DevTools Regular 3G (750 kbit/s down, 250 kbit/s up, 100 ms), time from navigation start until the QR element has a size on screen.",
    );
  });
}

// --- 1–3. Readers over TCP -----------------------------------------------------------------------
if (server && want("terminal")) {
  const kinds: LoadKind[] = ["card", "qr", "shower"];
  const figures = kinds.flatMap((k) => CLIENTS.map((c) => `${kindLabel(k)}, ${c} readers`));
  await report.section("readers (PostgreSQL)", figures, async () => {
    for (const kind of kinds) {
      for (const readers of CLIENTS) {
        const figure = `${kindLabel(kind)}, ${readers} readers`;
        try {
          const r = await simulatorLoad(server!, { kind, readers, seconds: SECONDS });
          const ref = simpleUpdate.get(readers);
          const rel = ref ? r.perSecond / ref : NaN;
          const factor = kind === "qr" ? 0.8 : 1.0;
          const target = kind === "shower"
            ? undefined
            : readers === 64
            ? `≥ ${factor.toFixed(1)} × simple-update${kind === "card" ? ", p99 ≤ 20 ms" : ""}`
            : undefined;
          const ok = kind === "card" ? rel >= factor && r.p99Ms <= 20 : rel >= factor;
          report.add({
            section: "readers (PostgreSQL)",
            figure,
            value: `${fmt(r.perSecond)}/s, p50 ${fmt(r.p50Ms, 1)} ms, p95 ${
              fmt(r.p95Ms, 1)
            } ms, p99 ${fmt(r.p99Ms, 1)} ms${r.errors ? `, ${r.errors} refused/failed` : ""}`,
            target,
            verdict: Number.isFinite(rel)
              ? `${ratio(rel)} × simple-update${target ? `; ${verdict(ok)}` : ""}`
              : "no simple-update reference",
          });
        } catch (err) {
          report.notMeasured("readers (PostgreSQL)", figure, (err as Error).message);
        }
      }
    }
  });
}

if (server && want("import")) {
  await report.section("import", ["20,000 cardholders from CSV"], async () => {
    const r = await importCardholders(
      server!,
      pg!.urlFor("yxt"),
      { appSecret, cardPepper },
      20_000,
    );
    report.add({
      section: "import",
      figure: "20,000 cardholders from CSV",
      value: `${fmt(r.seconds, 1)} s (${fmt(20_000 / r.seconds)} rows/s)`,
      target: "≤ 10 s",
      verdict: verdict(r.seconds <= 10),
    });
  });
}

if (server && want("blocklist")) {
  await report.section("blocklist", ["loss report to 200 readers"], async () => {
    const r = await blocklistPropagation(
      server!,
      pg!.urlFor("yxt"),
      { appSecret, cardPepper },
      200,
    );
    report.add({
      section: "blocklist",
      figure: "loss report to 200 readers",
      value: `p50 ${fmt(r.p50Ms)} ms, p99 ${fmt(r.p99Ms)} ms, max ${
        fmt(r.maxMs)
      } ms (${r.reached}/200 reached)`,
      target: "p99 ≤ 1,000 ms",
      verdict: verdict(r.p99Ms <= 1000 && r.reached === 200),
    });
  });
}

if (server && want("idle")) {
  await report.section("memory", ["RSS with 1,000 idle readers"], async () => {
    // A fresh server process (same configuration, same database): the one measured above still
    // holds what every earlier section left in its heap.
    const env = server!.env;
    await server!.stop("SIGTERM");
    server = null;
    const r = await idleReadersMemory(env, pg!.urlFor("yxt"), { appSecret, cardPepper }, 1000);
    report.add({
      section: "memory",
      figure: "RSS with 1,000 idle readers",
      value: `${fmt(r.rssMb)} MB (a fresh server process; before connecting: ${
        fmt(r.baselineMb)
      } MB; ${r.connected} connected)`,
      target: "≤ 300 MB",
      verdict: verdict(r.rssMb <= 300 && r.connected === 1000),
    });
  });
}

if (server) await server.stop("SIGTERM");
server = null;

// --- 3. Card payments on the embedded PGlite ------------------------------------------------------
if (want("pglite")) {
  await report.section(
    "readers (PGlite)",
    PGLITE_READERS.map((n) => `card payments, ${n} readers`),
    async () => {
      const dataDir = join(OUT, "pglite-data");
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
      await Deno.mkdir(dataDir, { recursive: true });
      const env = serverEnv({ databaseUrl: null, dataDir, appSecret, cardPepper });
      // PGlite is one process's database: readers and cards are prepared before the server opens it.
      const prepared = await preparePgliteLoad(dataDir, env, Math.max(...PGLITE_READERS));
      const lite = await startServer(env, "bench-pglite");
      try {
        for (const readers of PGLITE_READERS) {
          const r = await inProcessLoad(lite, prepared.slice(0, readers), SECONDS);
          report.add({
            section: "readers (PGlite)",
            figure: `card payments, ${readers} readers`,
            value: `${fmt(r.perSecond)}/s, p50 ${fmt(r.p50Ms, 1)} ms, p99 ${fmt(r.p99Ms, 1)} ms${
              r.errors ? `, ${r.errors} refused/failed` : ""
            }`,
            target: "≥ 1,000/s",
            verdict: verdict(r.perSecond >= 1000),
          });
        }
      } finally {
        await lite.stop("SIGTERM");
      }
    },
  );
}

await stopAll();

/** A ratio with two significant digits however small ("0.0041"). */
function ratio(x: number): string {
  return x >= 0.1 ? x.toFixed(2) : x.toPrecision(2);
}

function kindLabel(kind: LoadKind): string {
  return kind === "card"
    ? "card payments"
    : kind === "qr"
    ? "QR payments"
    : "shower start+end pairs";
}

const how = `Options: ${SECONDS} s per load measurement, clients ${CLIENTS.join("/")}${
  ONLY.size ? `, only ${[...ONLY].join(",")}` : ""
}.`;
const loadEnd = await Deno.readTextFile("/proc/loadavg").catch(() => "unknown");
report.note(
  `Load average at the end (1/5/15 min): ${
    loadEnd.split(" ").slice(0, 3).join(" ")
  } on ${navigator.hardwareConcurrency} cores. The machine is shared: other processes' CPU use shows in every figure, references included, which is why ratios are given.`,
);
const outPath = resolve(ROOT, opts.out!);
await Deno.writeTextFile(outPath, report.render(machine, how));
console.log(`\nwrote ${opts.out}`);
// Most sections measure PostgreSQL: a cluster that cannot start is an error, not a table of
// "not measured" rows that exits 0.
if (pgStartError) {
  console.error(`bench: PostgreSQL did not start: ${pgStartError}`);
  Deno.exit(1);
}
