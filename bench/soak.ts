/**
 * `deno task soak`: the bank invariant under faults. Readers and web users pay, top up and shower
 * against the real server on a throwaway PostgreSQL while the server is SIGKILLed at random
 * moments and restarted, PostgreSQL is restarted once, and a fuzzer throws mutated frames at
 * the reader port. Readers resend unanswered requests with the same sequence number.
 *
 * At the end: every request was answered; every payment acknowledged to a reader exists exactly
 * once in the ledger; each card's balance equals what its acknowledgements add up to; the ledger
 * verifier passes; the sum of card balances equals money in (top-ups) minus money out
 * (acknowledged charges); the fuzzer moved no money and the server's memory stayed bounded.
 *
 * Options: --duration 10m (or 60s) · --fuzz 1000000 (frames) · --seed N. Exit 0 only when every
 * check holds. Everything runs on loopback.
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { Status } from "../terminal/mod.ts";
import { MessageCode, requestReference } from "../terminal/mod.ts";
import { getBalance, verifyLedger } from "../modules/wallet/mod.ts";
import {
  delay,
  OUT,
  type Postgres,
  randomHex,
  rssBytes,
  type Server,
  serverEnv,
  startPostgres,
  startServer,
} from "./_lib.ts";
import {
  type Cardholder,
  createCardholders,
  createReaders,
  openWorld,
  signedInStudent,
  type Student,
} from "./_world.ts";
import { type Outcome, RetryingReader, withTimeout } from "./_reader.ts";
import { TerminalClient } from "../terminal/sim/client.ts";
import { fuzz, type FuzzStats, Random } from "./_fuzz.ts";

const { values: opts } = parseArgs({
  args: Deno.args,
  options: {
    duration: { type: "string", default: "10m" },
    fuzz: { type: "string", default: "1000000" },
    seed: { type: "string", default: String(Date.now() % 1_000_000) },
  },
});

function seconds(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h)?$/.exec(text.trim());
  if (!m) throw new Error(`Cannot read duration ${text}: use e.g. 60s or 10m`);
  return Number(m[1]) * (m[2] === "m" ? 60 : m[2] === "h" ? 3600 : 1);
}

const DURATION = seconds(opts.duration!);
const FUZZ_FRAMES = Number(opts.fuzz);
const SEED = Number(opts.seed);
const rnd = new Random(SEED);
const START_BALANCE = 50_000;
const log = (msg: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${msg}`);

// ---------------------------------------------------------------------------------------------
// What clients were told: the oracle the database is checked against.

/** Charges acknowledged (Ok) to a reader, by reference. */
const charged = new Map<string, { card: number; amount: number; kind: string }>();
/** Requests still unanswered when the run ended. */
const unanswered: string[] = [];
/** Paid top-ups as the student saw them (充值成功), by order number. */
const toppedUp = new Map<string, { card: number; amount: number }>();
const confirmedOrders = new Map<string, { student: Student; amount: number }>();
const failures: string[] = [];
let acknowledged = 0;
let reversals = 0;

const appSecret = randomHex();
const cardPepper = randomHex();
let pg = null as Postgres | null;
let server = null as Server | null;
let serverEnvVars: Record<string, string> = {};
let killing = false;
let kills = 0;
let crashes = 0;
let maxRss = 0;
let graceful = "not run";

async function launch(): Promise<void> {
  server = await startServer(serverEnvVars, "soak-server");
  const s = server;
  s.exited.then((st) => {
    if (!killing && server === s) {
      crashes++;
      failures.push(
        `server exited by itself (code ${st.code}, signal ${st.signal}): see bench/out/soak-server.log`,
      );
      // Started again so the rest of the run and the final checks still mean something.
      if (crashes < 5) {
        launch().catch((err) => failures.push(`restart after a crash failed: ${err.message}`));
      }
    }
  });
}

