/**
 * CPU time per operation, from Linux's /proc: user + system time of the server process (all its
 * threads), of the bench's PostgreSQL cluster, and of the load generator, sampled at both ends of
 * a measured window.
 *
 * Which PostgreSQL processes count: the postmaster of the bench's own cluster (found through its
 * data directory's postmaster.pid, so other clusters on the machine never count) and every child
 * of it — backends, walwriter, checkpointer, background writer, autovacuum launcher and workers,
 * the logical replication launcher — plus the postmaster's "children's time" (cutime + cstime),
 * which holds the CPU of children that exited and were reaped inside the window (pgbench's
 * backends, autovacuum workers). Not counted: backends of the bench's own connections (those whose
 * application_name starts with `yxt-bench`: this meter's and the one that issues 付款码 for QR
 * load), whose CPU is reported apart as `bench`.
 */
import { join } from "node:path";

/** Linux reports times in /proc/<pid>/stat in USER_HZ ticks, 100 a second on every architecture. */
const TICKS_PER_SECOND = 100;

/** A process's own CPU (all threads) and its reaped children's, in seconds; null when it is gone. */
export function processCpu(pid: number): { own: number; children: number; ppid: number } | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return null;
  }
  // The command name (field 2) is in parentheses and may hold spaces: read after its last ")".
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // f[0] is field 3 (state): ppid is field 4, utime..cstime fields 14–17.
  const n = (i: number) => Number(f[i - 3]);
  return {
    ppid: n(4),
    own: (n(14) + n(15)) / TICKS_PER_SECOND,
    children: (n(16) + n(17)) / TICKS_PER_SECOND,
  };
}

/** Every live process whose parent is `ppid`. */
export function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const pid = Number(e.name);
    if (processCpu(pid)?.ppid === ppid) out.push(pid);
  }
  return out;
}

/** CPU seconds used so far, by side. */
export interface CpuSnapshot {
  /** performance.now() when taken. */
  at: number;
  server: number;
  db: number;
  /** The load generator: this process (with its reaped children: wrk, pgbench) and live helpers. */
  client: number;
  /** Backends of the bench's own connections (not in `db`). */
  bench: number;
}

/** CPU used between two snapshots, in seconds, and the window's length. */
export interface CpuUse {
  seconds: number;
  server: number;
  db: number;
  client: number;
  bench: number;
}

/** The difference of two snapshots. */
export function cpuBetween(a: CpuSnapshot, b: CpuSnapshot): CpuUse {
  return {
    seconds: (b.at - a.at) / 1000,
    server: b.server - a.server,
    db: b.db - a.db,
    client: b.client - a.client,
    bench: b.bench - a.bench,
  };
}

/** The minimal query interface the meter needs (a `pg` client). */
interface Queryable {
  query(text: string, params?: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
  end(): Promise<void>;
}

/** Samples the CPU of the server, the bench's PostgreSQL cluster and the load generator. */
export class CpuMeter {
  /** The server process measured; null while none runs (its CPU then reads 0). */
  serverPid: number | null = null;

  private constructor(
    private readonly client: Queryable,
    private readonly dataDir: string,
  ) {}

  /**
   * A meter for the cluster whose data directory is `dataDir`, with its own connection (named
   * `yxt-bench-meter`, so its backend is not counted) to `url`.
   */
  static async open(url: string, dataDir: string): Promise<CpuMeter> {
    const { default: pg } = await import("pg");
    const client = new pg.Client({ connectionString: url, application_name: "yxt-bench-meter" });
    await client.connect();
    return new CpuMeter(client, dataDir);
  }

  /** The postmaster's pid, from the first line of postmaster.pid. */
  postmasterPid(): number {
    const text = Deno.readTextFileSync(join(this.dataDir, "postmaster.pid"));
    return Number(text.split("\n")[0]);
  }

  /** Pids of backends whose application_name starts with `name`. */
  async backends(name: string): Promise<number[]> {
    const r = await this.client.query(
      "select pid from pg_stat_activity where application_name like $1",
      [`${name}%`],
    );
    return r.rows.map((row) => Number(row.pid));
  }

  /**
   * The cluster's CPU so far, split into what counts and the bench's own backends. A child reaped
   * while the children are being read would be counted twice or not at all (its time moves into
   * the postmaster's children's time): the postmaster is read before and after, and the reading
   * is taken again when its children's time moved in between.
   */
  async #cluster(): Promise<{ db: number; bench: number }> {
    const excluded = new Set(await this.backends("yxt-bench"));
    const postmaster = this.postmasterPid();
    for (let attempt = 0;; attempt++) {
      const pm = processCpu(postmaster);
      if (!pm) throw new Error(`PostgreSQL's postmaster (pid ${postmaster}) is gone`);
      let db = pm.own + pm.children;
      let bench = 0;
      for (const pid of childrenOf(postmaster)) {
        const c = processCpu(pid);
        if (!c) continue;
        if (excluded.has(pid)) bench += c.own;
        else db += c.own;
      }
      if (processCpu(postmaster)?.children === pm.children || attempt >= 20) return { db, bench };
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Waits until none of `pids` is a live or unreaped process (at most `ms`). */
  async gone(pids: number[], ms = 10_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (pids.some((pid) => processCpu(pid) !== null) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** A snapshot now; `helpers` are live processes of the load generator (a running pgbench). */
  async sample(helpers: number[] = []): Promise<CpuSnapshot> {
    const { db, bench } = await this.#cluster();
    const server = this.serverPid ? processCpu(this.serverPid) : null;
    const self = processCpu(Deno.pid);
    let client = self ? self.own + self.children : 0;
    for (const pid of helpers) client += processCpu(pid)?.own ?? 0;
    return {
      at: performance.now(),
      server: server ? server.own + server.children : 0,
      db,
      client,
      bench,
    };
  }

  /** CPU seconds of each live process of the cluster by its title ("walwriter", "yxt …"), for profiles. */
  clusterByTitle(): Map<string, number> {
    const out = new Map<string, number>();
    const postmaster = this.postmasterPid();
    for (const pid of [postmaster, ...childrenOf(postmaster)]) {
      const c = processCpu(pid);
      if (!c) continue;
      let title = "postmaster";
      if (pid !== postmaster) {
        const cmd = Deno.readTextFileSync(`/proc/${pid}/cmdline`).replaceAll("\0", " ").trim();
        // "postgres: walwriter", "postgres: postgres yxt 127.0.0.1(5432) idle": the role of the
        // process, with a backend's database (not its address and state).
        const words = cmd.replace(/^postgres:\s*/, "").split(/\s+/);
        title = /^\d|\(/.test(words[2] ?? "") ? `backend ${words[1]}` : words.slice(0, 3).join(" ");
      }
      out.set(title, (out.get(title) ?? 0) + c.own);
      if (pid === postmaster) out.set("exited children (reaped)", c.children);
    }
    return out;
  }

  /**
   * What the cluster is doing besides the meter: each autovacuum worker with its table, and each
   * other active query by its first words (over the meter's own connection: no new backend).
   */
  async activity(): Promise<string[]> {
    const r = await this.client.query(
      `select backend_type as kind, query from pg_stat_activity
        where pid <> pg_backend_pid() and state is distinct from 'idle'
          and backend_type in ('autovacuum worker', 'client backend')`,
    );
    return r.rows.map((row) => {
      const query = String(row.query).replace(/\s+/g, " ").trim();
      return row.kind === "autovacuum worker"
        ? query.replace(/^autovacuum:\s*/, "autovacuum ")
        : `query ${query.slice(0, 40)}…`;
    });
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => {});
  }
}
