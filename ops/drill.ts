/**
 * `deno task drill [--short] [--only roll,failover,restore]`: what docs/OPERATIONS.md promises, done
 * for real on loopback, under load (readers paying through HAProxy, web users through nginx):
 *
 *   1. rolling upgrade and roll-back: two instances behind nginx (TLS) and HAProxy (readers); the
 *      next release's `deno task migrate` while this one serves, each instance upgraded in turn
 *      (out of nginx, SIGTERM, started from the next release), then one rolled back. No web
 *      request may fail, every reader of a stopped instance must reconnect to the other, every
 *      resent reader request be answered once.
 *   2. failover: a PostgreSQL primary with a synchronous standby (pg_basebackup,
 *      synchronous_standby_names, synchronous_commit = on) behind pgbouncer, two instances behind
 *      nginx and HAProxy; the primary and all its processes SIGKILLed, the standby promoted,
 *      pgbouncer re-pointed and reloaded. The app only reconnects, within RECOVERY_BOUND_MS.
 *   3. point-in-time restore: a base backup taken under load plus archived WAL, restored into a
 *      fresh cluster to a chosen moment.
 *
 * After each: every payment, top-up and utility purchase acknowledged (before the kill, before the
 * chosen moment) is in the ledger exactly once, and the ledger verifier passes. It prints a table
 * and exits 1 when any acknowledged transaction is lost or doubled or any check fails.
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  delay,
  fmt,
  freePort,
  OUT,
  pgBinary,
  psql,
  randomHex,
  ROOT,
  run,
  type Server,
  serverEnv,
  startPostgres,
  startServer,
} from "../bench/_lib.ts";
import { openWorld } from "../bench/_world.ts";
import { WebClient } from "../bench/_http.ts";
import {
  APP_ROLE,
  appDatabase,
  cluster,
  configure,
  createReplicator,
  type Daemon,
  migrateTask,
  nextRelease,
  type Nginx,
  postgresDir,
  readerConnections,
  requireSynchronousStandby,
  runAsPostgres,
  startHaproxy,
  startNginx,
  startPgbouncer,
  startStandby,
  systemdUnit,
  testCertificate,
  waitFor,
} from "./_infra.ts";
import {
  buildWorld,
  checkResent,
  Load,
  settlePurchases,
  type Verdict,
  verify,
} from "./_drill_load.ts";
import { NEWER_ADDITIVE_MIGRATION } from "../modules/platform/testing.ts";

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    short: { type: "boolean", default: false },
    only: { type: "string", default: "roll,failover,restore" },
  },
});
const SHORT = opts.short!;
const PHASES = new Set(opts.only!.split(","));
/** Seconds of load per phase, readers, web users, pause between one client's requests (ms). */
const SIZE = SHORT
  ? { seconds: 16, readers: 4, students: 2, pace: 50 }
  : { seconds: 60, readers: 8, students: 4, pace: 25 };
const TMP = Deno.env.get("TMPDIR") ?? "/tmp";
const DIR = join(OUT, "drill");
const secrets = { appSecret: randomHex(), cardPepper: randomHex() };
const log = (msg: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);

interface Row {
  phase: string;
  recover: string;
  failed: string;
  acknowledged: number;
  lost: number;
  doubled: number;
  ledger: string;
}
const rows: Row[] = [];
const failures: string[] = [];
const cleanups: Array<() => Promise<unknown>> = [];

function judge(phase: string, v: Verdict, extra: string[] = []): void {
  for (const l of v.lost.slice(0, 5)) failures.push(`${phase}: acknowledged but missing: ${l}`);
  for (const d of v.doubled.slice(0, 5)) failures.push(`${phase}: recorded more than once: ${d}`);
  for (const m of v.balanceMismatches.slice(0, 5)) failures.push(`${phase}: ${m}`);
  for (const p of v.ledgerProblems) failures.push(`${phase}: ledger: ${p}`);
  for (const e of extra) failures.push(`${phase}: ${e}`);
}

function seconds(ms: number): string {
  return Number.isFinite(ms) ? `${fmt(ms / 1000, 1)} s` : "never";
}

