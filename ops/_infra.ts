/**
 * The real components of the drill, on loopback: nginx (TLS, HTTP), HAProxy (readers), pgbouncer
 * and PostgreSQL clusters (primary, synchronous standby, archive, point-in-time restore). Each
 * runs from the example configuration in deploy/ with only ports and paths substituted.
 */
import { join } from "node:path";
import { delay, freePort, pgBinary, psql, ROOT, run } from "../bench/_lib.ts";

/** A child process of the drill, its output in a log file. */
export interface Daemon {
  name: string;
  pid: number;
  logPath: string;
  exited: Promise<Deno.CommandStatus>;
  stop(signal?: Deno.Signal): Promise<void>;
}

/** Starts `cmd` in the foreground as a child; both streams go to `logPath`. */
export async function spawnDaemon(
  name: string,
  cmd: string,
  args: string[],
  logPath: string,
): Promise<Daemon> {
  const log = await Deno.open(logPath, { create: true, append: true, write: true });
  const child = new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .spawn();
  const pump = async (s: ReadableStream<Uint8Array>) => {
    for await (const chunk of s) await log.write(chunk).catch(() => 0);
  };
  const pumps = Promise.all([pump(child.stdout), pump(child.stderr)]).finally(() => log.close());
  const exited = child.status.then(async (s) => {
    await pumps.catch(() => {});
    return s;
  });
  let done = false;
  exited.then(() => done = true);
  return {
    name,
    pid: child.pid,
    logPath,
    exited,
    async stop(signal: Deno.Signal = "SIGTERM") {
      if (done) return;
      try {
        child.kill(signal);
      } catch { /* gone */ }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* gone */ }
      }, 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Polls `probe` until it returns a value (not null) or throws after `ms`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | null> | T | null,
  ms = 60_000,
  every = 100,
): Promise<T> {
  const until = Date.now() + ms;
  let last = "";
  while (Date.now() < until) {
    try {
      const v = await probe();
      if (v !== null) return v;
    } catch (err) {
      last = (err as Error).message;
    }
    await delay(every);
  }
  throw new Error(`Timed out waiting for ${what}${last ? `: ${last}` : ""}`);
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export async function listening(port: number): Promise<boolean> {
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    c.close();
    return true;
  } catch {
    return false;
  }
}

function asPostgres(cmd: string, args: string[]): [string, string[]] {
  return Deno.uid() === 0 ? ["runuser", ["-u", "postgres", "--", cmd, ...args]] : [cmd, args];
}

/** Runs a command as the postgres user (when root); throws with its output on failure. */
export async function runAsPostgres(cmd: string, args: string[], timeoutMs = 300_000) {
  const [c, a] = asPostgres(cmd, args);
  const r = await run(c, a, { timeoutMs });
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${(r.stderr || r.stdout).slice(0, 500)}`);
  }
  return r;
}

/** A directory the postgres user owns (PostgreSQL refuses data directories of other users). */
export async function postgresDir(path: string): Promise<string> {
  await Deno.remove(path, { recursive: true }).catch(() => {});
  await Deno.mkdir(path, { recursive: true });
  if (Deno.uid() === 0) {
    const r = await run("chown", ["postgres:postgres", path]);
    if (r.code !== 0) throw new Error(`chown ${path}: ${r.stderr}`);
  }
  return path;
}

/** A PostgreSQL cluster the drill manages directly (standby, restored copy). */
export interface Cluster {
  dir: string;
  data: string;
  port: number;
  url(database?: string): string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /**
   * Every process of the cluster SIGKILLed at once: the machine died. Resolves, once they are
   * gone, with the moment the signals were sent.
   */
  kill(): Promise<number>;
}

/** A cluster whose data directory is (to be) at `dir/data`, serving on `port`. */
export function cluster(dir: string, port: number): Cluster {
  const data = join(dir, "data");
  const ctl = (...args: string[]) => runAsPostgres(pgBinary("pg_ctl"), ["-D", data, ...args]);
  return {
    dir,
    data,
    port,
    url: (database = "postgres") => `postgres://postgres@127.0.0.1:${port}/${database}`,
    async start() {
      await ctl("start", "-w", "-t", "300", "-l", join(dir, "server.log"));
    },
    async stop() {
      await ctl("stop", "-m", "fast", "-w").catch(() => {});
    },
    async kill() {
      const text = await Deno.readTextFile(join(data, "postmaster.pid"));
      const postmaster = Number(text.split("\n")[0]);
      const pids = [postmaster, ...childrenOf(postmaster)];
      for (const pid of pids) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone already */ }
      }
      const killedAt = Date.now();
      await waitFor(
        "the killed cluster to be gone",
        () => pids.some((p) => exists(`/proc/${p}`)) ? null : true,
        10_000,
      );
      return killedAt;
    },
  };
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Pids whose parent is `pid` (Linux /proc). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) out.push(Number(e.name));
    } catch { /* exited meanwhile */ }
  }
  return out;
}

