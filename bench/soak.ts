/**
 * `deno task soak`: the bank invariant under faults. Readers and web users pay, top up and shower
 * against the real server on a throwaway PostgreSQL while the server is SIGKILLed at random
 * moments and restarted, PostgreSQL is restarted once, and a fuzzer throws mutated frames at
 * the reader port. Readers resend unanswered requests with the same sequence number.
 *
 * At the end: every request was answered; every payment acknowledged to a reader exists exactly
 * once in the ledger; each card's balance equals what its acknowledgements add up to; the ledger
 * verifier passes; the sum of card balances equals money in (top-ups, 补助) minus money out
 * (acknowledged charges, 补助 gone back at its end, bench/_soak_subsidy.ts); every acknowledged card, QR and shower payment produced exactly one
 * 消费提醒, delivered once to the payer's WeChat (a stand-in in this process, _notify_check.ts);
 * the fuzzer moved no money and the server's memory stayed bounded.
 *
 * Options: --duration 10m (or 60s) · --fuzz 1000000 (frames) · --seed N. Exit 0 only when every
 * check holds. Everything runs on loopback.
 */
import { parseArgs } from "node:util";
import { join } from "node:path";
import { Status } from "../terminal/mod.ts";
import { MessageCode, requestReference } from "../terminal/mod.ts";
import { getBalance, verifyLedger } from "../modules/wallet/mod.ts";
import type { Db } from "../modules/platform/mod.ts";
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
  signedInStaff,
  signedInStudent,
  type Student,
} from "./_world.ts";
import { seedDemoBilling } from "../modules/billing/mod.ts";
import { createStaff, ROLES } from "../modules/staff/mod.ts";
import { reissueCard, staffReportLoss } from "../modules/card/mod.ts";
import { closeCardWithPayout } from "../modules/wallet/mod.ts";
import "../modules/finance/mod.ts"; // its tables, for the checks
import type { WebClient } from "./_http.ts";
import { type Outcome, RetryingReader, withTimeout } from "./_reader.ts";
import { TerminalClient } from "../terminal/sim/client.ts";
import { fuzz, type FuzzStats, Random } from "./_fuzz.ts";
import { awaitEndedLotsReturned, checkSoakSubsidies, grantSoakSubsidies } from "./_soak_subsidy.ts";
import { type NotifyCheck, startNotifyCheck } from "./_notify_check.ts";
// The phone's own script for 离线付款码 (as the page runs it), for the QR loop's offline codes.
import "../static/pay_offline.js";

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
/** Long-lived fuzzing connections, each a fuzzing reader of its own. */
const FUZZ_CONNECTIONS = 32;
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
/** Utility purchases acknowledged to a student (the 303 to its order page), by order number. */
const purchases = new Map<
  string,
  { student: Student; utility: string; amount: number; faulty: boolean }
>();
/** Utility forms refused (balance, daily limit) or never answered. */
let purchasesRefused = 0;
let purchasesResubmitted = 0;
/** Refunds by finance acknowledged to the staff member (303 …&refunded=1), by form token. */
const financeRefunds = new Map<
  string,
  { reference: string; transferId: number; card: number; amount: number }
>();
let refundsOverRefused = 0;
let meterFaultWindows = 0;
const failures: string[] = [];
let acknowledged = 0;
let reversals = 0;

const appSecret = randomHex();
const cardPepper = randomHex();
let pg = null as Postgres | null;
let server = null as Server | null;
let serverEnvVars: Record<string, string> = {};
/** The WeChat stand-in every server delivers its messages to, and the check of 消费提醒. */
let notify = null as NotifyCheck | null;
let killing = false;
let kills = 0;
let crashes = 0;
let maxRss = 0;
/** CPU seconds each server process used, as last sampled. */
const serverCpu = new Map<number, number>();