function serverFor(databaseUrl: string, name: string, extra: Record<string, string> = {}) {
  return serverEnv({
    databaseUrl,
    dataDir: join(DIR, name),
    ...secrets,
    extra: { LOG_LEVEL: "warn", ...extra },
  });
}

async function readyz(port: number): Promise<boolean> {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => null);
  await res?.body?.cancel();
  return res?.status === 200;
}

/**
 * The bound the drill holds recovery to: readers and web users served again within this long of
 * the primary's death (measured: readers a median 3.5 s, at most 10 s; OPERATIONS.md §7), and
 * every reader of an instance that stops reconnected to the other one within this long.
 */
const RECOVERY_BOUND_MS = 15_000;

/** Two instances as deploy/ has them: the unit's settings, nginx (TLS) for HTTP, HAProxy for readers. */
interface Front {
  baseUrl: string;
  envs: Array<Record<string, string>>;
  servers: Server[];
  nginx: Nginx;
  haproxy: Daemon & { port: number };
}

async function startFront(tag: string, databaseUrl: string): Promise<Front> {
  const unit = await systemdUnit();
  const dir = join(DIR, tag);
  await Deno.mkdir(dir, { recursive: true });
  const httpsPort = freePort();
  const baseUrl = `https://127.0.0.1:${httpsPort}`;
  const envs = [1, 2].map((i) => {
    // The unit's settings; its ports and DATA_DIR are replaced by free ones on loopback.
    const { PORT: _p, TERMINAL_PORT: _t, DATA_DIR: _d, ...fromUnit } = unit.environment(i);
    return serverFor(databaseUrl, `${tag}-${i}`, { ...fromUnit, BASE_URL: baseUrl });
  });
  const servers: Server[] = [];
  cleanups.push(() => Promise.all(servers.map((s) => s.stop())));
  for (const [i, env] of envs.entries()) {
    servers.push(await startServer(env, `drill-${tag}-${i + 1}`));
  }
  const tls = await testCertificate(dir);
  const browsers = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(tls.ca)] });
  WebClient.httpClient = browsers;
  const nginx = await startNginx(
    await Deno.makeTempDir({ dir, prefix: "nginx-" }),
    [servers[0].port, servers[1].port],
    tls,
    httpsPort,
  );
  cleanups.push(() => nginx.stop("SIGQUIT"));
  const haproxy = await startHaproxy(dir, servers);
  cleanups.push(() => haproxy.stop());
  // First of these (cleanups run in reverse): nginx's graceful stop waits for kept-alive
  // connections, and these are the browsers'.
  cleanups.push(() => {
    browsers.close();
    WebClient.httpClient = undefined;
    return Promise.resolve();
  });
  return { baseUrl, envs, servers, nginx, haproxy };
}

/**
 * OPERATIONS.md §10 step 3 for instance `i`: out of nginx, stopped as systemd stops it, started
 * (from the release in `root`), ready, back into nginx. Checks on the way that every reader it had
 * reconnected through HAProxy to the other instance. Returns a line for the log.
 */
async function restartInstance(
  front: Front,
  i: number,
  load: Load,
  root: string | undefined,
  label: string,
  problems: string[],
): Promise<string> {
  const unit = await systemdUnit();
  const other = front.servers[1 - i];
  const readers = load.world.readers.length;
  const had = await readerConnections(front.servers[i].port);
  const reconnects = load.readerReconnects;
  const t0 = Date.now();
  // nginx (no active health checks) is told first, so that no request is on its way to the
  // instance when it closes its listener (docs/OPERATIONS.md, Upgrades).
  await front.nginx.drain(front.servers[i].port);
  log(`${unit.killSignal} instance ${i + 1} (pid ${front.servers[i].pid}; ${had} readers on it)`);
  const signalled = Date.now();
  const code = await front.servers[i].stop(unit.killSignal, unit.stopTimeoutMs);
  if (code !== 0) problems.push(`instance ${i + 1} exited ${code} on ${unit.killSignal}`);
  const stopped = Date.now();
  // Its readers, told nothing, reconnect to HAProxy's one address and land on the other instance.
  const moved = await waitFor(
    `every reader on instance ${2 - i}`,
    async () => (await readerConnections(other.port)) === readers ? Date.now() : null,
    RECOVERY_BOUND_MS,
  ).catch(() => null);
  if (moved === null) {
    problems.push(
      `${label}: readers on instance ${2 - i} ${await readerConnections(
        other.port,
      )} of ${readers} within ${seconds(RECOVERY_BOUND_MS)} of the stop`,
    );
  } else if (load.readerReconnects - reconnects < had) {
    problems.push(
      `${label}: ${had} readers were on instance ${i + 1} but only ${
        load.readerReconnects - reconnects
      } reconnected`,
    );
  }
  front.servers[i] = await startServer(front.envs[i], `drill-roll-${i + 1}`, { root });
  await waitFor(
    "the restarted instance to be ready",
    async () => (await readyz(front.servers[i].port)) ? true : null,
  );
  await front.nginx.drain(null);
  // HAProxy takes it back after two good checks (rise 2, inter 1 s).
  await delay(2500);
  return `${label}: instance ${i + 1} stopped in ${
    seconds(stopped - t0)
  }, its ${had} readers on instance ${2 - i} ${
    moved === null ? "NOT within the bound" : `${seconds(moved - signalled)} after the signal`
  }, back in ${seconds(Date.now() - t0)}`;
}

