/**
 * The bench's reader sections: closed-loop throughput in interleaved pairs with pgbench
 * simple-update (and the CPU each operation costs), capacity at a latency objective with an open
 * loop, the lunch peak, and card payments on the embedded PGlite.
 */
import { join } from "node:path";
import { fmt, OUT, type Server, serverEnv, startServer } from "./_lib.ts";
import { pgbenchOpen, type PgbenchWindow, pgbenchWindow } from "./_pgbench.ts";
import { preparePgliteLoad } from "./_terminal.ts";
import { Fleet, type Kind, type SliceResult } from "./_fleet.ts";
import { type Climb, climb, type Contender } from "./_capacity.ts";
import {
  type Bench,
  cpuCells,
  errorsText,
  fleetSlice,
  kindLabel,
  KINDS,
  LUNCH,
  type Measured,
  OBJECTIVE_MS,
  perOp,
  TABLES,
  targetLine,
} from "./_bench.ts";
import {
  allOf,
  atLeast,
  atMost,
  type Decision,
  decisionText,
  ratioSpreadText,
  spread,
  spreadText,
} from "./_stats.ts";

/** Closed-loop targets at 64 readers, kept from issue 7. */
const CLOSED_TARGETS: Partial<
  Record<
    Kind,
    {
      text: string;
      decide(ratio: ReturnType<typeof spread>, p99: ReturnType<typeof spread>): Decision;
    }
  >
> = {
  card: {
    text: `≥ 1.0 ×, p99 ≤ ${OBJECTIVE_MS} ms`,
    decide: (ratio, p99) => allOf(atLeast(ratio, 1), atMost(p99, OBJECTIVE_MS)),
  },
  qr: { text: "≥ 0.8 ×", decide: (ratio) => atLeast(ratio, 0.8) },
};
/** Server + database CPU per card payment ≤ 0.5 × database CPU per simple-update (issue 20). */
const CPU_TARGET = 0.5;
/** Capacity at the latency objective ÷ simple-update's (issue 20). */
const CAPACITY_TARGETS: Record<Kind, number> = { card: 1.0, qr: 1.0, shower: 0.5 };

type Pair = { ref: PgbenchWindow; ours: Measured<SliceResult> };

/**
 * For each reader count: a warm-up of simple-update and of each kind, then `pairs` rounds of
 * (simple-update, card), (simple-update, QR), (simple-update, shower).
 */
export async function closedPairsSection(b: Bench): Promise<void> {
  const { settings, meter } = b;
  const f = await b.fleets();
  const url = await b.pgbenchDatabase();
  for (const c of settings.clients) {
    const ref = () => pgbenchWindow(url, meter, { clients: c, seconds: settings.seconds });
    const ours = (k: Kind, seconds: number) =>
      fleetSlice(meter, f[k], c, () => f[k].closed(c, seconds, OBJECTIVE_MS));
    await ref();
    for (const k of KINDS) await ours(k, Math.min(settings.seconds, 2));
    const pairs: Record<Kind, Pair[]> = { card: [], qr: [], shower: [] };
    for (let i = 0; i < settings.pairs; i++) {
      for (const k of KINDS) {
        const r = await ref();
        pairs[k].push({ ref: r, ours: await ours(k, settings.seconds) });
      }
    }
    const refs = KINDS.flatMap((k) => pairs[k].map((p) => p.ref));
    b.closedMedian.set(`simple-update:${c}`, spread(refs.map((w) => w.tps)).median);
    for (const k of KINDS) {
      b.closedMedian.set(`${k}:${c}`, spread(pairs[k].map((p) => p.ours.r.perSecond)).median);
      ratioRow(b, k, c, pairs[k]);
      cpuRow(b, k, c, pairs[k]);
    }
    const suDb = refs.map((w) => perOp(w.cpu.db, w.transactions));
    b.report.tableRow(TABLES.cpu, [
      "simple-update transaction (pgbench)",
      `closed loop, ${c} clients`,
      "—",
      spreadText(spread(suDb)),
      spreadText(spread(suDb)),
      spreadText(spread(refs.map((w) => perOp(w.cpu.client, w.transactions)))),
      "1 ×",
      "",
      "",
    ]);
  }
}

function ratioRow(b: Bench, k: Kind, c: number, ps: Pair[]): void {
  const rs = ps.map((p) => p.ours.r);
  const thr = spread(rs.map((r) => r.perSecond));
  const p99 = spread(rs.map((r) => r.p99));
  const ratio = spread(ps.map((p) => p.ours.r.perSecond / p.ref.tps));
  const figure = `${kindLabel(k)} ÷ simple-update, ${c} readers`;
  const t = c === 64 ? CLOSED_TARGETS[k] : undefined;
  const d = t?.decide(ratio, p99);
  b.report.tableRow(
    TABLES.ratios,
    [
      figure,
      `${spreadText(thr)}/s, p99 ${spreadText(p99, 1)} ms${errorsText(rs)}`,
      `${spreadText(spread(ps.map((p) => p.ref.tps)))} TPS, p99 ${
        spreadText(spread(ps.map((p) => p.ref.p99Ms)), 1)
      } ms`,
      ratioSpreadText(ratio),
      t?.text ?? "",
      d ? decisionText(d) : "",
    ],
    t && d ? targetLine(figure, t.text, ratioSpreadText(ratio), d) : undefined,
  );
}

