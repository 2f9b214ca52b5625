/**
 * `deno task bench --profile card,qr,shower,wallet,refresh,simple-update,lunch,closeout`: where the
 * time goes. Instead of the measurements, one run with the server under Deno's `--cpu-prof` and
 * PostgreSQL with `pg_stat_statements` loaded (planning tracked); each named load runs for one
 * window (closed loop, the same load as the bench's; `lunch` is the lunch peak's open loop;
 * `closeout` a graduation batch of BENCH_CLOSEOUT_CARDS cards, default 20,000, seeded first), and
 * bench/out/where-<name>.md gets the server's functions and files by share of CPU samples in that
 * window, the statements by execution and planning time, and the CPU of each kind of PostgreSQL
 * process. bench/out/where.json keeps the top lines, which the next
 * RESULTS.md cites under "Where the time goes" with the profiled run's date and commit.
 */
import { join } from "node:path";
import { LUNCH } from "./_bench.ts";
import { fmt, OUT, run, type Server, serverEnv, startPostgres, startServer } from "./_lib.ts";
import { cpuBetween, CpuMeter, type CpuUse } from "./_cpu.ts";
import { type Fleets, type Kind, openFleets } from "./_fleet.ts";
import { pgbenchInit, pgbenchWindow } from "./_pgbench.ts";
import { wrk } from "./_wrk.ts";
import { CLOSEOUT_CARDS, runCloseout, seedCloseout } from "./_sections_closeout.ts";
import {
  createCardholders,
  openWorld,
  type Secrets,
  signedInStudent,
  type Student,
} from "./_world.ts";
import {
  analyseProfile,
  BENCH_ROLE,
  enableStatements,
  newestProfile,
  resetStatements,
  type Share,
  type StatementTotal,
  topStatements,
  whereMarkdown,
} from "./_profile.ts";

export const PROFILE_SECTIONS = [
  "card",
  "qr",
  "shower",
  "wallet",
  "refresh",
  "simple-update",
  "lunch",
  "closeout",
];

const DESCRIPTIONS: Record<string, string> = {
  card: "Card payments, closed loop.",
  qr:
    "QR payments, closed loop (the 付款码 issued over the bench's own connection: its statements are left out, its backend's CPU is not counted).",
  shower: "Shower start+end pairs, closed loop.",
  wallet: "余额 page (GET /wallet) under wrk, 64 connections.",
  refresh: "付款码 refresh (POST /pay/code/refresh) under wrk, 64 connections.",
  "simple-update": "pgbench simple-update, closed loop (the server idle; no server profile).",
  lunch:
    `The lunch peak: ${LUNCH.readers} card readers offered ${LUNCH.perReader} payment a second each (open loop, Poisson arrivals).`,
  closeout:
    `毕业离校: a graduation batch of ${CLOSEOUT_CARDS} cards (BENCH_CLOSEOUT_CARDS) from 确认办理 to 已完成, one server's worker; an operation is a card.`,
};

/** What where.json keeps of one profiled section. */
interface Summary {
  description: string;
  operations: number;
  seconds: number;
  perOpUs: { server: number; db: number; client: number };
  serverTop: Share[];
  filesTop: Share[];
  idle: number;
  statementsTop: Array<{ query: string; share: number; calls: number }>;
}

/** The git commit of the working tree (with "+changes" when it has uncommitted ones). */
export async function commitOfTree(): Promise<string> {
  const head = await run("git", ["rev-parse", "--short", "HEAD"]).catch(() => null);
  if (!head || head.code !== 0) return "unknown";
  const dirty = await run("git", ["status", "--porcelain", "--untracked-files=no"]);
  return head.stdout.trim() + (dirty.stdout.trim() ? "+changes" : "");
}

/** One measured window of the profiled run. */
interface Window {
  section: string;
  from: number;
  to: number;
  operations: number;
  cpu: CpuUse;
  statements: { totalMs: number; top: StatementTotal[] };
  processes: Array<[string, number]>;
}

