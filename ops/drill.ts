/**
 * `deno task drill [--short] [--only roll,failover,restore]`: what docs/OPERATIONS.md promises, done
 * for real on loopback, under load (readers paying through HAProxy, web users through nginx):
 *
 *   1. rolling restart: two instances behind nginx (TLS) and HAProxy (readers), each SIGTERMed and
 *      started again in turn. No web request may fail, no reader request go unanswered.
 *   2. failover: a PostgreSQL primary with a synchronous standby (pg_basebackup,
 *      synchronous_standby_names, synchronous_commit = on) behind pgbouncer; the primary and all
 *      its processes SIGKILLed, the standby promoted, pgbouncer re-pointed and reloaded. The app
 *      only reconnects.
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
  type Server,
  serverEnv,
  startPostgres,
  startServer,
} from "../bench/_lib.ts";
import { openWorld } from "../bench/_world.ts";
import { WebClient } from "../bench/_http.ts";
import {
  cluster,
  configure,
  postgresDir,
  requireSynchronousStandby,
  runAsPostgres,
  startHaproxy,
  startNginx,
  startPgbouncer,
  startStandby,
  testCertificate,
  waitFor,
} from "./_infra.ts";
import { buildWorld, Load, settlePurchases, type Verdict, verify } from "./_drill_load.ts";

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

// ---------------------------------------------------------------------------------------------

async function rollingRestart(): Promise<void> {
  log("rolling restart: PostgreSQL, two instances, nginx (TLS) and HAProxy");
  const pg = await startPostgres("drill-roll");
  cleanups.push(() => pg.stop());
  const url = await pg.createDatabase("yxt");
  const httpsPort = freePort();
  const baseUrl = `https://127.0.0.1:${httpsPort}`;
  const envs = [1, 2].map((i) =>
    serverFor(url, `roll-${i}`, { BASE_URL: baseUrl, TRUST_PROXY: "1" })
  );
  const servers: Server[] = [];
  for (const [i, env] of envs.entries()) {
    servers.push(await startServer(env, `drill-roll-${i + 1}`));
  }
  cleanups.push(() => Promise.all(servers.map((s) => s.stop())));
  const tls = await testCertificate(DIR);
  WebClient.httpClient = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(tls.ca)] });
  const nginx = await startNginx(
    await Deno.makeTempDir({ dir: DIR, prefix: "nginx-" }),
    [servers[0].port, servers[1].port],
    tls,
    httpsPort,
  );
  cleanups.push(() => nginx.stop("SIGQUIT"));
  const haproxy = await startHaproxy(DIR, servers);
  cleanups.push(() => haproxy.stop());

  const world = await openWorld(url);
  cleanups.push(() => world.close());
  const w = await buildWorld(world.db, secrets, { tag: "R", ...SIZE, webUrl: baseUrl });
  const load = new Load(w, { port: haproxy.port }, { pace: SIZE.pace });
  load.start();
  const restarts: string[] = [];
  const exitCodes: number[] = [];
  await delay(SIZE.seconds * 200);
  for (const i of [0, 1]) {
    const t0 = Date.now();
    // nginx (no active health checks) is told first, so that no request is on its way to the
    // instance when it closes its listener (docs/OPERATIONS.md, Upgrades).
    await nginx.drain(servers[i].port);
    log(`SIGTERM instance ${i + 1} (pid ${servers[i].pid})`);
    exitCodes.push(await servers[i].stop("SIGTERM"));
    const stopped = Date.now();
    servers[i] = await startServer(envs[i], `drill-roll-${i + 1}`);
    await waitFor(
      "the restarted instance to be ready",
      async () => (await readyz(servers[i].port)) ? true : null,
    );
    await nginx.drain(null);
    // HAProxy takes it back after two good checks (rise 2, inter 1 s).
    await delay(2500);
    restarts.push(
      `instance ${i + 1}: stopped in ${seconds(stopped - t0)}, back in ${seconds(Date.now() - t0)}`,
    );
    log(`instance ${i + 1} back`);
    await delay(SIZE.seconds * 250);
  }
  await load.stop();
  await load.settle();
  const halfPaid = await settlePurchases(world.db, load);
  const v = await verify(world.db, load, { balances: true });
  const failed = load.webErrors.length + load.webUnreachable.length + load.unanswered.length;
  judge("rolling restart", v, [
    ...load.webErrors.slice(0, 5).map((e) => `web error a person would see: ${e.what}`),
    ...load.webUnreachable.slice(0, 5).map((e) => `web request unanswered: ${e.what}`),
    ...load.unanswered.slice(0, 5),
    ...exitCodes.filter((c) => c !== 0).map((c) => `an instance exited ${c} on SIGTERM`),
    ...(halfPaid ? [`${halfPaid} utility purchases still half-paid`] : []),
    ...(load.charged.size === 0 ? ["no reader payment was acknowledged"] : []),
  ]);
  rows.push({
    phase: "rolling restart (2 instances)",
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
    `rolling restart: ${load.charged.size} reader payments, ${load.toppedUp.size} top-ups, ${load.purchased.size} utility purchases, ${load.webOk} web pages; readers reconnected ${load.readerReconnects} times and resent ${load.readerResends} requests`,
  );
}

// ---------------------------------------------------------------------------------------------

async function failover(): Promise<void> {
  log("failover: primary + synchronous standby, pgbouncer, one instance");
  const primaryPg = await startPostgres("drill-primary");
  const primary = cluster(primaryPg.dir, Number(new URL(primaryPg.url).port));
  cleanups.push(() => primaryPg.stop().catch(() => {}));
  const standby = await startStandby(join(TMP, `yxt-drill-standby-${Deno.pid}`), primary.port);
  cleanups.push(async () => {
    await standby.stop();
    await Deno.remove(standby.dir, { recursive: true }).catch(() => {});
  });
  await requireSynchronousStandby(primaryPg.url);
  await psql(primaryPg.url, "create database yxt");
  // What pgbouncer does not pass on from the app (ignore_startup_parameters = options).
  await psql(primaryPg.url, "alter database yxt set plan_cache_mode = force_generic_plan");
  const bouncerDir = join(TMP, `yxt-drill-pgbouncer-${Deno.pid}`);
  const bouncer = await startPgbouncer(bouncerDir, "yxt", primary.port);
  cleanups.push(async () => {
    await bouncer.stop();
    await Deno.remove(bouncerDir, { recursive: true }).catch(() => {});
  });
  const env = serverFor(bouncer.url("yxt"), "failover");
  const server = await startServer(env, "drill-failover");
  cleanups.push(() => server.stop());
  const setup = await openWorld(bouncer.url("yxt"));
  const w = await buildWorld(setup.db, secrets, { tag: "F", ...SIZE, webUrl: server.url });
  await setup.close();
  const load = new Load(w, { port: server.terminalPort }, { pace: SIZE.pace });
  load.start();
  await delay(SIZE.seconds * 350);

  const killedAt = Date.now();
  log("SIGKILL every process of the primary");
  await primary.kill();
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
  const before = await verify(check.db, load, { before: killedAt, balances: false });
  const v = await verify(check.db, load, { balances: true });
  const recovered = load.recoveredAfter(killedAt);
  const late = [...load.webErrors, ...load.webUnreachable].filter((e) =>
    e.at > killedAt + Math.max(recovered.reader, recovered.web) + 5000
  );
  const crashed = await Promise.race([server.exited.then(() => true), delay(10).then(() => false)]);
  judge("failover", v, [
    ...load.unanswered.slice(0, 5),
    ...late.slice(0, 5).map((e) => `still failing after recovery: ${e.what}`),
    ...(crashed ? ["the app instance exited during the failover"] : []),
    ...(halfPaid ? [`${halfPaid} utility purchases still half-paid`] : []),
    ...(before.acknowledged === 0 ? ["nothing was acknowledged before the kill"] : []),
    ...(!Number.isFinite(recovered.reader) ? ["no reader payment succeeded after the kill"] : []),
    ...(!Number.isFinite(recovered.web) ? ["no web page was served after the kill"] : []),
  ]);
  const failedWeb = load.webErrors.length + load.webUnreachable.length;
  rows.push({
    phase: "primary SIGKILLed, standby promoted",
    recover: `readers ${seconds(recovered.reader)}, web ${seconds(recovered.web)}`,
    failed: `${failedWeb + load.unanswered.length} (web pages during the outage)`,
    acknowledged: v.acknowledged,
    lost: v.lost.length,
    doubled: v.doubled.length,
    ledger: v.ledgerOk ? "OK" : "FAILED",
  });
  log(
    `failover: ${before.acknowledged} acknowledged before the kill, all ${
      before.lost.length ? "NOT " : ""
    }present once on the new primary; ${v.acknowledged} in all`,
  );
  await server.stop();
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
  const url = await pg.createDatabase("yxt");
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
  log("base backup (pg_basebackup) while the load runs");
  await runAsPostgres(pgBinary("pg_basebackup"), [
    "-h",
    "127.0.0.1",
    "-p",
    String(live.port),
    "-U",
    "postgres",
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
  await psql(url, "select pg_switch_wal()");
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
  const check = await openWorld(restored.url("yxt"));
  cleanups.push(() => check.close());
  const v = await verify(check.db, load, { before: beforeTarget, balances: false });
  const recoverMs = Date.now() - started;
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
    ["roll", rollingRestart],
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