// ---------------------------------------------------------------------------------------------

async function rollingUpgrade(): Promise<void> {
  log("rolling upgrade: PostgreSQL, two instances, nginx (TLS) and HAProxy");
  const pg = await startPostgres("drill-roll");
  cleanups.push(() => pg.stop());
  const url = await appDatabase(pg.url, "yxt");
  const problems: string[] = [];
  // OPERATIONS.md §1: the schema by `deno task migrate` before the instances start.
  log(`deno task migrate: ${(await migrateTask(ROOT, serverFor(url, "migrate"))).slice(0, 60)}…`);
  const front = await startFront("roll", url);
  const world = await openWorld(url);
  cleanups.push(() => world.close());
  const w = await buildWorld(world.db, secrets, { tag: "R", ...SIZE, webUrl: front.baseUrl });
  const load = new Load(w, { port: front.haproxy.port }, { pace: SIZE.pace });
  const walStart = await walPosition(url);
  load.start();
  await delay(SIZE.seconds * 200);

  // §10 step 2: the next release's migrations while this release serves.
  const next = await nextRelease(join(DIR, "release-next"), NEWER_ADDITIVE_MIGRATION);
  const migrated = await migrateTask(next, serverFor(url, "migrate"));
  log(`next release: deno task migrate: ${migrated}`);
  if (!migrated.includes(Object.keys(NEWER_ADDITIVE_MIGRATION)[0].replace(/\.ts$/, ""))) {
    problems.push(`the next release's migrate applied nothing: ${migrated}`);
  }
  for (const [i, s] of front.servers.entries()) {
    if (!(await readyz(s.port))) {
      problems.push(`instance ${i + 1} (this release) not ready after the next one's migrations`);
    }
  }
  // §10 step 3: each instance upgraded in turn (old and new code serve together in between),
  // then instance 1 rolled back to this release on the database the next release migrated.
  const steps: Array<[number, string | undefined, string]> = [
    [0, next, "upgrade"],
    [1, next, "upgrade"],
    [0, undefined, "roll-back"],
  ];
  const restarts: string[] = [];
  for (const [i, root, label] of steps) {
    restarts.push(await restartInstance(front, i, load, root, label, problems));
    log(`instance ${i + 1} back (${label})`);
    await delay(SIZE.seconds * 200);
  }
  await load.stop();
  await load.settle();
  const halfPaid = await settlePurchases(world.db, load);
  const v = await verify(world.db, load, { balances: true });
  const failed = load.webErrors.length + load.webUnreachable.length + load.unanswered.length;
  judge("rolling upgrade", v, [
    ...problems,
    ...load.webErrors.slice(0, 5).map((e) => `web error a person would see: ${e.what}`),
    ...load.webUnreachable.slice(0, 5).map((e) => `web request unanswered: ${e.what}`),
    ...load.unanswered.slice(0, 5),
    ...(await checkResent(world.db, load)).slice(0, 5),
    ...(halfPaid ? [`${halfPaid} utility purchases still half-paid`] : []),
    ...(load.charged.size === 0 ? ["no reader payment was acknowledged"] : []),
  ]);
  rows.push({
    phase: `rolling upgrade and roll-back (${steps.length} restarts)`,
    recover: `longest reader wait ${seconds(load.longestReaderWait)}`,
    failed: `${failed} of ${fmt(load.webRequests + load.charged.size)}`,
    acknowledged: v.acknowledged,
    lost: v.lost.length,
    doubled: v.doubled.length,
    ledger: v.ledgerOk ? "OK" : "FAILED",
  });
  for (const r of restarts) log(r);
  log(`longest reader waits: ${load.slowestReaderWaits(5).join(", ")}`);
  log(
    `rolling upgrade: ${load.charged.size} reader payments, ${load.toppedUp.size} top-ups, ${load.purchased.size} utility purchases, ${load.webOk} web pages; readers reconnected ${load.readerReconnects} times through HAProxy and resent ${load.resent.length} payments (${load.readerResends} sends), each answered once; browsers resent ${load.browserResends} requests on a closed connection`,
  );
  await logSizing(url, load, walStart);
}