/** User and system CPU seconds of a process so far (Linux /proc), or null. */
function cpuSeconds(pid: number): number | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}
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
  // Started first and kept to the end: it outlives every server it serves.
  notify = startNotifyCheck();
  serverEnvVars = serverEnv({
    databaseUrl: url,
    dataDir,
    appSecret,
    cardPepper,
    extra: { SANDBOX_NOTIFY_MODE: "duplicate", METER_SIM_DELAY_MS: "300", ...notify.env },
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
  // One per fuzzing connection: a terminal is served on one connection (PROTOCOL.md §1).
  const fuzzReaders = await createReaders(world.db, secrets, {
    code: "SOAK-FUZZ",
    name: "模糊测试",
    category: "canteen",
    kind: "canteen_pos",
    count: FUZZ_CONNECTIONS,
  });
  const [fuzzCard] = await createCardholders(world.db, secrets, {
    first: 9000,
    count: 1,
    balance: START_BALANCE,
    tag: "fuzz",
  });
  // Cards whose offline payments from now on the server must refuse: one reported lost, one whose
  // chip a reissue replaced, one closed (销户). The fuzzer's readers upload records for them.
  const refusedCards = await createCardholders(world.db, secrets, {
    first: 9001,
    count: 3,
    balance: START_BALANCE,
    tag: "fuzz-refused",
  });
  const office = {
    staffId: await createStaff(world.db, {
      username: "soak.office",
      name: "浸泡一卡通中心",
      password: "Soak-Office-2026",
      roles: [ROLES.cardOffice],
    }),
  };
  await staffReportLoss(world.db, office, refusedCards[0].cardAccountId);
  await reissueCard(world.db, office, refusedCards[1].cardAccountId, "8000009002");
  await closeCardWithPayout(world.db, office, refusedCards[2].cardAccountId, "浸泡测试销户");
  const refusedSince = Math.ceil(Date.now() / 1000);
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
  // Dorm utilities: students 0 and 1 live in B01-101, whose meter the sysadmin switches to
  // failing for the whole run (every delivery there fails until refunded); 2 and 3 in B01-102,
  // which fails only while the sysadmin switches every meter off for a few seconds.
  await seedDemoBilling(world.db);
  const rooms = await world.db.selectFrom("billing_rooms")
    .innerJoin("billing_buildings", "billing_buildings.id", "billing_rooms.building_id")
    .select(["billing_rooms.id as id", "billing_rooms.building_id as buildingId", "number"])
    .where("billing_buildings.code", "=", "B01").where("number", "in", ["101", "102"])
    .orderBy("number").execute();
  for (const [i, student] of students.entries()) {
    const room = rooms[i < 2 ? 0 : 1];
    const r = await student.web.submit(
      `/billing/room?building=${room.buildingId}`,
      "/billing/room",
      { building: String(room.buildingId), room: String(room.id) },
    );
    if (r.res.status !== 303) throw new Error(`choosing a room answered ${r.res.status}`);
  }
  const admin = await signedInStaff(world.db, server!.url, {
    username: "soak.admin",
    name: "浸泡管理员",
    roles: [ROLES.sysadmin],
  });
  const finance = await signedInStaff(world.db, server!.url, {
    username: "soak.finance",
    name: "浸泡财务",
    roles: [ROLES.finance],
  });
  if (!await meterFault(admin, { scope: "room", on: "1", building: "B01", room: "101" })) {
    throw new Error("Cannot switch on the meter fault of B01-101");
  }
  // Every soak cardholder (the web users already signed in and bound) gets a WeChat to be told on.
  await notify.bind(world.db, cards.map((c) => c.cardAccountId));
  // 补助: two lots a card, one ending mid-run (the expiry worker runs through the faults).
  const subsidies = await grantSoakSubsidies(
    world.db,
    cards.map((c) => c.cardAccountId),
    new Date(Date.now() + DURATION * 500),
  );
  const initialBalances = new Map<number, number>();
  for (const c of [...cards, fuzzCard, ...refusedCards]) {
    initialBalances.set(c.cardAccountId, (await getBalance(world.db, c.cardAccountId)).balance);
  }
  log(
    `world: ${cards.length} cards, ${pos.length} POS, ${qr.length} QR, ${shower.length} shower readers, ${students.length} web users`,
  );

  const endpoint = { port: Number(serverEnvVars.TERMINAL_PORT) };
  const started = Date.now();
  const deadline = started + DURATION * 1000;
  // The load goes on past the duration while the fuzzer has frames left to send, at most a
  // quarter longer (a slow machine); the fuzzer's count is checked at the end either way.
  const hardDeadline = deadline + DURATION * 250;
  let fuzzDone = false;
  const loadGoesOn = () => Date.now() < deadline || (!fuzzDone && Date.now() < hardDeadline);
  const grace = () => Date.now() + 90_000;

  // --- faults -----------------------------------------------------------------------------------
  const killCount = Math.max(2, Math.round(DURATION / 45));
  const killAt = Array.from(
    { length: killCount },
    (_, i) => (0.1 + 0.75 * (i + rnd.next() * 0.8) / killCount) * DURATION * 1000,
  )
    .sort((a, b) => a - b);
  const pgRestartAt = (0.35 + rnd.next() * 0.2) * DURATION * 1000;
  /** When the server or PostgreSQL was down (from the fault until it was back). */
  const outages: Array<{ from: number; to: number }> = [];
  /** Reader requests acknowledged so far, sampled every second: valid traffic carries on. */
  const progress: Array<{ t: number; acknowledged: number }> = [];
  const faults = (async () => {
    const events = [...killAt.map((t) => ({ t, what: "kill" })), { t: pgRestartAt, what: "pg" }]
      .sort((a, b) => a.t - b.t);
    for (const e of events) {
      const wait = started + e.t - Date.now();
      if (wait > 0) await delay(wait);
      if (Date.now() > deadline) break;
      const outage = { from: Date.now(), to: Infinity };
      outages.push(outage);
      try {
        await fault(e.what);
      } finally {
        outage.to = Date.now();
      }
    }
    async function fault(what: string) {
      if (what === "kill") {
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
    while (loadGoesOn()) {
      const rss = server ? rssBytes(server.pid) : null;
      if (rss) maxRss = Math.max(maxRss, rss);
      if (server) {
        serverCpu.set(server.pid, cpuSeconds(server.pid) ?? serverCpu.get(server.pid) ?? 0);
      }
      const last = progress.at(-1);
      if (!last || Date.now() - last.t >= 1000) progress.push({ t: Date.now(), acknowledged });
      await delay(500);
    }
  })();

  // --- readers ----------------------------------------------------------------------------------
  const seqBase = 1000;
  const posLoop = async (r: (typeof pos)[number], idx: number) => {
    const reader = new RetryingReader(endpoint, r.terminalId, r.keyHex, seqBase);
    const mine = cards.slice(idx * 8, idx * 8 + 8);
    while (loadGoesOn()) {
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
    while (loadGoesOn()) {
      const student = students[(idx + rnd.int(students.length)) % students.length];
      // About one scan in four is of a 离线付款码 the phone made itself.
      const code = rnd.next() < 0.25 ? await offlineCode(student) : await paymentCode(student);
      if (!code) continue;
      const amount = 1 + rnd.int(30);
      const scan = { code: MessageCode.QrPayment, paymentCode: code, amount } as const;
      const o = await reader.call(scan, grace());
      record(reader, o, "qr", student.card, amount);
      const paid = (o.reply?.message as { status?: number } | undefined)?.status === Status.Ok;
      // A paid 离线付款码 scanned again (a screenshot, a second reader) never pays twice.
      if (paid && code.startsWith("87") && rnd.next() < 0.2) {
        const again = await reader.call(scan, grace());
        const ref = requestReference(reader.terminalId, again.sequence);
        if (!again.reply) unanswered.push(`qr ${ref}`);
        else {
          acknowledged++;
          const status = (again.reply.message as { status?: number }).status;
          if (status !== Status.CodeUsed) {
            failures.push(`offline code scanned again as ${ref} answered ${status}, not CodeUsed`);
          }
        }
      }
    }
    await reader.close();
  };
  const showerLoop = async (r: (typeof shower)[number], idx: number) => {
    const reader = new RetryingReader(endpoint, r.terminalId, r.keyHex, seqBase);
    const mine = cards.slice(48 + idx, 52);
    while (loadGoesOn()) {
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

  /** Each student's phone device (its check-in, once) and the last step it paid a code of. */
  const devices = new Map<Student, { handle: string; key: string; offset: number; step: number }>();
  const phone = (globalThis as unknown as {
    yxtOffline: {
      totp(key: Uint8Array, step: number): Promise<string>;
      code(handle: string, otp: string): string;
      stepOf(ms: number): number;
      fromBase64Url(s: string): Uint8Array;
    };
  }).yxtOffline;

  /** A 离线付款码 of the student's phone, at most one a 30-second step (each pays once). */
  async function offlineCode(student: Student): Promise<string | null> {
    let d = devices.get(student);
    try {
      if (!d) {
        const sent = Date.now();
        const r = await student.web.post("/pay/devices", {}, {
          headers: { "x-csrf-token": student.csrf },
        });
        const sync = r.res.status === 200 ? JSON.parse(r.text) : null;
        if (sync?.state !== "new") throw new Error(`check-in answered ${r.res.status}`);
        d = { handle: sync.handle, key: sync.key, offset: sync.serverTime - sent, step: 0 };
        devices.set(student, d);
      }
    } catch { /* server down */ }
    if (!d) {
      await delay(200);
      return null;
    }
    const step = phone.stepOf(Date.now() + d.offset);
    if (step === d.step) return await paymentCode(student);
    d.step = step;
    return phone.code(d.handle, await phone.totp(phone.fromBase64Url(d.key), step));
  }

  async function paymentCode(student: Student): Promise<string | null> {
    try {
      const page = await student.web.get("/pay/code");
      const digits = /paycode__digits"[^>]*>([\d\s]+)</.exec(page.text)?.[1]?.replace(/\s+/g, "");
      if (page.res.status === 200 && digits && /^\d{18}$/.test(digits)) return digits;
    } catch { /* server down */ }
    await delay(200);
    return null;
  }

  // --- web users: top-ups through the sandbox gateway (duplicate notifies) -------------------------
  const topupLoop = async (student: Student) => {
    while (loadGoesOn()) {
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

  // --- web users: 电费/冷水 through /billing, every form submitted until answered ---------------
  const utilityLoop = async (student: Student, idx: number) => {
    while (loadGoesOn()) {
      try {
        await buyUtility(student, idx < 2);
      } catch { /* server down before the form loaded: the next round starts afresh */ }
      await delay(1500 + rnd.int(1500));
    }
  };

  async function buyUtility(student: Student, faulty: boolean): Promise<void> {
    const utility = rnd.int(2) ? "electricity" : "water";
    const amount = (1 + rnd.int(3)) * 100;
    const form = await student.web.get(`/billing/${utility}`);
    if (form.res.status !== 200) return;
    const token = /name="token" value="([^"]+)"/.exec(form.text)?.[1];
    if (!token) {
      failures.push(`/billing/${utility} has no form token`);
      return;
    }
    const fields = { token, amount: (amount / 100).toFixed(2), quick: "" };
    // A fifth of the forms are submitted twice (a double tap, or a resubmit after a slow answer).
    const times = rnd.next() < 0.2 ? 2 : 1;
    let orderNo: string | null = null;
    for (let i = 0; i < times; i++) {
      let answered = false;
      for (let attempt = 0; attempt < 200 && Date.now() < deadline + 60_000; attempt++) {
        try {
          const r = await student.web.post(`/billing/${utility}`, fields, { csrfFrom: form.text });
          if (r.res.status === 303) {
            const no = /\/billing\/orders\/([A-Z]{2}\d{20})$/.exec(
              r.res.headers.get("location") ?? "",
            )?.[1];
            if (!no) {
              failures.push(`utility purchase redirected to ${r.res.headers.get("location")}`);
            } else if (orderNo && no !== orderNo) {
              failures.push(`one utility form gave two purchases: ${orderNo}, ${no}`);
            } else orderNo = no;
            answered = true;
            break;
          }
          if (r.res.status === 422 || r.res.status === 409) {
            // Refused (balance too low, daily limit): no purchase was acknowledged.
            if (orderNo) failures.push(`a resubmitted form of ${orderNo} was refused afterwards`);
            purchasesRefused++;
            answered = true;
            break;
          }
        } catch { /* server down mid-request: the browser resubmits */ }
        await delay(300);
      }
      if (!answered) unanswered.push(`utility form ${token}`);
      if (i > 0) purchasesResubmitted++;
    }
    if (orderNo) purchases.set(orderNo, { student, utility, amount, faulty });
  }

  // The sysadmin switches every meter to failing twice, for a few seconds, early in the run.
  const meterWindows = (async () => {
    for (const at of [0.15, 0.4]) {
      const wait = started + at * DURATION * 1000 - Date.now();
      if (wait > 0) await delay(wait);
      if (Date.now() > deadline) break;
      if (!await meterFault(admin, { scope: "all", on: "1" })) {
        failures.push("cannot switch on the all-meters fault");
        continue;
      }
      meterFaultWindows++;
      log("meter system: every delivery fails");
      await delay(3000 + rnd.int(3000));
      if (!await meterFault(admin, { scope: "all", on: "0" })) {
        failures.push("cannot switch off the all-meters fault");
      }
      log("meter system: back");
    }
  })();

  // --- finance refunds card payments through the staff page, each form submitted twice -----------
  const refundLoop = async () => {
    while (loadGoesOn()) {
      await delay(2000 + rnd.int(3000));
      const candidates = [...charged].filter(([ref, c]) => c.kind === "card" && !refunded.has(ref));
      if (!candidates.length) continue;
      const [ref, c] = candidates[rnd.int(candidates.length)];
      refunded.add(ref);
      try {
        await refundPayment(ref, c);
      } catch (err) {
        failures.push(`refund of ${ref}: ${(err as Error).message}`);
      }
    }
  };
  const refunded = new Set<string>();

  async function refundPayment(
    ref: string,
    c: { card: number; amount: number },
  ): Promise<void> {
    // The staff member looks the payment up by its transaction number (from the student's receipt).
    let row: { id: number } | undefined;
    for (let i = 0; i < 100; i++) {
      try {
        row = await world.db.selectFrom("ledger_transfers").select("id")
          .where("reference", "=", ref).executeTakeFirst();
        break;
      } catch { /* PostgreSQL restarting */ }
      await delay(300);
    }
    if (!row) return; // reported by the ledger checks
    const page = await staffPage(finance, `/admin/finance/refunds?transfer=${row.id}`);
    if (!page) return;
    const token = /name="token" value="([^"]+)"/.exec(page.text)?.[1];
    if (!token) {
      failures.push(`the refund page of transfer ${row.id} has no form`);
      return;
    }
    // Sometimes first a refund above the original: refused, nothing moves.
    if (rnd.next() < 0.25) {
      const other = await staffPage(finance, `/admin/finance/refunds?transfer=${row.id}`);
      const otherToken = other && /name="token" value="([^"]+)"/.exec(other.text)?.[1];
      if (other && otherToken) {
        const over = await staffPost(finance, "/admin/finance/refunds", {
          transfer_id: String(row.id),
          amount: ((c.amount + 1) / 100).toFixed(2),
          reason: "浸泡测试超额退款",
          token: otherToken,
        }, other.text);
        if (over && over.res.status === 303) {
          failures.push(`a refund above the original of ${ref} was accepted`);
        } else if (over && over.res.status === 422 && over.text.includes("超过可退金额")) {
          refundsOverRefused++;
        } else if (over) {
          failures.push(`a refund above the original of ${ref} answered ${over.res.status}`);
        }
      }
    }
    const amount = 1 + rnd.int(c.amount);
    const fields = {
      transfer_id: String(row.id),
      amount: (amount / 100).toFixed(2),
      reason: "浸泡测试退款",
      token,
    };
    for (let i = 0; i < 2; i++) {
      const r = await staffPost(finance, "/admin/finance/refunds", fields, page.text);
      if (!r) {
        unanswered.push(`finance refund ${token}`);
        return;
      }
      if (r.res.status !== 303 || !/refunded=1/.test(r.res.headers.get("location") ?? "")) {
        failures.push(`finance refund of ${ref} (submit ${i + 1}) answered ${r.res.status}`);
        return;
      }
      financeRefunds.set(token, { reference: ref, transferId: row.id, card: c.card, amount });
    }
  }

  const fuzzing = fuzz(endpoint.port, {
    readers: fuzzReaders.map((r) => ({ terminalId: r.terminalId, keyHex: r.keyHex })),
    chip: fuzzCard.chipNumber,
    refusedChips: refusedCards.map((c) => c.chipNumber),
    refusedSince,
  }, {
    frames: FUZZ_FRAMES,
    until: hardDeadline,
    paceUntil: deadline,
    parallel: FUZZ_CONNECTIONS,
    seed: SEED,
  });
  let fuzzEnded = Date.now();
  fuzzing.then(() => fuzzEnded = Date.now(), () => {}).finally(() => fuzzDone = true);

  await Promise.all([
    ...pos.map(posLoop),
    ...qr.map(qrLoop),
    ...shower.map(showerLoop),
    ...students.map(topupLoop),
    ...students.map(utilityLoop),
    refundLoop(),
    meterWindows,
  ]);
  const fuzzStats: FuzzStats = await fuzzing;
  const fuzzSeconds = Math.max(1, (fuzzEnded - started) / 1000);
  await faults;
  await memory;
  const loadSeconds = (Date.now() - started) / 1000;
  // Under the fuzzer's load, readers keep being answered: no 10 s without an acknowledgement,
  // except around an outage (down, restarting, and 10 s for readers to reconnect after it).
  const quiet = (a: number, b: number) => !outages.some((o) => o.from < b && o.to + 10_000 > a);
  let stalls = 0;
  for (let i = 0; i < progress.length; i++) {
    const j = progress.findIndex((p) => p.t >= progress[i].t + 10_000);
    if (j < 0) break;
    if (
      progress[j].acknowledged === progress[i].acknowledged &&
      quiet(progress[i].t, progress[j].t)
    ) {
      stalls++;
      if (stalls === 1) {
        failures.push(
          `no reader request acknowledged from ${
            new Date(progress[i].t).toISOString().slice(11, 19)
          } for 10 s, with the server and PostgreSQL up: valid traffic did not carry on`,
        );
      }
    }
  }
  log(
    `load done after ${
      loadSeconds.toFixed(0)
    } s: ${acknowledged} acknowledged, ${kills} kills, fuzz ${fuzzStats.frames} frames over ${fuzzStats.connections} connections`,
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

  // --- settle: utility purchases end delivered, or refunded -----------------------------------------
  // Purchases of the failing room are refunded by the worker after 6 failed attempts (about 2.5
  // minutes); those still retrying now are stopped and refunded by finance from the queue. A
  // purchase whose request was killed between recording and paying is retried from the queue.
  // Each button is pressed twice (the second must change nothing).
  const pressed = new Set<string>();
  let queueRefunds = 0;
  let queueRetries = 0;
  const settleBillingUntil = Date.now() + 60_000;
  while (purchases.size) {
    const rows = await world.db.selectFrom("billing_purchases")
      .innerJoin(
        "billing_delivery_jobs",
        "billing_delivery_jobs.purchase_id",
        "billing_purchases.id",
      )
      .select(["billing_purchases.id as id", "order_no", "status", "state"])
      .where("order_no", "in", [...purchases.keys()])
      .where("status", "in", ["paying", "delivering"]).execute();
    if (!rows.length || Date.now() > settleBillingUntil) break;
    const todo = rows.map((r) => {
      const faulty = purchases.get(r.order_no)!.faulty;
      const action = r.state === "paying"
        ? "retry"
        : r.state === "pending" && faulty
        ? "refund"
        : null;
      return { ...r, action };
    }).filter((r) => r.action && !pressed.has(`${r.action}:${r.id}`));
    const page = todo.length ? await staffPage(finance, "/admin/billing/queue") : null;
    await Promise.all(todo.map(async (r) => {
      if (!page) return;
      pressed.add(`${r.action}:${r.id}`);
      for (let i = 0; i < 2; i++) {
        const res = await staffPost(
          finance,
          `/admin/billing/queue/${r.id}/${r.action}`,
          {},
          page.text,
        );
        const st = res?.res.status;
        if (st === 303 && i === 0) r.action === "refund" ? queueRefunds++ : queueRetries++;
        else if (st !== 409 && !(st === 303 && r.action === "retry")) {
          failures.push(`queue ${r.action} of ${r.order_no} (press ${i + 1}) answered ${st}`);
        }
      }
    }));
    await delay(1000);
  }

  // --- settle: what refunds put back into ended 补助 lots goes back at the worker's next round -------
  if (!await awaitEndedLotsReturned(world.db, subsidies, 20_000)) {
    log("补助: ended lots still hold money 20 s after the load (the check names them)");
  }

  // --- graceful shutdown: SIGTERM while reader payments and page loads are in flight ----------------
  await gracefulShutdown(world.db, pos, cards, students[0], students[2]);

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
    // Nothing from the fuzzer's terminals moved money.
    const fuzzMoves = await check.db.selectFrom("ledger_transfers").select("reference")
      .where((eb) => eb.or(fuzzReaders.map((r) => eb("reference", "like", `T${r.terminalId}:%`))))
      .execute();
    if (fuzzMoves.length) {
      failures.push(`the fuzzer moved money: ${fuzzMoves.map((r) => r.reference).slice(0, 5)}`);
    }
    // Every offline record the fuzzer's readers uploaded was refused: acknowledged, charged 0,
    // and in finance's review.
    const fuzzIds = fuzzReaders.map((r) => r.terminalId);
    const offline = await check.db.selectFrom("terminal_offline_records")
      .select((eb) => [
        eb.fn.countAll<number>().as("records"),
        eb.fn.coalesce(eb.fn.sum<number>("charged"), eb.lit(0)).as("charged"),
      ]).where("terminal_id", "in", fuzzIds).executeTakeFirstOrThrow();
    const reviewed = await check.db.selectFrom("finance_offline_reviews")
      .select(["reason", (eb) => eb.fn.countAll<number>().as("n")])
      .where("terminal_id", "in", fuzzIds).groupBy("reason").orderBy("reason").execute();
    const offlineReviewed = reviewed.reduce((a, r) => a + Number(r.n), 0);
    if (Number(offline.charged) !== 0 || fuzzStats.offlineCharged !== 0) {
      failures.push(
        `offline records the server had to refuse were charged: ${offline.charged} fen, ${fuzzStats.offlineCharged} reported`,
      );
    }
    if (offlineReviewed !== Number(offline.records)) {
      failures.push(
        `${offline.records} refused offline records acknowledged but ${offlineReviewed} in review`,
      );
    }
    // ServerBusy while the server or PostgreSQL was down is what a reader is told to retry.
    const during = (t: number) => outages.some((o) => o.from - 1000 <= t && t <= o.to + 10_000);
    const uploadErrors = fuzzStats.offlineUploadErrors.filter((e) => !during(e.at));
    if (uploadErrors.length) {
      failures.push(
        `${uploadErrors.length} well-sealed offline uploads answered with an Error, not their reply: ${
          uploadErrors.slice(0, 5).map((e) => `${e.sequence}: ${e.status}`).join(", ")
        }`,
      );
    }
    if (fuzzStats.offlineRecords > 0 && Number(offline.records) === 0) {
      failures.push(
        `the fuzzer uploaded ${fuzzStats.offlineRecords} offline records, none acknowledged`,
      );
    }
    // Each card's balance is what its acknowledgements add up to.
    const expected = new Map(initialBalances);
    for (const c of charged.values()) expected.set(c.card, expected.get(c.card)! - c.amount);
    for (const t of toppedUp.values()) expected.set(t.card, expected.get(t.card)! + t.amount);
    const lots = await checkSoakSubsidies(check.db, subsidies, failures);
    for (const [card, gone] of lots.expiredByCard) expected.set(card, expected.get(card)! - gone);
    const utility = await checkUtilities(check.db, students, expected);
    const refundedByFinance = await checkFinanceRefunds(check.db, expected);
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
    if (!ledger.ok) {
      failures.push(`ledger verifier: ${ledger.problems.slice(0, 5).join("; ")}`);
      await explainChain(check.db, ledger.problems);
    }
    const moneyIn = [...initialBalances.values()].reduce((a, b) => a + b, 0) +
      [...toppedUp.values()].reduce((a, t) => a + t.amount, 0);
    const moneyOut = [...charged.values()].reduce((a, c) => a + c.amount, 0) -
      refundedByFinance + utility.paid + lots.expired;
    if (sumActual !== moneyIn - moneyOut) {
      failures.push(`sum of balances ${sumActual} ≠ money in ${moneyIn} − out ${moneyOut}`);
    }
    if (ledger.totals.cardBalances !== sumActual) {
      failures.push(
        `the verifier's card balance total ${ledger.totals.cardBalances} ≠ the soak's cards ${sumActual}`,
      );
    }
    // Each acknowledged card, QR and shower payment: one 消费提醒, delivered once on WeChat.
    const spend = await notify.check(
      check.db,
      [...charged.keys()].map((k) => k.replace(/^shower:/, "")),
    );
    failures.push(...spend.failures);
    if (kills < 2 && DURATION >= 30) failures.push(`only ${kills} SIGKILLs happened`);
    const baseline = 400 * 1024 * 1024;
    if (maxRss > baseline) {
      failures.push(`server RSS reached ${(maxRss / 1048576).toFixed(0)} MB (bound 400 MB)`);
    }
    if (fuzzStats.frames < FUZZ_FRAMES) {
      failures.push(`the fuzzer sent ${fuzzStats.frames} of ${FUZZ_FRAMES} frames in the time`);
    }
    for (const c of fuzzStats.codecCrashes) {
      failures.push(`the frame codec threw on a mutated body (not a FrameError): ${c}`);
    }
    const perKind = new Map<string, number>();
    for (const c of charged.values()) perKind.set(c.kind, (perKind.get(c.kind) ?? 0) + 1);
    for (const kind of ["card", "qr", "shower"]) {
      if (!perKind.get(kind)) {
        failures.push(`no ${kind} payment was acknowledged: valid traffic did not carry on`);
      }
    }
    if (toppedUp.size === 0) failures.push("no top-up completed");
    if (!utility.delivered) failures.push("no utility purchase was delivered");
    if (!utility.refunded) failures.push("no failed utility delivery was refunded");
    if (!financeRefunds.size) failures.push("finance refunded nothing");
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
      `utilities              ${purchases.size} purchases acknowledged (${purchasesResubmitted} forms submitted twice, ${purchasesRefused} refused): ${utility.delivered} delivered, ${utility.refunded} refunded after failing (${queueRefunds} stopped by finance from the queue, ${queueRetries} half-paid retried); ${meterFaultWindows} all-meter fault windows`,
    );
    console.log(
      `finance refunds        ${financeRefunds.size} card payments refunded in part or whole (${
        (refundedByFinance / 100).toFixed(2)
      } yuan), each form submitted twice; ${refundsOverRefused} refunds above the original refused`,
    );
    console.log(
      `faults                 ${kills} SIGKILLs, 1 PostgreSQL restart, ${crashes} unexpected exits`,
    );
    console.log(
      `fuzz                   ${fuzzStats.frames} mutated/random frames (${fuzzStats.signed} signed with the real key, ${fuzzStats.signedServed} of them served), ${fuzzStats.valid} valid frames between them, ${fuzzStats.replies} replies; ${fuzzStats.connections} connections (${fuzzStats.unexpectedCloses} closed unexpectedly); ${
        (fuzzStats.frames / fuzzSeconds).toFixed(0)
      } frames/s`,
    );
    console.log(
      `offline (fuzz)         ${fuzzStats.offlineRecords} records the server must refuse uploaded, ${offline.records} acknowledged (${fuzzStats.offlineRefused} itemized as not charged), ${fuzzStats.offlineCharged} reported charged; in review: ${
        reviewed.map((r) => `${r.reason} ${r.n}`).join(", ")
      }`,
    );
    console.log(`graceful shutdown      ${graceful}`);
    const cpu = [...serverCpu.values()].reduce((a, b) => a + b, 0);
    console.log(
      `server                 max RSS ${(maxRss / 1048576).toFixed(0)} MB; ${
        cpu.toFixed(0)
      } CPU seconds in ${DURATION} s of load (load average ${
        (await Deno.readTextFile("/proc/loadavg").catch(() => "?")).split(" ").slice(0, 3).join(" ")
      } on ${navigator.hardwareConcurrency} cores)`,
    );
    console.log(
      `ledger                 ${
        ledger.ok ? "verified" : "FAILED"
      }; card balances ${sumActual} = in ${moneyIn} − out ${moneyOut}`,
    );
    console.log(
      `补助                   payments took ${lots.spentFromLots} fen from the lots; ${lots.expired} went back at their end`,
    );
    console.log(`消费提醒               ${spend.summary}`);
  } finally {
    await check.close();
    await world.close();
  }
  return failures.length;
}

/**
 * For a broken balance chain: prints the card's transfers around the first problem (in id order,
 * which is the order the verifier checks) so the run says what happened.
 */
async function explainChain(db: Db, problems: string[]): Promise<void> {
  const m = problems.map((p) => /card account (\d+): balance after transfer (\d+)/.exec(p))
    .find(Boolean);
  if (!m) return;
  const [card, id] = [Number(m[1]), Number(m[2])];
  const rows = await db.selectFrom("ledger_transfers")
    .select(["id", "kind", "reference", "card_delta", "balance_after", "created_at"])
    .where("card_account_id", "=", card).where("id", ">=", id - 40).where("id", "<=", id + 40)
    .orderBy("id").execute();
  console.log(`\ncard account ${card}, transfers around ${id} (id order):`);
  for (const r of rows) {
    console.log(
      `  ${r.id}${
        r.id === id ? " ←" : ""
      }  ${r.kind}  ${r.reference}  delta ${r.card_delta}  after ${r.balance_after}  ${
        new Date(r.created_at).toISOString()
      }`,
    );
  }
}

/** Counts of ledger transfers by reference. */
async function transferCounts(db: Db, refs: string[]): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (let i = 0; i < refs.length; i += 500) {
    const rows = await db.selectFrom("ledger_transfers").select(["reference"])
      .where("reference", "in", refs.slice(i, i + 500)).execute();
    for (const r of rows) counts.set(r.reference, (counts.get(r.reference) ?? 0) + 1);
  }
  return counts;
}