/** Appends settings to a cluster's postgresql.conf. */
export async function configure(c: Cluster, lines: string[]): Promise<void> {
  await Deno.writeTextFile(join(c.data, "postgresql.conf"), "\n" + lines.join("\n") + "\n", {
    append: true,
  });
}

/**
 * A synchronous streaming standby of the primary on `primaryPort`, made with pg_basebackup as the
 * `replicator` role (createReplicator) and named `standby1` (its application_name on the primary).
 */
export async function startStandby(dir: string, primaryPort: number): Promise<Cluster> {
  await postgresDir(dir);
  const standby = cluster(dir, freePort());
  await runAsPostgres(pgBinary("pg_basebackup"), [
    "-h",
    "127.0.0.1",
    "-p",
    String(primaryPort),
    "-U",
    "replicator",
    "-D",
    standby.data,
    "-X",
    "stream",
    "-c",
    "fast",
    "-R",
  ]);
  await configure(standby, [
    `port = ${standby.port}`,
    `unix_socket_directories = '${dir}'`,
    "cluster_name = 'standby1'",
    "hot_standby = on",
  ]);
  await standby.start();
  return standby;
}

/** Makes `standby1` the synchronous standby of the primary and waits until it is in sync. */
export async function requireSynchronousStandby(primaryUrl: string): Promise<void> {
  await psql(primaryUrl, "alter system set synchronous_standby_names = 'standby1'");
  await psql(primaryUrl, "alter system set synchronous_commit = 'on'");
  await psql(primaryUrl, "select pg_reload_conf()");
  await waitFor("the standby to be synchronous", async () => {
    const rows = await psql<{ sync_state: string }>(
      primaryUrl,
      "select sync_state from pg_stat_replication where application_name = 'standby1'",
    );
    return rows[0]?.sync_state === "sync" ? true : null;
  });
}

// ---------------------------------------------------------------------------------------------
// nginx, HAProxy, pgbouncer from deploy/

/**
 * A throwaway certificate authority and a server certificate for 127.0.0.1 signed by it
 * (openssl), as PEM files in `dir`; `ca` is what a client trusts.
 */