/** The server's WAL position now. */
async function walPosition(url: string): Promise<string> {
  const [{ lsn }] = await psql<{ lsn: string }>(url, "select pg_current_wal_lsn()::text as lsn");
  return lsn;
}

/** What a payment costs in WAL and on disk, measured (the sizing of OPERATIONS.md §9). */
async function logSizing(url: string, load: Load, walStart: string): Promise<void> {
  const [wal] = await psql<{ bytes: string }>(
    url,
    "select pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint::text as bytes",
    [walStart],
  );
  const tables: Array<{ name: string; rows: number; bytes: number }> = [];
  for (const name of ["ledger_transfers", "terminal_requests"]) {
    const [t] = await psql<{ rows: string; bytes: string }>(
      url,
      `select (select count(*) from ${name})::text as rows,
         pg_total_relation_size('${name}')::text as bytes`,
    );
    tables.push({ name, rows: Number(t.rows), bytes: Number(t.bytes) });
  }
  const writes = load.charged.size + load.toppedUp.size + load.purchased.size;
  log(
    `sizing: ${
      fmt(Number(wal.bytes) / Math.max(1, writes) / 1024, 1)
    } KB of WAL per acknowledged payment (${
      fmt(writes)
    } payments and the page views around them); ${
      tables.map((t) =>
        `${t.name} ${fmt(t.bytes / Math.max(1, t.rows))} bytes a row with indexes (${fmt(t.rows)})`
      ).join(", ")
    }`,
  );
}

// ---------------------------------------------------------------------------------------------

