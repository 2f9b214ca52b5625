/**
 * "Where the time goes": the server under Deno's `--cpu-prof` and PostgreSQL with
 * `pg_stat_statements`, summarised per measured window into bench/out/where-<section>.md — the
 * functions (and files) the server spent its samples in, the statements PostgreSQL spent its
 * execution time on, and the CPU of each kind of PostgreSQL process.
 */
import { join, relative } from "node:path";
import { fmt, type Postgres, psql, ROOT } from "./_lib.ts";

/** The role of the bench's own helper connections, whose statements the profile leaves out. */
export const BENCH_ROLE = "yxt_bench";

/**
 * Loads pg_stat_statements into the bench's cluster (a restart), creates its view, and the role
 * the bench's own helper connections use. Planning is tracked too (it is not by default): a
 * statement planned on every call spends CPU that execution time alone does not show.
 */
export async function enableStatements(pg: Postgres): Promise<void> {
  await psql(pg.url, "alter system set shared_preload_libraries = 'pg_stat_statements'");
  await pg.restart();
  await psql(pg.url, "alter system set pg_stat_statements.track_planning = on");
  await psql(pg.url, "select pg_reload_conf()");
  await psql(pg.url, "create extension if not exists pg_stat_statements");
  await psql(pg.url, `create role ${BENCH_ROLE} login superuser`);
}

export async function resetStatements(url: string): Promise<void> {
  await psql(url, "select pg_stat_statements_reset()");
}

/** One statement's totals since the last reset. */
export interface StatementTotal {
  database: string;
  query: string;
  calls: number;
  totalMs: number;
  meanMs: number;
  rows: number;
  /** Times planned (a named statement on its one generic plan: once per connection). */
  plans: number;
  /** Planning time in all, ms. */
  planMs: number;
}

const OWN_STATEMENTS = `s.query not ilike '%pg_stat_statements%'
  and s.query not ilike '%pg_stat_activity%'
  and s.userid is distinct from (select oid from pg_roles where rolname = '${BENCH_ROLE}')`;

/**
 * The statements with the most execution time since the last reset, and the execution time of
 * all of them (the bench's own queries left out).
 */
export async function topStatements(
  url: string,
  limit = 15,
): Promise<{ totalMs: number; top: StatementTotal[] }> {
  const rows = await psql<Record<string, unknown>>(
    url,
    `select d.datname, s.query, s.calls, s.total_exec_time, s.mean_exec_time, s.rows, s.plans,
            s.total_plan_time
       from pg_stat_statements s join pg_database d on d.oid = s.dbid
      where ${OWN_STATEMENTS}
      order by s.total_exec_time desc limit $1`,
    [limit],
  );
  const [sum] = await psql<{ total: number | null }>(
    url,
    `select sum(s.total_exec_time)::float8 as total from pg_stat_statements s where ${OWN_STATEMENTS}`,
  );
  return {
    totalMs: Number(sum?.total ?? 0),
    top: rows.map((r) => ({
      database: String(r.datname),
      query: String(r.query).replace(/\s+/g, " ").trim(),
      calls: Number(r.calls),
      totalMs: Number(r.total_exec_time),
      meanMs: Number(r.mean_exec_time),
      rows: Number(r.rows),
      plans: Number(r.plans),
      planMs: Number(r.total_plan_time),
    })),
  };
}

/** A V8 CPU profile as `--cpu-prof` writes it. */
interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }>;
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Share of a window's samples. */
export interface Share {
  name: string;
  share: number;
}

/** What the server's samples in one window were spent on. */
export interface ProfileWindow {
  samples: number;
  /** Samples with the server's thread idle (waiting for I/O). */
  idle: number;
  /** By function, its own time (excluding what it called), as a share of the busy samples. */
  self: Share[];
  /** By function, time with it anywhere on the stack. */
  inclusive: Share[];
  /** By file or package, own time. */
  files: Share[];
}

/** Where a script's code comes from: a package, a Deno extension or a file of the repository. */
function origin(url: string, functionName: string): string {
  if (!url) return functionName || "(native)";
  const npm = /node_modules\/\.deno\/([^/]+)\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url) ??
    /registry\.npmjs\.org\/((?:@[^/]+\/)?[^/]+)\/([^/]+)/.exec(url);
  if (npm) return `npm:${npm[2] ?? npm[1]}`;
  if (url.startsWith("ext:") || url.startsWith("node:")) return url.split("/")[0];
  if (url.startsWith("file://")) return relative(ROOT, new URL(url).pathname);
  return url;
}

function label(frame: CpuProfile["nodes"][number]["callFrame"]): string {
  const where = origin(frame.url, frame.functionName);
  const name = frame.functionName || "(anonymous)";
  return frame.url ? `${name} ${where}:${frame.lineNumber + 1}` : name;
}

function top(counts: Map<string, number>, total: number, n: number): Share[] {
  return [...counts].sort((a, b) => b[1] - a[1]).slice(0, n)
    .map(([name, c]) => ({ name, share: total ? c / total : 0 }));
}

/**
 * Splits a profile into windows given as the bench's performance.now() (ms): the profile's own
 * clock (µs) is anchored at its end, which is when the server exited, seen by the bench at
 * `exitedAt`.
 */