/**
 * Every acknowledged utility purchase exists once, for its student and amount, and ended
 * delivered (a working meter) or refunded (the failing room): paid exactly once, refunded exactly
 * once when refunded and never otherwise, applied on the meter exactly when delivered. Paid
 * purchases nobody was told about are failures too. Adds the money to `expected` per card.
 */
async function checkUtilities(
  db: Db,
  students: Student[],
  expected: Map<number, number>,
): Promise<{ delivered: number; refunded: number; paid: number }> {
  const out = { delivered: 0, refunded: 0, paid: 0 };
  const rows = await db.selectFrom("billing_purchases")
    .select(["order_no", "account_id", "card_account_id", "amount", "status"])
    .where("account_id", "in", students.map((s) => s.accountId)).execute();
  const byNo = new Map<string, (typeof rows)[number][]>();
  for (const r of rows) byNo.set(r.order_no, [...(byNo.get(r.order_no) ?? []), r]);
  const nos = rows.map((r) => r.order_no);
  const pays = await transferCounts(db, nos.map((n) => `billing:${n}`));
  const refunds = await transferCounts(db, nos.map((n) => `billing-refund:${n}`));
  const applied = new Map<string, number>();
  for (let i = 0; i < nos.length; i += 500) {
    const sim = await db.selectFrom("billing_sim_orders").select("order_no")
      .where("order_no", "in", nos.slice(i, i + 500)).execute();
    for (const r of sim) applied.set(r.order_no, (applied.get(r.order_no) ?? 0) + 1);
  }
  for (const [no, p] of purchases) {
    const found = byNo.get(no) ?? [];
    if (found.length !== 1) {
      failures.push(`acknowledged utility purchase ${no} exists ${found.length} times`);
      continue;
    }
    const r = found[0];
    if (r.account_id !== p.student.accountId || r.amount !== p.amount) {
      failures.push(`utility purchase ${no}: account ${r.account_id}, amount ${r.amount}`);
    }
    const want = p.faulty ? "refunded" : "delivered";
    if (r.status !== want) failures.push(`utility purchase ${no} ended ${r.status}, not ${want}`);
  }
  for (const r of rows) {
    const paid = pays.get(`billing:${r.order_no}`) ?? 0;
    const back = refunds.get(`billing-refund:${r.order_no}`) ?? 0;
    const onMeter = applied.get(r.order_no) ?? 0;
    const seen = purchases.has(r.order_no);
    if (paid > 1) failures.push(`utility purchase ${r.order_no} paid ${paid} times`);
    if (back > 1) failures.push(`utility purchase ${r.order_no} refunded ${back} times`);
    if (onMeter > 1) failures.push(`utility purchase ${r.order_no} applied ${onMeter} times`);
    if (r.status === "delivered" && (paid !== 1 || back !== 0 || onMeter !== 1)) {
      failures.push(
        `delivered utility purchase ${r.order_no}: paid ${paid}, refunded ${back}, on the meter ${onMeter}`,
      );
    }
    if (r.status === "refunded" && (paid !== 1 || back !== 1 || onMeter !== 0)) {
      failures.push(
        `refunded utility purchase ${r.order_no}: paid ${paid}, refunded ${back}, on the meter ${onMeter}`,
      );
    }
    if (r.status === "declined" && (paid !== 0 || back !== 0)) {
      failures.push(`declined utility purchase ${r.order_no} moved money`);
    }
    if (!seen && paid > 0) {
      failures.push(`utility purchase ${r.order_no} (${r.status}) was paid but never acknowledged`);
    }
    if (r.status === "delivered") out.delivered++;
    if (r.status === "refunded") out.refunded++;
    const net = (paid - back) * r.amount;
    out.paid += net;
    expected.set(r.card_account_id, (expected.get(r.card_account_id) ?? 0) - net);
  }
  return out;
}