async function failover(): Promise<void> {
  log("failover: primary + synchronous standby, pgbouncer, two instances behind nginx and HAProxy");
  const primaryPg = await startPostgres("drill-primary");
  const primary = cluster(primaryPg.dir, Number(new URL(primaryPg.url).port));
  cleanups.push(() => primaryPg.stop().catch(() => {}));
  await createReplicator(primaryPg.url);
  const standby = await startStandby(join(TMP, `yxt-drill-standby-${Deno.pid}`), primary.port);
  cleanups.push(async () => {
    await standby.stop();
    await Deno.remove(standby.dir, { recursive: true }).catch(() => {});
  });
  await requireSynchronousStandby(primaryPg.url);
  // The database sets plan_cache_mode itself: pgbouncer does not pass the app's `options` on.
  await appDatabase(primaryPg.url, "yxt");
  const bouncerDir = join(TMP, `yxt-drill-pgbouncer-${Deno.pid}`);
  const bouncer = await startPgbouncer(bouncerDir, "yxt", primary.port);
  cleanups.push(async () => {
    await bouncer.stop();
    await Deno.remove(bouncerDir, { recursive: true }).catch(() => {});
  });
  log(
    `deno task migrate: ${
      (await migrateTask(ROOT, serverFor(bouncer.url("yxt"), "migrate"))).slice(0, 60)
    }…`,
  );
  const front = await startFront("failover", bouncer.url("yxt"));
  const setup = await openWorld(bouncer.url("yxt"));
  const w = await buildWorld(setup.db, secrets, { tag: "F", ...SIZE, webUrl: front.baseUrl });
  await setup.close();
  const load = new Load(w, { port: front.haproxy.port }, { pace: SIZE.pace });
  load.start();
  await delay(SIZE.seconds * 350);

  const killStarted = Date.now();
  log("SIGKILL every process of the primary");
  // Recovery counts from the signals (finding the processes first takes a moment, in which
  // payments may still be answered).
  const killedAt = await primary.kill();
  // The failover step an operator or a failover tool performs; the app is not told anything.
  await runAsPostgres(pgBinary("pg_ctl"), ["-D", standby.data, "promote", "-w"]);
  await bouncer.repoint("yxt", standby.port);
  const promotedAt = Date.now();
  log(`standby promoted and pgbouncer re-pointed in ${seconds(promotedAt - killedAt)}`);
  await delay(SIZE.seconds * 450);
  await load.stop();
  await load.settle();
  const check = await openWorld(standby.url("yxt"));
  cleanups.push(() => check.close());
  const halfPaid = await settlePurchases(check.db, load);
  const before = await verify(check.db, load, { before: killStarted, balances: false });
  const v = await verify(check.db, load, { balances: true });
  const recovered = load.recoveredAfter(killedAt);
  const late = [...load.webErrors, ...load.webUnreachable].filter((e) =>
    e.at > killedAt + Math.max(recovered.reader, recovered.web) + 5000
  );
  const crashed: number[] = [];
  for (const [i, s] of front.servers.entries()) {
    if (await Promise.race([s.exited.then(() => true), delay(10).then(() => false)])) {
      crashed.push(i + 1);
    }
  }
  const slow = (what: string, ms: number) =>
    Number.isFinite(ms) && ms > RECOVERY_BOUND_MS
      ? [
        `${what} served again after ${seconds(ms)}: over the bound of ${
          seconds(RECOVERY_BOUND_MS)
        }`,
      ]
      : [];
  judge("failover", v, [
    ...load.unanswered.slice(0, 5),
    ...(await checkResent(check.db, load)).slice(0, 5),
    ...late.slice(0, 5).map((e) => `still failing after recovery: ${e.what}`),
    ...crashed.map((i) => `app instance ${i} exited during the failover`),
    ...(halfPaid ? [`${halfPaid} utility purchases still half-paid`] : []),
    ...(before.acknowledged === 0 ? ["nothing was acknowledged before the kill"] : []),
    ...(!Number.isFinite(recovered.reader) ? ["no reader payment succeeded after the kill"] : []),
    ...(!Number.isFinite(recovered.web) ? ["no web page was served after the kill"] : []),
    ...slow("readers", recovered.reader),
    ...slow("web users", recovered.web),
  ]);
  const failedWeb = load.webErrors.length + load.webUnreachable.length;
  rows.push({
    phase: "primary SIGKILLed, standby promoted",
    recover: `readers ${seconds(recovered.reader)}, web ${seconds(recovered.web)} (bound ${
      seconds(RECOVERY_BOUND_MS)
    })`,
    failed: `${failedWeb + load.unanswered.length} (web pages during the outage)`,
    acknowledged: v.acknowledged,
    lost: v.lost.length,
    doubled: v.doubled.length,
    ledger: v.ledgerOk ? "OK" : "FAILED",
  });
  log(
    `failover: ${before.acknowledged} acknowledged before the kill, all ${
      before.lost.length ? "NOT " : ""
    }present once on the new primary; ${v.acknowledged} in all; readers resent ${load.resent.length} payments (${load.readerResends} sends while no instance was ready), each answered once; browsers resent ${load.browserResends} requests on a closed connection`,
  );
  await Promise.all(front.servers.map((s) => s.stop()));
}

// ---------------------------------------------------------------------------------------------