function cpuRow(b: Bench, k: Kind, c: number, ps: Pair[]): void {
  const cpu = cpuCells(ps.map((p) => p.ours));
  const vsSu = spread(ps.map((p, i) => cpu.both[i] / perOp(p.ref.cpu.db, p.ref.transactions)));
  const what = k === "card" ? "card payment" : k === "qr" ? "QR payment" : "shower start+end pair";
  const d = k === "card" ? atMost(vsSu, CPU_TARGET) : null;
  const t = `≤ ${CPU_TARGET} ×`;
  b.report.tableRow(
    TABLES.cpu,
    [
      what,
      `closed loop, ${c} readers`,
      ...cpu.cells,
      ratioSpreadText(vsSu),
      d ? t : "",
      d ? decisionText(d) : "",
    ],
    d
      ? targetLine(
        `server + database CPU per ${what}, ${c} readers, ÷ database CPU per simple-update transaction`,
        t,
        `${spreadText(spread(cpu.both))} µs/payment = ${ratioSpreadText(vsSu)}`,
        d,
      )
      : undefined,
  );
}

type Contestant = "simple-update" | Kind;
const CONTESTANTS: Contestant[] = ["simple-update", ...KINDS];

/**
 * Capacity at p99 ≤ 20 ms for simple-update and each kind (open loop, climbs taking turns), then
 * the lunch peak.
 */
export async function capacitySection(b: Bench): Promise<void> {
  const { settings } = b;
  const f = await b.fleets();
  const url = await b.pgbenchDatabase();
  const n = settings.openReaders;
  const longest = Math.max(Math.ceil(settings.seconds), 5);
  const stepSeconds = (rate: number) =>
    Math.min(longest, Math.max(Math.ceil(settings.seconds), Math.ceil(1000 / rate)));
  const offer = (name: Contestant): Contender["offer"] =>
    name === "simple-update"
      ? async (rate) => {
        const r = await pgbenchOpen(url, {
          clients: n,
          rate,
          seconds: stepSeconds(rate),
          limitMs: OBJECTIVE_MS,
        });
        return { p99Ms: r.p99Ms, overLimit: r.overLimit };
      }
      : async (rate) => {
        const r = await f[name].open(n, rate, stepSeconds(rate), OBJECTIVE_MS);
        return { p99Ms: r.p99, overLimit: r.overLimit };
      };
  // The first guess: half the closed-loop throughput at the nearest reader count measured.
  const nearest = settings.clients.reduce(
    (a, x) => (Math.abs(x - n) < Math.abs(a - n) ? x : a),
    settings.clients[0] ?? n,
  );
  const fallback: Record<Contestant, number> = {
    "simple-update": 800,
    card: 800,
    qr: 500,
    shower: 300,
  };
  const climbs: Array<Map<string, Climb>> = [];
  for (let i = 0; i < settings.climbs; i++) {
    const contenders = CONTESTANTS.map((name) => {
      const before = climbs.at(-1)?.get(name)?.capacity ?? 0;
      const closed = b.closedMedian.get(`${name}:${nearest}`) ?? NaN;
      const start = before > 0 ? before * 0.8 : closed > 0 ? closed * 0.5 : fallback[name];
      return { name, start: Math.max(20, start), offer: offer(name) };
    });
    climbs.push(
      await climb(contenders, {
        objectiveMs: OBJECTIVE_MS,
        step: 1.25,
        log: (line) => console.log(`  climb ${i + 1}: ${line}`),
      }),
    );
  }
  for (const name of CONTESTANTS) capacityRow(b, name, climbs);
  await lunchPeak(b);
}

function capacityRow(b: Bench, name: Contestant, climbs: Array<Map<string, Climb>>): void {
  const of = (c: Map<string, Climb>) => c.get(name)!;
  // 0 ÷ 0 (nothing held on either side) decides nothing; x ÷ 0 is infinitely better.
  const ratio = spread(climbs.map((c) => of(c).capacity / c.get("simple-update")!.capacity));
  const isRef = name === "simple-update";
  const t = isRef ? "" : `≥ ${CAPACITY_TARGETS[name].toFixed(1)} ×`;
  const d = isRef ? null : atLeast(ratio, CAPACITY_TARGETS[name]);
  const unit = isRef ? "TPS" : name === "shower" ? "pairs/s" : "/s";
  const label = isRef ? "simple-update (pgbench --rate)" : kindLabel(name);
  b.report.tableRow(
    TABLES.capacity,
    [
      label,
      `${climbs.map((c) => fmt(of(c).capacity)).join(" · ")} ${unit}`,
      climbs.map((c) => Number.isNaN(of(c).missedAt) ? "—" : fmt(of(c).missedAt)).join(" · "),
      isRef ? "reference" : ratioSpreadText(ratio),
      t,
      d ? decisionText(d) : "",
      climbs.map((c) => of(c).steps.map((s) => `${fmt(s.rate)}${s.held ? "✓" : "✗"}`).join(" "))
        .join(" ‖ "),
    ],
    d
      ? targetLine(
        `capacity at p99 ≤ ${OBJECTIVE_MS} ms, ${label} ÷ simple-update's`,
        t,
        ratioSpreadText(ratio),
        d,
      )
      : undefined,
  );
}