export async function analyseProfile(
  path: string,
  exitedAt: number,
  windows: Array<{ from: number; to: number }>,
  n = 20,
): Promise<ProfileWindow[]> {
  const p = JSON.parse(await Deno.readTextFile(path)) as CpuProfile;
  const byId = new Map(p.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of p.nodes) for (const c of node.children ?? []) parent.set(c, node.id);
  const toProfile = (ms: number) => p.endTime - (exitedAt - ms) * 1000;
  const times: number[] = [];
  let t = p.startTime;
  for (const d of p.timeDeltas) times.push(t += d);
  return windows.map(({ from, to }) => {
    const lo = toProfile(from);
    const hi = toProfile(to);
    const self = new Map<string, number>();
    const inclusive = new Map<string, number>();
    const files = new Map<string, number>();
    let samples = 0;
    let idle = 0;
    for (let i = 0; i < p.samples.length; i++) {
      if (times[i] < lo || times[i] > hi) continue;
      const node = byId.get(p.samples[i]);
      if (!node) continue;
      samples++;
      if (node.callFrame.functionName === "(idle)") {
        idle++;
        continue;
      }
      const key = label(node.callFrame);
      self.set(key, (self.get(key) ?? 0) + 1);
      const file = origin(node.callFrame.url, node.callFrame.functionName);
      files.set(file, (files.get(file) ?? 0) + 1);
      const seen = new Set<string>();
      for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
        const frame = byId.get(id)!.callFrame;
        if (frame.functionName === "(root)") continue;
        const k = label(frame);
        if (seen.has(k)) continue;
        seen.add(k);
        inclusive.set(k, (inclusive.get(k) ?? 0) + 1);
      }
    }
    const busy = samples - idle;
    return {
      samples,
      idle,
      self: top(self, busy, n),
      inclusive: top(inclusive, busy, n),
      files: top(files, busy, n),
    };
  });
}

/** The newest .cpuprofile in `dir`. */
export async function newestProfile(dir: string): Promise<string> {
  let best: { path: string; mtime: number } | null = null;
  for await (const e of Deno.readDir(dir)) {
    if (!e.name.endsWith(".cpuprofile")) continue;
    const path = join(dir, e.name);
    const mtime = (await Deno.stat(path)).mtime?.getTime() ?? 0;
    if (!best || mtime > best.mtime) best = { path, mtime };
  }
  if (!best) throw new Error(`the server wrote no CPU profile in ${dir}`);
  return best.path;
}

/** The Markdown of one profiled section. */
export function whereMarkdown(options: {
  section: string;
  description: string;
  seconds: number;
  operations: number;
  cpu: { server: number; db: number; client: number };
  profile: ProfileWindow | null;
  statements: { totalMs: number; top: StatementTotal[] };
  processes: Array<[string, number]>;
}): string {
  const perOp = (s: number) =>
    options.operations ? `${fmt((s / options.operations) * 1e6)} µs/op` : "—";
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const table = (title: string, head: string[], rows: string[][]) => [
    `### ${title}`,
    "",
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.map((c) => c.replaceAll("|", "\\|")).join(" | ")} |`),
    "",
  ];
  const lines = [
    `# Where the time goes: ${options.section}`,
    "",
    `${options.description} Window of ${
      fmt(options.seconds, 1)
    } s, ${options.operations} operations. Written by \`deno task bench --profile\` at ${
      new Date().toISOString().slice(0, 16).replace("T", " ")
    } UTC; a profiled server runs slower than in the measured bench.`,
    "",
    `CPU in the window (from /proc): server ${fmt(options.cpu.server, 2)} s (${
      perOp(options.cpu.server)
    }), PostgreSQL ${fmt(options.cpu.db, 2)} s (${perOp(options.cpu.db)}), load generator ${
      fmt(options.cpu.client, 2)
    } s (${perOp(options.cpu.client)}).`,
    "",
  ];
  if (options.profile) {
    const p = options.profile;
    lines.push(
      `Server samples (its main thread): ${p.samples}, of which idle ${
        pct(p.samples ? p.idle / p.samples : 0)
      }; the shares below are of the busy ones.`,
      "",
      ...table(
        "Server: own time by function (share of the busy samples)",
        ["function", "share"],
        p.self.map((s) => [s.name, pct(s.share)]),
      ),
      ...table(
        "Server: time on the stack by function",
        ["function", "share"],
        p.inclusive.map((s) => [s.name, pct(s.share)]),
      ),
      ...table(
        "Server: own time by file or package",
        ["file", "share"],
        p.files.map((s) => [s.name, pct(s.share)]),
      ),
    );
  }
  lines.push(
    ...table(
      `PostgreSQL: statements by total execution time (pg_stat_statements; all statements: ${
        fmt(options.statements.totalMs)
      } ms)`,
      [
        "database",
        "calls",
        "total ms",
        "share",
        "mean ms",
        "rows",
        "plans",
        "planning ms",
        "statement",
      ],
      options.statements.top.map((s) => [
        s.database,
        fmt(s.calls),
        fmt(s.totalMs),
        pct(options.statements.totalMs ? s.totalMs / options.statements.totalMs : 0),
        fmt(s.meanMs, 3),
        fmt(s.rows),
        fmt(s.plans),
        fmt(s.planMs, 1),
        `\`${s.query.slice(0, 300)}\``,
      ]),
    ),
    ...table(
      "PostgreSQL: CPU by process (seconds in the window)",
      ["process", "CPU s"],
      options.processes.map(([name, s]) => [name, fmt(s, 2)]),
    ),
  );
  return lines.join("\n");
}