export async function testCertificate(
  dir: string,
): Promise<{ ca: string; cert: string; key: string }> {
  const [ca, caKey, cert, key, csr] = ["ca.pem", "ca-key.pem", "cert.pem", "key.pem", "cert.csr"]
    .map((f) => join(dir, f));
  const ext = join(dir, "cert.ext");
  await Deno.writeTextFile(
    ext,
    "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
  );
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  for (
    const args of [
      [
        "req",
        "-x509",
        ...ec,
        "-days",
        "2",
        "-subj",
        "/CN=yixintong drill CA",
        "-keyout",
        caKey,
        "-out",
        ca,
      ],
      ["req", ...ec, "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr],
      [
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca,
        "-CAkey",
        caKey,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        ext,
        "-out",
        cert,
      ],
    ]
  ) {
    const r = await run("openssl", args);
    if (r.code !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
  }
  return { ca, cert, key };
}

/** Replaces each `from` with its `to` in `text`, insisting that every `from` occurs. */
function substitute(text: string, pairs: Array<[string | RegExp, string]>): string {
  for (const [from, to] of pairs) {
    const before = text;
    text = typeof from === "string" ? text.replaceAll(from, to) : text.replace(from, to);
    if (text === before) throw new Error(`deploy example changed: ${String(from)} not found`);
  }
  return text;
}

/** nginx running deploy/nginx/yixintong.conf on loopback in front of `webPorts`. */
export async function startNginx(
  dir: string,
  webPorts: [number, number],
  tls: { cert: string; key: string },
  httpsPort: number,
): Promise<Nginx> {
  const site = substitute(await Deno.readTextFile(join(ROOT, "deploy/nginx/yixintong.conf")), [
    ["127.0.0.1:8001", `127.0.0.1:${webPorts[0]}`],
    ["127.0.0.1:8002", `127.0.0.1:${webPorts[1]}`],
    ["listen 80;", `listen 127.0.0.1:${freePort()};`],
    ["listen 443 ssl;", `listen 127.0.0.1:${httpsPort} ssl;`],
    ["/etc/ssl/yixintong/fullchain.pem", tls.cert],
    ["/etc/ssl/yixintong/privkey.pem", tls.key],
  ]);
  await Deno.writeTextFile(join(dir, "yixintong.conf"), site);
  const conf = join(dir, "nginx.conf");
  await Deno.writeTextFile(
    conf,
    `daemon off;
worker_processes 1;
pid ${join(dir, "nginx.pid")};
error_log ${join(dir, "nginx-error.log")} warn;
events { worker_connections 1024; }
http {
  access_log ${join(dir, "nginx-access.log")};
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  include ${join(dir, "yixintong.conf")};
}
`,
  );
  const args = ["-p", dir, "-c", conf, "-e", join(dir, "nginx-error.log")];
  const d = await spawnDaemon("nginx", "nginx", args, join(dir, "nginx.out"));
  await waitFor("nginx to listen", async () => (await listening(httpsPort)) ? true : null, 15_000);
  return {
    ...d,
    httpsPort,
    async drain(port) {
      const line = (p: number) => `server 127.0.0.1:${p} max_fails=1 fail_timeout=3s;`;
      const text = port === null
        ? site
        : substitute(site, [[line(port), `server 127.0.0.1:${port} down;`]]);
      await Deno.writeTextFile(join(dir, "yixintong.conf"), text);
      // A reload starts new workers with the new upstream list; the old ones finish the requests
      // they have, then exit. Once they are gone, nothing is sent to a drained instance.
      const old = childrenOf(d.pid);
      const r = await run("nginx", [...args, "-s", "reload"]);
      if (r.code !== 0) throw new Error(`nginx -s reload: ${r.stderr}`);
      await waitFor(
        "nginx's old workers to finish",
        () => old.some((p) => exists(`/proc/${p}`)) ? null : true,
        30_000,
        50,
      );
    },
  };
}

/** nginx from deploy/nginx, and the operator's step around a restart. */
export interface Nginx extends Daemon {
  httpsPort: number;
  /**
   * Takes the instance on `port` out of the upstream (`down`, then `nginx -s reload`), or puts
   * every instance back with null; resolves once the old workers have finished.
   */
  drain(port: number | null): Promise<void>;
}

/** HAProxy running deploy/haproxy/haproxy.cfg on loopback in front of two instances. */
export async function startHaproxy(
  dir: string,
  instances: Array<{ terminalPort: number; port: number }>,
): Promise<Daemon & { port: number }> {
  const port = freePort();
  const cfg = substitute(await Deno.readTextFile(join(ROOT, "deploy/haproxy/haproxy.cfg")), [
    ["bind 127.0.0.1:9000", `bind 127.0.0.1:${port}`],
    [
      "server app1 127.0.0.1:9001 check port 8001",
      `server app1 127.0.0.1:${instances[0].terminalPort} check port ${instances[0].port}`,
    ],
    [
      "server app2 127.0.0.1:9002 check port 8002",
      `server app2 127.0.0.1:${instances[1].terminalPort} check port ${instances[1].port}`,
    ],
  ]);
  const path = join(dir, "haproxy.cfg");
  await Deno.writeTextFile(path, cfg);
  const d = await spawnDaemon("haproxy", "haproxy", ["-db", "-f", path], join(dir, "haproxy.log"));
  await waitFor("HAProxy to listen", async () => (await listening(port)) ? true : null, 15_000);
  return { ...d, port };
}

/** pgbouncer running deploy/pgbouncer/pgbouncer.ini (trust on loopback) towards `target`. */
export interface Pgbouncer {
  port: number;
  /** A connection string through pgbouncer, as `user` (the app's role by default). */
  url(database: string, user?: string): string;
  /** Points `database` at another server and reloads (the failover step). */
  repoint(database: string, targetPort: number): Promise<void>;
  stop(): Promise<void>;
}

/** Starts pgbouncer as the postgres user with the example configuration. */
export async function startPgbouncer(
  dir: string,
  database: string,
  targetPort: number,
): Promise<Pgbouncer> {
  await postgresDir(dir);
  const port = freePort();
  const template = await Deno.readTextFile(join(ROOT, "deploy/pgbouncer/pgbouncer.ini"));
  const ini = join(dir, "pgbouncer.ini");
  const write = async (target: number) => {
    const text = substitute(template, [
      [
        "yixintong = host=10.0.0.11 port=5432 dbname=yixintong",
        `${database} = host=127.0.0.1 port=${target} dbname=${database}`,
      ],
      ["listen_port = 6432", `listen_port = ${port}`],
      // Loopback-only drill: trust, as the drill's PostgreSQL clusters do.
      ["auth_type = scram-sha-256", "auth_type = trust"],
      ["/etc/pgbouncer/userlist.txt", join(dir, "userlist.txt")],
      ["admin_users = pgbouncer_admin", "admin_users = postgres"],
    ]) + `logfile = ${join(dir, "pgbouncer.log")}\npidfile = ${join(dir, "pgbouncer.pid")}\n` +
      `unix_socket_dir = ${dir}\n`;
    await Deno.writeTextFile(ini, text);
  };
  await Deno.writeTextFile(join(dir, "userlist.txt"), `"postgres" ""\n"${APP_ROLE}" ""\n`);
  await write(targetPort);
  if (Deno.uid() === 0) await run("chown", ["-R", "postgres:postgres", dir]);
  await runAsPostgres("pgbouncer", ["-d", ini]);
  await waitFor("pgbouncer to listen", async () => (await listening(port)) ? true : null, 15_000);
  const url = (db: string, user = APP_ROLE) => `postgres://${user}@127.0.0.1:${port}/${db}`;
  return {
    port,
    url,
    async repoint(db, target) {
      if (db !== database) throw new Error(`Cannot repoint ${db}: pgbouncer serves ${database}`);
      await write(target);
      // The admin console speaks only the simple query protocol (no parameters).
      const { default: pg } = await import("pg");
      const admin = new pg.Client({ connectionString: url("pgbouncer", "postgres") });
      await admin.connect();
      try {
        await admin.query("RELOAD");
      } finally {
        await admin.end();
      }
    },
    async stop() {
      const pid = Number(
        (await Deno.readTextFile(join(dir, "pgbouncer.pid")).catch(() => "")).trim(),
      );
      if (pid > 0) {
        try {
          Deno.kill(pid, "SIGTERM");
        } catch { /* gone */ }
        await waitFor("pgbouncer to stop", () => exists(`/proc/${pid}`) ? null : true, 10_000)
          .catch(() => {});
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The app side: the systemd unit's settings, releases, `deno task migrate`, /metrics

/** What the drill takes from deploy/systemd/yixintong@.service (systemd itself does not run). */
export interface Unit {
  /** The unit's `Environment=` settings of instance `i` (%i substituted). */
  environment(i: number): Record<string, string>;
  killSignal: Deno.Signal;
  stopTimeoutMs: number;
}

/** Reads the example unit; throws when a setting the drill uses is gone from it. */
export async function systemdUnit(): Promise<Unit> {
  const lines = (await Deno.readTextFile(join(ROOT, "deploy/systemd/yixintong@.service")))
    .split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  const value = (key: string) => {
    const line = lines.find((l) => l.startsWith(`${key}=`));
    if (!line) throw new Error(`deploy example changed: no ${key}= in the systemd unit`);
    return line.slice(key.length + 1);
  };
  const envLines = lines.filter((l) => l.startsWith("Environment="))
    .map((l) => l.slice("Environment=".length));
  const timeout = /^(\d+)s?$/.exec(value("TimeoutStopSec"));
  if (!envLines.length || !timeout) {
    throw new Error("deploy example changed: the unit's Environment= or TimeoutStopSec=");
  }
  return {
    environment(i) {
      const env: Record<string, string> = {};
      for (const pair of envLines.flatMap((l) => l.split(/\s+/))) {
        const eq = pair.indexOf("=");
        env[pair.slice(0, eq)] = pair.slice(eq + 1).replaceAll("%i", String(i));
      }
      return env;
    },
    killSignal: value("KillSignal") as Deno.Signal,
    stopTimeoutMs: Number(timeout[1]) * 1000,
  };
}

/**
 * The next release for a rolling upgrade: a copy of this one in `dir` with the `migrations` added
 * (file name → source), sharing this one's installed dependencies.
 */
export async function nextRelease(
  dir: string,
  migrations: Record<string, string>,
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const parts = ["main.ts", "deno.json", "deno.lock", "modules", "terminal", "views", "static"];
  for (const part of [...parts, "migrations"]) {
    const r = await run("cp", ["-R", join(ROOT, part), dir]);
    if (r.code !== 0) throw new Error(`Cannot copy the release: ${r.stderr}`);
  }
  await Deno.symlink(join(ROOT, "node_modules"), join(dir, "node_modules"));
  for (const [name, source] of Object.entries(migrations)) {
    await Deno.writeTextFile(join(dir, "migrations", name), source);
  }
  return dir;
}

/** `deno task migrate` of the release in `root` with `env`; its one line of output. */
export async function migrateTask(root: string, env: Record<string, string>): Promise<string> {
  const r = await run(Deno.execPath(), ["task", "--quiet", "migrate"], {
    env,
    cwd: root,
    timeoutMs: 120_000,
  });
  if (r.code !== 0) throw new Error(`deno task migrate failed: ${(r.stderr || r.stdout).trim()}`);
  return r.stdout.trim();
}

/** The reader connections an instance holds now (its /metrics, read from loopback). */
export async function readerConnections(httpPort: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
  const text = await res.text();
  const m = /^yxt_terminal_connections (\d+)$/m.exec(text);
  if (res.status !== 200 || !m) {
    throw new Error(`/metrics on ${httpPort} answered ${res.status} without reader connections`);
  }
  return Number(m[1]);
}

/** A role that may stream WAL (for pg_basebackup), as OPERATIONS.md §7 has it. */
export async function createReplicator(primaryUrl: string): Promise<void> {
  await psql(primaryUrl, "create role replicator with login replication");
}

/** The app's PostgreSQL role (OPERATIONS.md §1): no superuser, owner of its database. */
export const APP_ROLE = "yixintong";

/**
 * The app's role and database as OPERATIONS.md §1 creates them, on the server of `adminUrl` (a
 * superuser's); returns the app's connection string (loopback trust, so no password).
 */
export async function appDatabase(adminUrl: string, name: string): Promise<string> {
  await psql(
    adminUrl,
    `do $$ begin create role ${APP_ROLE} login; exception when duplicate_object then null; end $$`,
  );
  await psql(adminUrl, `drop database if exists ${name} with (force)`);
  await psql(
    adminUrl,
    `create database ${name} owner ${APP_ROLE} encoding 'UTF8' template template0`,
  );
  await psql(adminUrl, `alter database ${name} set plan_cache_mode = force_generic_plan`);
  const u = new URL(adminUrl);
  u.username = APP_ROLE;
  u.pathname = `/${name}`;
  return u.toString();
}
