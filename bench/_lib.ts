/**
 * Shared plumbing of the benchmark and the soak: child processes, a throwaway PostgreSQL, the real
 * server as a subprocess, free loopback ports, percentiles, and the results table.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (bench/..). */
export const ROOT = fileURLToPath(new URL("../", import.meta.url));

/** Output directory for logs and scratch files (ignored by git). */
export const OUT = join(ROOT, "bench/out");

/** Runs a command to completion and returns its exit code and output as text. */
export async function run(
  cmd: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(cmd, {
    args,
    env: options.env,
    cwd: options.cwd ?? ROOT,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timer: ReturnType<typeof setTimeout> | undefined;
  if (options.timeoutMs) {
    timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
    }, options.timeoutMs);
  }
  const out = await child.output();
  clearTimeout(timer);
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A free TCP port on the loopback interface. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The p-th percentile (0–100) of already sorted values, nearest rank. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

/** Resident memory of a process in bytes (Linux /proc), or null when it is gone. */
export function rssBytes(pid: number): number | null {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** A random secret of 64 hex characters. */
export function randomHex(bytes = 32): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

const PG_BIN = (() => {
  try {
    const dirs = [...Deno.readDirSync("/usr/lib/postgresql")].map((e) => e.name)
      .sort((a, b) => Number(a) - Number(b));
    return dirs.length ? `/usr/lib/postgresql/${dirs.at(-1)}/bin` : "";
  } catch {
    return "";
  }
})();

/** Path of a PostgreSQL binary (pgbench, pg_ctl, postgres). */
export function pgBinary(name: string): string {
  return PG_BIN ? `${PG_BIN}/${name}` : name;
}

/** A throwaway PostgreSQL cluster started by .ci/start_postgres.sh. */
export interface Postgres {
  /** Connection string of the `postgres` database. */
  url: string;
  dir: string;
  /** The connection string of another database on the same server. */
  urlFor(database: string): string;
  /** Creates a database (dropping an old one of the same name). */
  createDatabase(name: string): Promise<string>;
  /** Restarts the server (fast shutdown: open connections are cut). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

function asPostgresUser(cmd: string, args: string[]): [string, string[]] {
  return Deno.uid() === 0 ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
}

/** Starts a throwaway cluster in a fresh temporary directory. */
export async function startPostgres(tag: string): Promise<Postgres> {
  const dir = join(Deno.env.get("TMPDIR") ?? "/tmp", `yxt-${tag}-pg-${Deno.pid}`);
  const r = await run("bash", [join(ROOT, ".ci/start_postgres.sh"), dir], { timeoutMs: 120_000 });
  const m = /DATABASE_URL=(\S+)/.exec(r.stdout);
  if (r.code !== 0 || !m) {
    throw new Error(`Cannot start PostgreSQL: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
  }
  const url = m[1];
  const pgCtl = async (...args: string[]) => {
    const [c, a] = asPostgresUser(pgBinary("pg_ctl"), ["-D", join(dir, "data"), ...args]);
    const res = await run(c, a, { timeoutMs: 120_000 });
    if (res.code !== 0) throw new Error(`pg_ctl ${args[0]} failed: ${res.stderr || res.stdout}`);
  };
  const urlFor = (database: string) => {
    const u = new URL(url);
    u.pathname = `/${database}`;
    return u.toString();
  };
  return {
    url,
    dir,
    urlFor,
    async createDatabase(name) {
      await psql(url, `drop database if exists ${name} with (force)`);
      await psql(url, `create database ${name}`);
      return urlFor(name);
    },
    async restart() {
      await pgCtl("restart", "-m", "fast", "-w", "-l", join(dir, "server.log"));
    },
    async stop() {
      try {
        await pgCtl("stop", "-m", "fast", "-w");
      } finally {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
  };
}

/** Runs one SQL statement with psql-free plumbing (the `pg` client) and returns the rows. */
export async function psql<T = Record<string, unknown>>(
  url: string,
  text: string,
  params: unknown[] = [],
): Promise<T[]> {
  const { default: pg } = await import("pg");
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const r = await client.query(text, params);
    return r.rows as T[];
  } finally {
    await client.end();
  }
}

// ---------------------------------------------------------------------------------------------
// The server under test

/** The real server (`deno run -A main.ts`) as a child process. */
export interface Server {
  proc: Deno.ChildProcess;
  pid: number;
  port: number;
  terminalPort: number;
  /** http://127.0.0.1:port */
  url: string;
  env: Record<string, string>;
  logPath: string;
  /** Sends a signal and waits for the exit; returns the exit code. */
  stop(signal?: Deno.Signal, timeoutMs?: number): Promise<number>;
  exited: Promise<Deno.CommandStatus>;
}

/** Environment for a server of the bench or soak: loopback only, fixed secrets, sandbox gateway. */
export function serverEnv(options: {
  databaseUrl: string | null;
  dataDir: string;
  appSecret: string;
  cardPepper: string;
  extra?: Record<string, string>;
}): Record<string, string> {
  const port = freePort();
  let terminalPort = freePort();
  while (terminalPort === port) terminalPort = freePort();
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/tmp",
    DENO_DIR: Deno.env.get("DENO_DIR") ?? "",
    NO_COLOR: "1",
    DENO_NO_UPDATE_CHECK: "1",
    HOST: "127.0.0.1",
    PORT: String(port),
    TERMINAL_PORT: String(terminalPort),
    DATA_DIR: options.dataDir,
    APP_SECRET: options.appSecret,
    CARD_PEPPER: options.cardPepper,
    BASE_URL: `http://127.0.0.1:${port}`,
    PAYMENT_GATEWAY: "sandbox",
    ALLOW_SANDBOX_GATEWAY: "1",
    SEED_DEMO: "0",
    // Production mode (DATABASE_URL) keeps mail in the development outbox only when asked to.
    MAIL_OUTBOX: "1",
    ...options.extra,
  };
  if (!env.DENO_DIR) delete env.DENO_DIR;
  if (options.databaseUrl) env.DATABASE_URL = options.databaseUrl;
  return env;
}

/**
 * Starts main.ts with `env` and waits until /healthz answers 200. `root` is the release to run
 * (a copy of the repository, e.g. the drill's next release); this repository by default.
 * `denoFlags` go before main.ts (the bench's profiling runs the server under `--cpu-prof`).
 */
export async function startServer(
  env: Record<string, string>,
  logName: string,
  options: { root?: string; denoFlags?: string[] } = {},
): Promise<Server> {
  await Deno.mkdir(OUT, { recursive: true });
  const logPath = join(OUT, `${logName}.log`);
  const log = await Deno.open(logPath, { create: true, append: true, write: true });
  const proc = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...(options.denoFlags ?? []), "main.ts"],
    cwd: options.root ?? ROOT,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Both streams go to one log file; the pipes are drained so the server never blocks on them.
  const pump = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream) await log.write(chunk).catch(() => 0);
  };
  const pumps = Promise.all([pump(proc.stdout), pump(proc.stderr)]).finally(() => log.close());
  const port = Number(env.PORT);
  const url = `http://127.0.0.1:${port}`;
  let done = false;
  const exited = proc.status.then(async (s) => {
    done = true;
    await pumps.catch(() => {});
    return s;
  });
  const deadline = Date.now() + 90_000;
  while (true) {
    if (done) {
      const tail = (await Deno.readTextFile(logPath).catch(() => "")).slice(-800);
      throw new Error(`Server exited during start: ${tail}`);
    }
    try {
      const res = await fetch(`${url}/healthz`);
      await res.body?.cancel();
      if (res.status === 200) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error("Server did not answer /healthz within 90 s");
    }
    await delay(100);
  }
  return {
    proc,
    pid: proc.pid,
    port,
    terminalPort: Number(env.TERMINAL_PORT),
    url,
    env,
    logPath,
    exited,
    async stop(signal: Deno.Signal = "SIGTERM", timeoutMs = 30_000) {
      if (!done) {
        try {
          proc.kill(signal);
        } catch { /* gone */ }
      }
      const timer = setTimeout(() => {
        try {
          proc.kill("SIGKILL");
        } catch { /* gone */ }
      }, timeoutMs);
      const s = await exited;
      clearTimeout(timer);
      return s.code;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Results

/** One line of the results table. */
export interface Row {
  section: string;
  figure: string;
  value: string;
  target?: string;
  /** "ratio 1.23 ×" or a verdict such as "met" / "missed". */
  verdict?: string;
}

/** Formats a number with at most `digits` decimals, thousands separated. */
export function fmt(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return String(n);
  return n.toLocaleString("en-US", {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });
}

/** "met" or "missed" for a figure against a bound. */
export function verdict(ok: boolean): string {
  return ok ? "met" : "**missed**";
}