async function pointInTimeRestore(): Promise<void> {
  log("point-in-time restore: WAL archiving, base backup under load, restore to a chosen time");
  const pg = await startPostgres("drill-pitr");
  const live = cluster(pg.dir, Number(new URL(pg.url).port));
  cleanups.push(() => pg.stop().catch(() => {}));
  const archive = await postgresDir(join(TMP, `yxt-drill-archive-${Deno.pid}`));
  cleanups.push(() => Deno.remove(archive, { recursive: true }).catch(() => {}));
  await configure(live, [
    "archive_mode = on",
    `archive_command = 'test ! -f ${archive}/%f && cp %p ${archive}/%f'`,
  ]);
  await pg.restart();
  const url = await appDatabase(pg.url, "yxt");
  const server = await startServer(serverFor(url, "pitr"), "drill-pitr");
  cleanups.push(() => server.stop());
  const world = await openWorld(url);
  cleanups.push(() => world.close());
  const w = await buildWorld(world.db, secrets, {
    tag: "P",
    ...SIZE,
    students: 1,
    webUrl: server.url,
  });
  const load = new Load(w, { port: server.terminalPort }, { pace: SIZE.pace });
  load.start();
  await delay(SIZE.seconds * 200);
  const baseDir = await postgresDir(join(TMP, `yxt-drill-base-${Deno.pid}`));
  cleanups.push(() => Deno.remove(baseDir, { recursive: true }).catch(() => {}));
  const restored = cluster(baseDir, freePort());
  await createReplicator(pg.url);
  log("base backup (pg_basebackup as replicator) while the load runs");
  await runAsPostgres(pgBinary("pg_basebackup"), [
    "-h",
    "127.0.0.1",
    "-p",
    String(live.port),
    "-U",
    "replicator",
    "-D",
    restored.data,
    "-X",
    "stream",
    "-c",
    "fast",
  ]);
  await delay(SIZE.seconds * 300);
  const beforeTarget = Date.now();
  const [{ t: target }] = await psql<{ t: string }>(url, "select clock_timestamp()::text as t");
  const afterTarget = Date.now();
  log(`chosen time ${target}`);
  await delay(SIZE.seconds * 250);
  await load.stop();
  // The last segment is archived when it is switched; wait until it is in the archive.
  const [{ wal }] = await psql<{ wal: string }>(
    url,
    "select pg_walfile_name(pg_current_wal_lsn()) as wal",
  );
  await psql(pg.url, "select pg_switch_wal()");
  await waitFor(
    "the last WAL segment to be archived",
    async () => (await Deno.stat(join(archive, wal)).then(() => true, () => false)) ? true : null,
  );
  await server.stop();

  const started = Date.now();
  await configure(restored, [
    `port = ${restored.port}`,
    `unix_socket_directories = '${baseDir}'`,
    "archive_mode = off",
    `restore_command = 'cp ${archive}/%f %p'`,
    `recovery_target_time = '${target}'`,
    "recovery_target_action = 'promote'",
  ]);
  await Deno.writeTextFile(join(restored.data, "recovery.signal"), "");
  if (Deno.uid() === 0) await Deno.chown(join(restored.data, "recovery.signal"), ...postgresIds());
  await restored.start();
  cleanups.push(() => restored.stop());
  await waitFor("the restored cluster to finish recovery", async () => {
    const [{ r }] = await psql<{ r: boolean }>(restored.url(), "select pg_is_in_recovery() as r");
    return r ? null : true;
  }, 300_000);
  const recoverMs = Date.now() - started;
  // §7 checks the books with the task; the drill does too, then its own finer checks.
  const restoredUrl = restored.url("yxt").replace("postgres@", `${APP_ROLE}@`);
  const books = await run(Deno.execPath(), ["task", "--quiet", "verify-ledger"], {
    env: serverFor(restoredUrl, "verify"),
    timeoutMs: 120_000,
  });
  const check = await openWorld(restoredUrl);
  cleanups.push(() => check.close());
  const v = await verify(check.db, load, { before: beforeTarget, balances: false });
  const acksBefore = [...load.charged].filter(([, a]) => a.ackAt < beforeTarget)
    .sort((a, b) => b[1].ackAt - a[1].ackAt);
  const sentAfter = [...load.charged].filter(([, a]) => a.sentAt > afterTarget).map(([r]) => r);
  const leaked = (await check.db.selectFrom("ledger_transfers").select("reference")
    .where("reference", "in", sentAfter.length ? sentAfter : ["-"]).execute()).length;
  const last = acksBefore[0];
  const lastThere = last
    ? !!(await check.db.selectFrom("ledger_transfers").select("id")
      .where("reference", "=", last[0]).executeTakeFirst())
    : false;
  judge("restore", v, [
    ...(leaked
      ? [`${leaked} payments made after the chosen time are in the restored database`]
      : []),
    ...(!lastThere ? ["the last payment acknowledged before the chosen time is missing"] : []),
    ...(sentAfter.length === 0 ? ["no payment was made after the chosen time"] : []),
    ...load.unanswered.slice(0, 5),
    ...(books.code !== 0 || !books.stdout.includes("ledger OK")
      ? [
        `deno task verify-ledger on the restored database: ${
          (books.stderr || books.stdout).trim()
        }`,
      ]
      : []),
  ]);
  rows.push({
    phase: "restore to a chosen time",
    recover: `restore ${seconds(recoverMs)}`,
    failed: `${load.unanswered.length}`,
    acknowledged: v.acknowledged,
    lost: v.lost.length,
    doubled: v.doubled.length,
    ledger: v.ledgerOk ? "OK" : "FAILED",
  });
  log(
    `restore: ${v.acknowledged} payments acknowledged before the chosen time all there (the last, ${
      last?.[0]
    }, ${
      lastThere ? "present" : "MISSING"
    }); ${sentAfter.length} made after it, ${leaked} of them restored`,
  );
}