/** 300 card readers, each offered one payment a second (Poisson), `pairs` slices. */
async function lunchPeak(b: Bench): Promise<void> {
  const f = await b.fleets();
  const rate = LUNCH.readers * LUNCH.perReader;
  const seconds = Math.max(5, b.settings.seconds);
  const slices = [];
  for (let i = 0; i < b.settings.pairs; i++) {
    slices.push(
      await fleetSlice(
        b.meter,
        f.card,
        LUNCH.readers,
        () => f.card.open(LUNCH.readers, rate, seconds, LUNCH.objectiveMs),
      ),
    );
  }
  const rs = slices.map((s) => s.r);
  const p99 = spread(rs.map((r) => r.p99));
  const errors = rs.reduce((a, r) => a + r.errors, 0);
  b.report.add({
    section: "lunch peak",
    figure: `${LUNCH.readers} card readers offered ${LUNCH.perReader} payment/s each (open loop)`,
    value: `p50 ${spreadText(spread(rs.map((r) => r.p50)), 1)} ms, p99 ${
      spreadText(p99, 1)
    } ms, max ${spreadText(spread(rs.map((r) => r.max)), 1)} ms; ${
      fmt(rs.reduce((a, r) => a + r.offered, 0))
    } payments in ${b.settings.pairs} slices of ${seconds} s${errorsText(rs)}`,
    target: `p99 ≤ ${LUNCH.objectiveMs} ms`,
    verdict: decisionText(allOf(atMost(p99, LUNCH.objectiveMs), errors ? "missed" : "met")),
  });
  b.report.tableRow(TABLES.cpu, [
    "card payment",
    `lunch peak: ${LUNCH.readers} readers, ${rate}/s offered`,
    ...cpuCells(slices).cells,
    "",
    "",
    "",
  ]);
}

/** Card payments on the embedded PGlite: ≥ 1,000/s at 8 and at 64 readers (issue 7). */
export const PGLITE_READERS = [8, 64];

export async function pgliteSection(b: Bench): Promise<void> {
  const { settings, meter, report } = b;
  const dataDir = join(OUT, "pglite-data");
  await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dataDir, { recursive: true });
  const env = serverEnv({ databaseUrl: null, dataDir, ...b.secrets });
  // PGlite is one process's database: readers and cards are prepared before the server opens it.
  const prepared = await preparePgliteLoad(dataDir, env, Math.max(...PGLITE_READERS));
  const lite: Server = await startServer(env, "bench-pglite");
  meter.serverPid = lite.pid;
  const fleet = new Fleet("card", lite.terminalPort, prepared);
  try {
    for (const readers of PGLITE_READERS) {
      await fleet.closed(readers, Math.min(settings.seconds, 2));
      const slices = [];
      for (let i = 0; i < settings.pairs; i++) {
        slices.push(
          await fleetSlice(meter, fleet, readers, () => fleet.closed(readers, settings.seconds)),
        );
      }
      const rs = slices.map((s) => s.r);
      const thr = spread(rs.map((r) => r.perSecond));
      report.add({
        section: "readers (PGlite)",
        figure: `card payments, ${readers} readers`,
        value: `${spreadText(thr)}/s, p50 ${spreadText(spread(rs.map((r) => r.p50)), 1)} ms, p99 ${
          spreadText(spread(rs.map((r) => r.p99)), 1)
        } ms${errorsText(rs)} (${settings.pairs} slices of ${settings.seconds} s)`,
        target: "≥ 1,000/s",
        verdict: decisionText(atLeast(thr, 1000)),
      });
      const server = spread(slices.map((s) => perOp(s.cpu.server, s.ops)));
      report.tableRow(TABLES.cpu, [
        "card payment on PGlite",
        `closed loop, ${readers} readers`,
        `${spreadText(server)} (database inside)`,
        "—",
        spreadText(server),
        spreadText(spread(slices.map((s) => perOp(s.cpu.client, s.ops)))),
        "",
        "",
        "",
      ]);
    }
  } finally {
    await fleet.close();
    await lite.stop("SIGTERM");
    meter.serverPid = null;
  }
}