/**
 * Every refund finance was told was made exists once in the finance records and once in the
 * ledger, no payment got back more than it was, and nothing else was refunded. Adds the money to
 * `expected` per card; returns the total refunded.
 */
async function checkFinanceRefunds(db: Db, expected: Map<number, number>): Promise<number> {
  const rows = await db.selectFrom("finance_refunds")
    .select(["reference", "transfer_id", "amount"]).execute();
  const byRef = new Map<string, number>();
  for (const r of rows) byRef.set(r.reference, (byRef.get(r.reference) ?? 0) + 1);
  const ledger = await transferCounts(db, rows.map((r) => r.reference));
  const acknowledgedRefs = new Set([...financeRefunds.keys()].map((t) => `finance-refund:${t}`));
  for (const [token, f] of financeRefunds) {
    const ref = `finance-refund:${token}`;
    const row = rows.find((r) => r.reference === ref);
    if (byRef.get(ref) !== 1 || !row) {
      failures.push(`finance refund ${ref} recorded ${byRef.get(ref) ?? 0} times`);
      continue;
    }
    if (row.amount !== f.amount || row.transfer_id !== f.transferId) {
      failures.push(`finance refund ${ref}: amount ${row.amount} of transfer ${row.transfer_id}`);
    }
  }
  let total = 0;
  const perTransfer = new Map<number, number>();
  for (const r of rows) {
    if (!acknowledgedRefs.has(r.reference)) {
      failures.push(`finance refund ${r.reference} was made but never acknowledged`);
    }
    if ((ledger.get(r.reference) ?? 0) !== 1) {
      failures.push(
        `finance refund ${r.reference} is ${ledger.get(r.reference) ?? 0}× in the ledger`,
      );
    }
    perTransfer.set(r.transfer_id, (perTransfer.get(r.transfer_id) ?? 0) + r.amount);
    const f = [...financeRefunds.values()].find((x) => x.transferId === r.transfer_id);
    if (f) expected.set(f.card, expected.get(f.card)! + r.amount);
    total += r.amount;
  }
  for (const [transferId, sum] of perTransfer) {
    const original = [...financeRefunds.values()].find((x) => x.transferId === transferId);
    const paid = original ? charged.get(original.reference)?.amount ?? 0 : 0;
    if (sum > paid) failures.push(`transfer ${transferId} refunded ${sum} of ${paid}`);
  }
  return total;
}