function postgresIds(): [number, number] {
  const line = Deno.readTextFileSync("/etc/passwd").split("\n").find((l) =>
    l.startsWith("postgres:")
  );
  const [, , uid, gid] = line?.split(":") ?? [];
  return [Number(uid), Number(gid)];
}

// ---------------------------------------------------------------------------------------------

/** The components the drill runs, with the Debian packages they come from. */
const NEEDS: Array<[string, string]> = [
  ["nginx", "nginx"],
  ["haproxy", "haproxy"],
  ["pgbouncer", "pgbouncer"],
  ["openssl", "openssl"],
  [pgBinary("pg_basebackup"), "postgresql"],
];

async function missingComponents(): Promise<string[]> {
  const missing: string[] = [];
  for (const [cmd, pkg] of NEEDS) {
    const found = await new Deno.Command("sh", {
      args: ["-c", `command -v ${cmd}`],
      stdout: "null",
    })
      .output().then((o) => o.success, () => false);
    if (!found) missing.push(`${cmd} (Debian package ${pkg})`);
  }
  return missing;
}

async function main(): Promise<number> {
  const missing = await missingComponents();
  if (missing.length) {
    console.error(`Cannot run the drill: not installed: ${missing.join(", ")}`);
    return 2;
  }
  const started = Date.now();
  await Deno.remove(DIR, { recursive: true }).catch(() => {});
  await Deno.mkdir(DIR, { recursive: true });
  log(
    `drill${
      SHORT ? " (short)" : ""
    }: ${SIZE.seconds} s of load per phase, ${SIZE.readers} readers, ${SIZE.students} web users`,
  );
  const phases: Array<[string, () => Promise<void>]> = [
    ["roll", rollingUpgrade],
    ["failover", failover],
    ["restore", pointInTimeRestore],
  ];
  for (const [name, phase] of phases) {
    if (!PHASES.has(name)) continue;
    try {
      await phase();
    } catch (err) {
      failures.push(`${name}: ${(err as Error).stack ?? err}`);
    } finally {
      for (const c of cleanups.reverse()) await c().catch(() => {});
      cleanups.length = 0;
    }
  }
  if (rows.length === 0 && failures.length === 0) {
    failures.push(`no phase ran (--only ${opts.only})`);
  }
  console.log("");
  console.log(
    "| phase | time to recover | requests failed | acknowledged | lost | doubled | ledger |",
  );
  console.log("|---|---|---|---|---|---|---|");
  for (const r of rows) {
    console.log(
      `| ${r.phase} | ${r.recover} | ${r.failed} | ${r.acknowledged} | ${r.lost} | ${r.doubled} | ${r.ledger} |`,
    );
  }
  console.log(
    `\ndrill took ${seconds(Date.now() - started)}; logs in bench/out/ (drill-*.log, drill/)`,
  );
  for (const f of failures) console.error(`FAILED: ${f}`);
  console.log(failures.length ? `${failures.length} check(s) failed` : "every check passed");
  return failures.length ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main());