/** Runs the profiled sections; returns the exit code. */
export async function profileRun(options: {
  sections: string[];
  seconds: number;
  clients: number;
  secrets: Secrets;
}): Promise<number> {
  const unknown = options.sections.filter((s) => !PROFILE_SECTIONS.includes(s));
  if (unknown.length) {
    console.error(
      `bench --profile: unknown ${unknown.join(", ")} (${PROFILE_SECTIONS.join(", ")})`,
    );
    return 2;
  }
  let pg;
  try {
    pg = await startPostgres("bench-profile");
  } catch (err) {
    console.error(`bench: PostgreSQL did not start: ${(err as Error).message}`);
    return 1;
  }
  let meter: CpuMeter | null = null;
  let server: Server | null = null;
  let fleets: Fleets | null = null;
  try {
    await enableStatements(pg);
    meter = await CpuMeter.open(pg.url, join(pg.dir, "data"));
    const url = await pg.createDatabase("yxt");
    const profileDir = join(OUT, "profile");
    await Deno.remove(profileDir, { recursive: true }).catch(() => {});
    await Deno.mkdir(profileDir, { recursive: true });
    const dataDir = join(OUT, "profile-server-data");
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    const env = serverEnv({ databaseUrl: url, dataDir, ...options.secrets });
    server = await startServer(env, "bench-profile-server", {
      denoFlags: ["--cpu-prof", `--cpu-prof-dir=${profileDir}`],
    });
    meter.serverPid = server.pid;
    const c = options.clients;
    const m = meter;
    const s = server;
    let students: Student[] = [];
    let pgbenchUrl = "";

    /** Runs `load` as the measured window, with the statements and processes it cost. */
    const window = async (
      section: string,
      load: () => Promise<{ operations: number; cpu?: CpuUse }>,
    ): Promise<Window> => {
      await resetStatements(pg.url);
      const before = m.clusterByTitle();
      const a = await m.sample();
      const r = await load();
      const b = await m.sample();
      const after = m.clusterByTitle();
      const processes = [...after].map(([k, v]) =>
        [k, v - (before.get(k) ?? 0)] as [string, number]
      )
        .filter(([, v]) => v > 0).sort((x, y) => y[1] - x[1]);
      return {
        section,
        from: a.at,
        to: b.at,
        operations: r.operations,
        cpu: r.cpu ?? cpuBetween(a, b),
        statements: await topStatements(pg.url),
        processes,
      };
    };

    const windows: Window[] = [];
    for (const section of options.sections) {
      console.log(`== profiling ${section} (${options.seconds} s)`);
      if (["card", "qr", "shower", "lunch"].includes(section)) {
        fleets ??= await openFleets(
          url,
          options.secrets,
          s.terminalPort,
          {
            card: options.sections.includes("lunch") ? Math.max(c, LUNCH.readers) : c,
            qr: c,
            shower: c,
          },
          { issuerUser: BENCH_ROLE },
        );
        if (section === "lunch") {
          const card = fleets.card;
          const rate = LUNCH.readers * LUNCH.perReader;
          await card.open(LUNCH.readers, rate, 2, LUNCH.objectiveMs);
          windows.push(
            await window(section, async () => {
              const r = await card.open(LUNCH.readers, rate, options.seconds, LUNCH.objectiveMs);
              return { operations: r.ok + r.errors };
            }),
          );
          continue;
        }
        const fleet = fleets[section as Kind];
        await fleet.closed(c, 2);
        windows.push(
          await window(section, async () => {
            const r = await fleet.closed(c, options.seconds);
            return { operations: r.ok + r.errors };
          }),
        );
      } else if (section === "closeout") {
        const world = await openWorld(url);
        try {
          const seeded = await seedCloseout(world.db, s.url);
          windows.push(
            await window(section, async () => {
              await runCloseout(seeded);
              return { operations: CLOSEOUT_CARDS };
            }),
          );
        } finally {
          await world.close();
        }
      } else if (section === "wallet" || section === "refresh") {
        if (!students.length) students = await webStudents(url, s, options.secrets);
        const target = section === "wallet"
          ? {
            url: `${s.url}/wallet`,
            sessions: students.map((st) => ({ cookie: st.cookieHeader })),
          }
          : {
            url: `${s.url}/pay/code/refresh`,
            method: "POST" as const,
            sessions: students.map((st) => ({
              cookie: st.cookieHeader,
              "hx-request": "true",
              "x-csrf-token": st.csrf,
            })),
          };
        await wrk(target.url, { connections: 64, seconds: 1, ...target });
        windows.push(
          await window(section, async () => {
            const r = await wrk(target.url, {
              connections: 64,
              seconds: options.seconds,
              ...target,
            });
            return { operations: r.requests };
          }),
        );
      } else {
        if (!pgbenchUrl) {
          pgbenchUrl = await pg.createDatabase("pgbench");
          await pgbenchInit(pgbenchUrl, c);
        }
        await pgbenchWindow(pgbenchUrl, m, { clients: c, seconds: 2 });
        windows.push(
          await window(section, async () => {
            const w = await pgbenchWindow(pgbenchUrl, m, { clients: c, seconds: options.seconds });
            return { operations: w.transactions, cpu: w.cpu };
          }),
        );
      }
    }
    await fleets?.close();
    fleets = null;
    await server.stop("SIGTERM");
    server = null;
    const exitedAt = performance.now();
    const profilePath = await newestProfile(profileDir);
    const analyses = await analyseProfile(profilePath, exitedAt, windows);
    const summaries: Record<string, Summary> = {};
    for (const [i, w] of windows.entries()) {
      const profile = w.section === "simple-update" ? null : analyses[i];
      const path = join(OUT, `where-${w.section}.md`);
      await Deno.writeTextFile(
        path,
        whereMarkdown({
          section: w.section,
          description: w.section === "lunch" || w.section === "closeout"
            ? DESCRIPTIONS[w.section]
            : `${DESCRIPTIONS[w.section]} ${c} readers/clients.`,
          seconds: (w.to - w.from) / 1000,
          operations: w.operations,
          cpu: w.cpu,
          profile,
          statements: w.statements,
          processes: w.processes,
        }),
      );
      console.log(`wrote ${path}`);
      const us = (sec: number) => (w.operations ? (sec / w.operations) * 1e6 : NaN);
      summaries[w.section] = {
        description: DESCRIPTIONS[w.section],
        operations: w.operations,
        seconds: (w.to - w.from) / 1000,
        perOpUs: { server: us(w.cpu.server), db: us(w.cpu.db), client: us(w.cpu.client) },
        serverTop: profile?.self.slice(0, 3) ?? [],
        filesTop: profile?.files.slice(0, 3) ?? [],
        idle: profile && profile.samples ? profile.idle / profile.samples : NaN,
        statementsTop: w.statements.top.slice(0, 3).map((st) => ({
          query: st.query.slice(0, 160),
          share: w.statements.totalMs ? st.totalMs / w.statements.totalMs : 0,
          calls: st.calls,
        })),
      };
    }
    await Deno.writeTextFile(
      join(OUT, "where.json"),
      JSON.stringify(
        {
          at: new Date().toISOString(),
          commit: await commitOfTree(),
          clients: c,
          profile: profilePath,
          sections: summaries,
        },
        null,
        2,
      ),
    );
    console.log(`wrote ${join(OUT, "where.json")} (raw profile: ${profilePath})`);
    return 0;
  } finally {
    await fleets?.close().catch(() => {});
    if (server) await server.stop("SIGTERM").catch(() => {});
    await meter?.close();
    await pg.stop().catch(() => {});
  }
}