/** A staff page, loaded again until the server answers it (it may be restarting). */
async function staffPage(
  web: WebClient,
  path: string,
): Promise<{ res: Response; text: string } | null> {
  for (let i = 0; i < 200; i++) {
    try {
      const r = await web.get(path);
      if (r.res.status === 200) return r;
      if (r.res.status < 500) {
        failures.push(`staff page ${path} answered ${r.res.status}`);
        return null;
      }
    } catch { /* down */ }
    await delay(300);
  }
  return null;
}

/** A staff form, submitted (again, as a browser would) until the server answers it below 500. */
async function staffPost(
  web: WebClient,
  path: string,
  fields: Record<string, string>,
  page: string,
): Promise<{ res: Response; text: string } | null> {
  for (let i = 0; i < 200; i++) {
    try {
      const r = await web.post(path, fields, { csrfFrom: page });
      if (r.res.status < 500) return r;
    } catch { /* down */ }
    await delay(300);
  }
  return null;
}

/** Switches a simulated meter fault through the sysadmin's 模拟计量系统 page. */
async function meterFault(web: WebClient, fields: Record<string, string>): Promise<boolean> {
  const page = await staffPage(web, "/admin/billing/simulator");
  if (!page) return false;
  const r = await staffPost(
    web,
    "/admin/billing/simulator",
    { building: "", room: "", ...fields },
    page.text,
  );
  return r?.res.status === 303;
}