async function main(): Promise<number> {
  log(`soak: ${DURATION} s, fuzz ${FUZZ_FRAMES} frames, seed ${SEED}`);
  await Deno.mkdir(OUT, { recursive: true });
  await Deno.writeTextFile(join(OUT, "soak-server.log"), "");
  pg = await startPostgres("soak");
  const url = await pg.createDatabase("yxt");
  const dataDir = join(OUT, "soak-data");
  await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  serverEnvVars = serverEnv({
    databaseUrl: url,
    dataDir,
    appSecret,
    cardPepper,
    extra: { SANDBOX_NOTIFY_MODE: "duplicate" },
  });
  await launch();

  // --- the world ------------------------------------------------------------------------------
  const world = await openWorld(url);
  const secrets = { appSecret, cardPepper };
  const cards = await createCardholders(world.db, secrets, {
    first: 1,
    count: 56,
    balance: START_BALANCE,
    tag: "soak",
  });
  const pos = await createReaders(world.db, secrets, {
    code: "SOAK-POS",
    name: "浸泡食堂",
    category: "canteen",
    kind: "canteen_pos",
    count: 6,
  });
  const qr = await createReaders(world.db, secrets, {
    code: "SOAK-QR",
    name: "浸泡扫码",
    category: "supermarket",
    kind: "qr_scanner",
    count: 2,
  });
  const shower = await createReaders(world.db, secrets, {
    code: "SOAK-SHOWER",
    name: "浸泡淋浴",
    category: "shower",
    kind: "shower",
    count: 3,
  });
  const [fuzzReader] = await createReaders(world.db, secrets, {
    code: "SOAK-FUZZ",
    name: "模糊测试",
    category: "canteen",
    kind: "canteen_pos",
    count: 1,
  });
  const [fuzzCard] = await createCardholders(world.db, secrets, {
    first: 9000,
    count: 1,
    balance: START_BALANCE,
    tag: "fuzz",
  });
  const students: Student[] = [];
  for (let i = 0; i < 4; i++) {
    students.push(
      await signedInStudent(
        world.db,
        server!.url,
        cards[52 + i],
        `136${String(i + 1).padStart(8, "0")}`,
      ),
    );
  }
  const initialBalances = new Map<number, number>();
  for (const c of [...cards, fuzzCard]) {
    initialBalances.set(c.cardAccountId, (await getBalance(world.db, c.cardAccountId)).balance);
  }
  log(
    `world: ${cards.length} cards, ${pos.length} POS, ${qr.length} QR, ${shower.length} shower readers, ${students.length} web users`,
  );

  const endpoint = { port: Number(serverEnvVars.TERMINAL_PORT) };
  const started = Date.now();
  const deadline = started + DURATION * 1000;
  const grace = () => Date.now() + 90_000;

  // --- faults -----------------------------------------------------------------------------------
  const killCount = Math.max(2, Math.round(DURATION / 45));
  const killAt = Array.from(
    { length: killCount },
    (_, i) => (0.1 + 0.75 * (i + rnd.next() * 0.8) / killCount) * DURATION * 1000,
  )
    .sort((a, b) => a - b);
  const pgRestartAt = (0.35 + rnd.next() * 0.2) * DURATION * 1000;
  const faults = (async () => {
    const events = [...killAt.map((t) => ({ t, what: "kill" })), { t: pgRestartAt, what: "pg" }]
      .sort((a, b) => a.t - b.t);
    for (const e of events) {
      const wait = started + e.t - Date.now();
      if (wait > 0) await delay(wait);
      if (Date.now() > deadline) break;
      if (e.what === "kill") {
        killing = true;
        log(`SIGKILL server (pid ${server!.pid})`);
        await server!.stop("SIGKILL");
        kills++;
        await delay(rnd.int(1500));
        await launch();
        killing = false;
        log("server restarted");
      } else {
        log("restarting PostgreSQL");
        await pg!.restart();
        log("PostgreSQL restarted");
      }
    }
  })();
  const memory = (async () => {
    while (Date.now() < deadline) {
      const rss = server ? rssBytes(server.pid) : null;
      if (rss) maxRss = Math.max(maxRss, rss);
      await delay(500);
    }
  })();

  // --- readers ----------------------------------------------------------------------------------
  const seqBase = 1000;
  const posLoop = async (r: (typeof pos)[number], idx: number) => {
    const reader = new RetryingReader(endpoint, r.terminalId, r.keyHex, seqBase);
    const mine = cards.slice(idx * 8, idx * 8 + 8);
    while (Date.now() < deadline) {
      const card = mine[rnd.int(mine.length)];
      const amount = 1 + rnd.int(30);
      const m = {
        code: MessageCode.CardPayment,
        chip: card.chipNumber,
        amount,
        password: "",
      } as const;
      if (rnd.next() < 0.05) {
        // The reader gives up on this request and reverses it: either the request never left the
        // reader, or it was answered and the reply lost (for the server, the same as ignored).
        let seq = reader.sequence++;
        if (rnd.next() < 0.5) seq = (await reader.call(m, grace())).sequence;
        const rev = await reader.call(
          { code: MessageCode.Reversal, originalSequence: seq },
          grace(),
        );
        record(reader, rev, "reversal", card, 0);
        reversals++;
        continue;
      }
      record(reader, await reader.call(m, grace()), "card", card, amount);
    }
    await reader.close();
  };
  const qrLoop = async (r: (typeof qr)[number], idx: number) => {
    const reader = new RetryingReader(endpoint, r.terminalId, r.keyHex, seqBase);
    while (Date.now() < deadline) {
      const student = students[(idx + rnd.int(students.length)) % students.length];
      const code = await paymentCode(student);
      if (!code) continue;
      const amount = 1 + rnd.int(30);
      record(
        reader,
        await reader.call({ code: MessageCode.QrPayment, paymentCode: code, amount }, grace()),
        "qr",
        student.card,
        amount,
      );
    }
    await reader.close();
  };
  const showerLoop = async (r: (typeof shower)[number], idx: number) => {
    const reader = new RetryingReader(endpoint, r.terminalId, r.keyHex, seqBase);
    const mine = cards.slice(48 + idx, 52);
    while (Date.now() < deadline) {
      const card = mine[rnd.int(mine.length)];
      const start = await reader.call(
        { code: MessageCode.ShowerStart, chip: card.chipNumber },
        grace(),
      );
      const sm = start.reply?.message as { status?: number; holdId?: number } | undefined;
      if (!start.reply) {
        unanswered.push(`shower start T${r.terminalId}:${start.sequence}`);
        continue;
      }
      acknowledged++;
      if (sm?.status !== Status.Ok) continue;
      const units = rnd.int(40);
      const end = await reader.call(
        { code: MessageCode.ShowerEnd, holdId: sm.holdId!, units },
        grace(),
      );
      const em = end.reply?.message as { status?: number; charged?: number } | undefined;
      if (!end.reply) {
        unanswered.push(`shower end T${r.terminalId}:${end.sequence}`);
        continue;
      }
      acknowledged++;
      if (em?.status === Status.Ok && (em.charged ?? 0) > 0) {
        charged.set(`shower:${requestReference(r.terminalId, end.sequence)}`, {
          card: card.cardAccountId,
          amount: em.charged!,
          kind: "shower",
        });
      } else if (em?.status !== Status.Ok) {
        failures.push(`shower end T${r.terminalId}:${end.sequence} refused: ${em?.status}`);
      }
    }
    await reader.close();
  };

  function record(
    reader: RetryingReader,
    o: Outcome,
    kind: string,
    card: Cardholder,
    amount: number,
  ): void {
    const ref = requestReference(reader.terminalId, o.sequence);
    if (!o.reply) {
      unanswered.push(`${kind} ${ref}`);
      return;
    }
    acknowledged++;
    const m = o.reply.message as { status?: number; amount?: number };
    if (o.reply.header.type === MessageCode.Error) {
      failures.push(`${kind} ${ref} answered Error ${m.status}`);
      return;
    }
    if (kind === "reversal") {
      if (m.status !== Status.Ok) failures.push(`reversal ${ref} refused: ${m.status}`);
      return;
    }
    if (m.status === Status.Ok) charged.set(ref, { card: card.cardAccountId, amount, kind });
  }

  async function paymentCode(student: Student): Promise<string | null> {
    try {
      const page = await student.web.get("/pay/code");
      const digits = /paycode__digits">([\d\s]+)</.exec(page.text)?.[1]?.replace(/\s+/g, "");
      if (page.res.status === 200 && digits && /^\d{18}$/.test(digits)) return digits;
    } catch { /* server down */ }
    await delay(200);
    return null;
  }

  // --- web users: top-ups through the sandbox gateway (duplicate notifies) -------------------------
  const topupLoop = async (student: Student) => {
    while (Date.now() < deadline) {
      const amount = (1 + rnd.int(5)) * 100;
      try {
        await topUp(student, amount);
      } catch { /* server down mid-flow: the next round starts afresh */ }
      await delay(300 + rnd.int(700));
    }
  };

  async function topUp(student: Student, amount: number): Promise<void> {
    const form = await student.web.get("/wallet/recharge?method=sandbox");
    if (form.res.status !== 200) return;
    const created = await student.web.post("/wallet/recharge", {
      amount: (amount / 100).toFixed(2),
      quick: "",
      method: "sandbox",
    }, { csrfFrom: form.text });
    const to = created.res.headers.get("location") ?? "";
    const orderNo = (/^\/pay\/sandbox\/([^/?]+)$/.exec(to) ?? /\/orders\/([^/]+)\/pay/.exec(to))
      ?.[1];
    if (!orderNo) return;
    const pay = await student.web.get(`/pay/sandbox/${orderNo}`);
    if (pay.res.status !== 200) return;
    confirmedOrders.set(orderNo, { student, amount });
    // Confirming is idempotent: resent until the server answers.
    for (let i = 0; i < 50; i++) {
      try {
        const r = await student.web.post(`/pay/sandbox/${orderNo}/confirm`, {}, {
          csrfFrom: pay.text,
        });
        if (r.res.status === 303) return;
      } catch { /* down */ }
      await delay(300);
    }
  }

  const fuzzing = fuzz(endpoint.port, {
    terminalId: fuzzReader.terminalId,
    keyHex: fuzzReader.keyHex,
    chip: fuzzCard.chipNumber,
  }, {
    frames: FUZZ_FRAMES,
    until: deadline,
    parallel: 2,
    seed: SEED,
  });

  await Promise.all([
    ...pos.map(posLoop),
    ...qr.map(qrLoop),
    ...shower.map(showerLoop),
    ...students.map(topupLoop),
  ]);
  const fuzzStats: FuzzStats = await fuzzing;
  await faults;
  await memory;
  log(
    `load done: ${acknowledged} acknowledged, ${kills} kills, fuzz ${fuzzStats.frames} frames over ${fuzzStats.connections} connections`,
  );

  // --- settle: every confirmed top-up ends paid (notifies are retried by the server) ---------------
  const settleUntil = Date.now() + 60_000;
  for (const [orderNo, o] of confirmedOrders) {
    while (Date.now() < settleUntil) {
      const page = await o.student.web.get(`/wallet/recharge/orders/${orderNo}`).catch(() => null);
      if (page?.text.includes("充值成功")) {
        toppedUp.set(orderNo, { card: o.student.card.cardAccountId, amount: o.amount });
        break;
      }
      if (page && /已关闭|支付失败|已取消/.test(page.text)) break;
      await delay(500);
    }
  }

  // --- graceful shutdown: SIGTERM while reader payments and page loads are in flight ----------------
  await gracefulShutdown(pos, cards, students[0]);

  // --- checks ---------------------------------------------------------------------------------------
  const check = await openWorld(url);
  try {
    if (unanswered.length) {
      failures.push(
        `${unanswered.length} requests never answered: ${unanswered.slice(0, 5).join(", ")}`,
      );
    }
    // Each acknowledged reader payment is in the ledger exactly once.
    const refs = [...charged.keys()].filter((k) => !k.startsWith("shower:"));
    const counts = new Map<string, number>();
    for (let i = 0; i < refs.length; i += 500) {
      const rows = await check.db.selectFrom("ledger_transfers").select(["reference"])
        .where("reference", "in", refs.slice(i, i + 500)).execute();
      for (const r of rows) counts.set(r.reference, (counts.get(r.reference) ?? 0) + 1);
    }
    const missing = refs.filter((r) => !counts.has(r));
    const doubled = [...counts].filter(([, n]) => n > 1);
    if (missing.length) {
      failures.push(
        `${missing.length} acknowledged payments missing from the ledger: ${missing.slice(0, 5)}`,
      );
    }
    if (doubled.length) failures.push(`payments recorded more than once: ${doubled.slice(0, 5)}`);
    // Nothing from the fuzzer's terminal moved money.
    const fuzzMoves = await check.db.selectFrom("ledger_transfers").select("reference")
      .where("reference", "like", `T${fuzzReader.terminalId}:%`).execute();
    if (fuzzMoves.length) {
      failures.push(`the fuzzer moved money: ${fuzzMoves.map((r) => r.reference).slice(0, 5)}`);
    }
    // Each card's balance is what its acknowledgements add up to.
    const expected = new Map(initialBalances);
    for (const c of charged.values()) expected.set(c.card, expected.get(c.card)! - c.amount);
    for (const t of toppedUp.values()) expected.set(t.card, expected.get(t.card)! + t.amount);
    let sumExpected = 0;
    let sumActual = 0;
    for (const [card, want] of expected) {
      const b = await getBalance(check.db, card);
      sumExpected += want;
      sumActual += b.balance;
      if (b.balance !== want) {
        failures.push(`card account ${card}: balance ${b.balance}, acknowledgements say ${want}`);
      }
      if (b.held !== 0) {
        failures.push(`card account ${card}: ${b.held} fen still held after every shower ended`);
      }
    }
    const ledger = await verifyLedger(check.db);
    if (!ledger.ok) failures.push(`ledger verifier: ${ledger.problems.slice(0, 5).join("; ")}`);
    const moneyIn = [...initialBalances.values()].reduce((a, b) => a + b, 0) +
      [...toppedUp.values()].reduce((a, t) => a + t.amount, 0);
    const moneyOut = [...charged.values()].reduce((a, c) => a + c.amount, 0);
    if (sumActual !== moneyIn - moneyOut) {
      failures.push(`sum of balances ${sumActual} ≠ money in ${moneyIn} − out ${moneyOut}`);
    }
    if (ledger.totals.cardBalances !== sumActual) {
      failures.push(
        `the verifier's card balance total ${ledger.totals.cardBalances} ≠ the soak's cards ${sumActual}`,
      );
    }
    if (kills < 2 && DURATION >= 30) failures.push(`only ${kills} SIGKILLs happened`);
    const baseline = 400 * 1024 * 1024;
    if (maxRss > baseline) {
      failures.push(`server RSS reached ${(maxRss / 1048576).toFixed(0)} MB (bound 400 MB)`);
    }
    if (fuzzStats.frames < Math.min(FUZZ_FRAMES, 1000)) {
      failures.push(`the fuzzer sent only ${fuzzStats.frames} frames`);
    }
    if (FUZZ_FRAMES >= 1_000_000 && fuzzStats.frames < FUZZ_FRAMES) {
      failures.push(`the fuzzer sent ${fuzzStats.frames} of ${FUZZ_FRAMES} frames in the time`);
    }
    const perKind = new Map<string, number>();
    for (const c of charged.values()) perKind.set(c.kind, (perKind.get(c.kind) ?? 0) + 1);
    for (const kind of ["card", "qr", "shower"]) {
      if (!perKind.get(kind)) {
        failures.push(`no ${kind} payment was acknowledged: valid traffic did not carry on`);
      }
    }
    if (toppedUp.size === 0) failures.push("no top-up completed");
    console.log("");
    console.log(
      `acknowledged requests  ${acknowledged} (card ${perKind.get("card") ?? 0}, QR ${
        perKind.get("qr") ?? 0
      }, shower ${perKind.get("shower") ?? 0} charged; ${reversals} reversals)`,
    );
    console.log(
      `top-ups                ${toppedUp.size} paid of ${confirmedOrders.size} confirmed (duplicate notifies)`,
    );
    console.log(
      `faults                 ${kills} SIGKILLs, 1 PostgreSQL restart, ${crashes} unexpected exits`,
    );
    console.log(
      `fuzz                   ${fuzzStats.frames} frames, ${fuzzStats.connections} connections`,
    );
    console.log(`graceful shutdown      ${graceful}`);
    console.log(`server max RSS         ${(maxRss / 1048576).toFixed(0)} MB`);
    console.log(
      `ledger                 ${
        ledger.ok ? "verified" : "FAILED"
      }; card balances ${sumActual} = in ${moneyIn} − out ${moneyOut}`,
    );
  } finally {
    await check.close();
    await world.close();
  }
  return failures.length;
}