async function webStudents(url: string, server: Server, secrets: Secrets): Promise<Student[]> {
  const world = await openWorld(url);
  try {
    const cards = await createCardholders(world.db, secrets, {
      first: 1,
      count: 32,
      balance: 100_000,
      tag: "profile",
    });
    const out: Student[] = [];
    for (const [i, card] of cards.entries()) {
      out.push(
        await signedInStudent(world.db, server.url, card, `139${String(i + 1).padStart(8, "0")}`),
      );
    }
    return out;
  } finally {
    await world.close();
  }
}

/** The "Where the time goes" section of RESULTS.md, from the last profiled run if there is one. */
export async function whereSection(): Promise<string[]> {
  const how =
    "A profiled server runs slower than a measured one, so profiles are a run of their own: `deno task bench --profile card,qr,shower,wallet,refresh,simple-update,lunch,closeout` (a few minutes) writes bench/out/where-<section>.md — the server's functions and files by share of CPU samples (Deno `--cpu-prof`), the statements by execution and planning time (`pg_stat_statements`), the CPU of each kind of PostgreSQL process — and bench/out/where.json, which this section cites.";
  let saved;
  try {
    saved = JSON.parse(await Deno.readTextFile(join(OUT, "where.json")));
  } catch {
    return [how, "", "No profiled run was found in bench/out/ when this file was written."];
  }
  const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
  const shares = (xs: Share[]) => xs.map((x) => `${x.name} ${pct(x.share)}`).join("; ") || "—";
  const rows = Object.entries(saved.sections as Record<string, Summary>).map(([name, s]) => [
    name,
    `${fmt(s.perOpUs.server)} · ${fmt(s.perOpUs.db)} · ${fmt(s.perOpUs.client)}`,
    `${shares(s.serverTop)}${
      Number.isFinite(s.idle) ? ` (of busy samples; idle ${pct(s.idle)})` : ""
    }`,
    shares(s.filesTop),
    s.statementsTop.filter((st) => st.share >= 0.01)
      .map((st) => `\`${st.query.slice(0, 100)}\` ${pct(st.share)}`).join("; ") || "—",
  ]);
  const esc = (x: string) => x.replaceAll("|", "\\|");
  return [
    how,
    "",
    `From the profiled run of ${String(saved.at).slice(0, 16).replace("T", " ")} UTC on commit ${
      esc(String(saved.commit))
    }, ${saved.clients} readers/clients (details: bench/out/where-<section>.md):`,
    "",
    "| section | CPU µs/op: server · database · load generator | server, own time by function | server, own time by file | database, execution time by statement |",
    "|---|---|---|---|---|",
    ...rows.map((r) => `| ${r.map(esc).join(" | ")} |`),
  ];
}