/**
 * SIGTERM with reader payments and web requests in flight. On each POS reader three payments go
 * out back to back: the server must answer every one it started (at least the first, in flight
 * when the signal came) and start none after it; a page load and a utility purchase in flight
 * must be answered; the server must exit 0. A payment it did not answer must not have been
 * charged; after a restart the reader resends it with the same sequence number and gets its
 * answer. Everything acknowledged goes into the same ledger checks as the rest.
 */
async function gracefulShutdown(
  db: Db,
  pos: Array<{ terminalId: number; keyHex: string }>,
  cards: Cardholder[],
  web: Student,
  buyer: Student,
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
  const form = await buyer.web.get("/billing/electricity");
  const token = /name="token" value="([^"]+)"/.exec(form.text)?.[1] ?? "";
  const sent = clients.map(({ c, card }) =>
    [0, 1, 2].map(() => {
      const m = {
        code: MessageCode.CardPayment,
        chip: card.chipNumber,
        amount: 7,
        password: "",
      } as const;
      const { bytes, sequence } = c.frame(m);
      return { m, sequence, reply: withTimeout(c.sendFrame(bytes, sequence), 30_000) };
    })
  );
  const pages = Array.from(
    { length: 4 },
    () =>
      fetch(`${s.url}/wallet`, { headers: { cookie: web.cookieHeader }, redirect: "manual" })
        .then(async (r) => {
          await r.body?.cancel();
          return r.status;
        }).catch((err) => `failed: ${err.message}`),
  );
  const purchase = buyer.web.post("/billing/electricity", {
    token,
    amount: "1.00",
    quick: "",
  }, { csrfFrom: form.text }).then((r) => r, (err) => err as Error);
  await delay(15);
  killing = true;
  const t0 = performance.now();
  s.proc.kill("SIGTERM");
  const replies = await Promise.all(sent.map((per) => Promise.all(per.map((x) => x.reply))));
  const statuses = await Promise.all(pages);
  const bought = await purchase;
  const exit = await withTimeout(s.exited, 30_000);
  const ms = performance.now() - t0;
  await Promise.all(clients.map(({ c }) => c.close()));

  let answered = 0;
  const resend: Array<{ reader: number; sequence: number; m: (typeof sent)[0][0]["m"] }> = [];
  replies.forEach((got, i) => {
    const { r, card } = clients[i];
    if (!got[0]) {
      failures.push(`graceful shutdown: the payment in flight on T${r.terminalId} got no reply`);
    }
    got.forEach((reply, k) => {
      if (k > 0 && reply && !got[k - 1]) {
        failures.push(
          `graceful shutdown: T${r.terminalId} answered a later request, not an earlier`,
        );
      }
      if (!reply) {
        resend.push({ reader: i, sequence: sent[i][k].sequence, m: sent[i][k].m });
        return;
      }
      answered++;
      acknowledged++;
      if ((reply.message as { status?: number }).status === Status.Ok) {
        charged.set(requestReference(r.terminalId, reply.header.sequence), {
          card: card.cardAccountId,
          amount: 7,
          kind: "card",
        });
      }
    });
  });
  const badPages = statuses.filter((st) => st !== 200);
  if (badPages.length) {
    failures.push(`graceful shutdown: page loads in flight answered ${badPages.join(", ")}`);
  }
  let purchaseNote = "";
  if (bought instanceof Error) {
    failures.push(`graceful shutdown: the utility purchase in flight failed: ${bought.message}`);
  } else {
    const no = /\/billing\/orders\/([A-Z]{2}\d{20})$/.exec(
      bought.res.headers.get("location") ?? "",
    )?.[1];
    if (bought.res.status === 303 && no) {
      purchases.set(no, { student: buyer, utility: "electricity", amount: 100, faulty: false });
      purchaseNote = `, utility purchase ${no} answered`;
    } else if (bought.res.status >= 500) {
      failures.push(
        `graceful shutdown: the utility purchase in flight answered ${bought.res.status}`,
      );
    } else purchaseNote = `, utility purchase refused (${bought.res.status})`;
  }
  if (!exit) failures.push("graceful shutdown: the server did not exit within 30 s of SIGTERM");
  else if (exit.code !== 0) failures.push(`graceful shutdown: exit code ${exit.code}`);

  // What was not answered was not started: nothing of it is in the ledger.
  const unstarted = resend.map((x) => requestReference(pos[x.reader].terminalId, x.sequence));
  if (unstarted.length) {
    const done = await db.selectFrom("ledger_transfers").select("reference")
      .where("reference", "in", unstarted).execute();
    for (const d of done) {
      failures.push(`graceful shutdown: ${d.reference} was charged but never answered`);
    }
  }
  // Back up; the readers resend what went unanswered, with the same sequence numbers.
  await launch();
  killing = false;
  const endpoint = { port: server!.terminalPort };
  for (const x of resend) {
    const r = pos[x.reader];
    const reader = new RetryingReader(endpoint, r.terminalId, r.keyHex, 950_000);
    const o = await reader.resend(x.sequence, x.m, Date.now() + 60_000);
    await reader.close();
    const ref = requestReference(r.terminalId, x.sequence);
    if (!o.reply) {
      unanswered.push(`card ${ref} (resent after the graceful shutdown)`);
      continue;
    }
    acknowledged++;
    if ((o.reply.message as { status?: number }).status === Status.Ok) {
      charged.set(ref, { card: clients[x.reader].card.cardAccountId, amount: 7, kind: "card" });
    }
  }
  // The purchase made during the shutdown is delivered by the restarted server's worker.
  const waitUntil = Date.now() + 30_000;
  while (Date.now() < waitUntil) {
    const open = await db.selectFrom("billing_purchases").select("order_no")
      .where("account_id", "=", buyer.accountId).where("status", "in", ["paying", "delivering"])
      .execute();
    if (!open.length) break;
    await delay(500);
  }
  const line = `${answered}/${replies.length * 3} payments answered before exit (${
    replies.filter((g) => g[0]).length
  }/${replies.length} in flight), ${resend.length} not started and answered after a restart; pages ${
    statuses.join(",")
  }${purchaseNote}; exit ${exit?.code} after ${ms.toFixed(0)} ms`;
  log(`graceful shutdown: ${line}`);
  graceful = line;
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
  await notify?.close().catch(() => {});
}
if (failures.length) {
  console.log(`\nFAILED: ${failures.length} problems`);
  for (const f of failures.slice(0, 40)) console.log(`  - ${f}`);
  Deno.exit(1);
}
console.log("\nsoak passed");
Deno.exit(code === 0 ? 0 : 1);