/**
 * SIGTERM with one card payment in flight on each POS reader and page loads in flight: every
 * one must still be answered, the server must exit 0, and the payments it acknowledged go into
 * the same ledger checks as the rest.
 */
async function gracefulShutdown(
  pos: Array<{ terminalId: number; keyHex: string }>,
  cards: Cardholder[],
  student: Student,
): Promise<void> {
  const s = server!;
  const clients = await Promise.all(pos.map(async (r, i) => {
    const c = await TerminalClient.connect({
      port: s.terminalPort,
      terminalId: r.terminalId,
      key: r.keyHex,
      sequence: 900_000,
    });
    await c.request({ code: MessageCode.SignOn, firmware: "soak" });
    return { c, r, card: cards[i * 8] };
  }));
  const replies = clients.map(({ c, card }) =>
    withTimeout(
      c.request({ code: MessageCode.CardPayment, chip: card.chipNumber, amount: 7, password: "" }),
      30_000,
    )
  );
  const pages = Array.from(
    { length: 4 },
    () =>
      fetch(`${s.url}/wallet`, { headers: { cookie: student.cookieHeader }, redirect: "manual" })
        .then(async (r) => {
          await r.body?.cancel();
          return r.status;
        }).catch((err) => `failed: ${err.message}`),
  );
  await delay(15);
  killing = true;
  const t0 = performance.now();
  s.proc.kill("SIGTERM");
  const got = await Promise.all(replies);
  const statuses = await Promise.all(pages);
  const exit = await withTimeout(s.exited, 30_000);
  const ms = performance.now() - t0;
  got.forEach((reply, i) => {
    const { r, card } = clients[i];
    if (!reply) {
      failures.push(`graceful shutdown: the payment in flight on T${r.terminalId} got no reply`);
      return;
    }
    acknowledged++;
    const m = reply.message as { status?: number };
    if (m.status === Status.Ok) {
      charged.set(requestReference(r.terminalId, reply.header.sequence), {
        card: card.cardAccountId,
        amount: 7,
        kind: "card",
      });
    }
  });
  const badPages = statuses.filter((st) => st !== 200);
  if (badPages.length) {
    failures.push(`graceful shutdown: page loads in flight answered ${badPages.join(", ")}`);
  }
  if (!exit) failures.push("graceful shutdown: the server did not exit within 30 s of SIGTERM");
  else if (exit.code !== 0) failures.push(`graceful shutdown: exit code ${exit.code}`);
  await Promise.all(clients.map(({ c }) => c.close()));
  log(
    `graceful shutdown: ${
      got.filter(Boolean).length
    }/${got.length} in-flight payments answered, pages ${
      statuses.join(",")
    }, exit ${exit?.code} after ${ms.toFixed(0)} ms`,
  );
  graceful = `${
    got.filter(Boolean).length
  }/${got.length} in-flight payments answered, exit ${exit?.code} in ${ms.toFixed(0)} ms`;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  failures.push(`soak aborted: ${(err as Error).stack ?? err}`);
} finally {
  killing = true;
  await server?.stop("SIGTERM").catch(() => {});
  await pg?.stop().catch(() => {});
}
if (failures.length) {
  console.log(`\nFAILED: ${failures.length} problems`);
  for (const f of failures.slice(0, 40)) console.log(`  - ${f}`);
  Deno.exit(1);
}
console.log("\nsoak passed");
Deno.exit(code === 0 ? 0 : 1);
