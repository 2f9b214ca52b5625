/**
 * The drill's load and its oracle: readers paying by card (resending unanswered requests under
 * the same sequence number), web users viewing pages, topping up through the sandbox gateway and
 * buying electricity/water, each form resubmitted until answered. Everything a client was told
 * is recorded, with when, so the database can be checked against it afterwards.
 */
import { MessageCode, requestReference, Status } from "../terminal/mod.ts";
import type { Db } from "../modules/platform/mod.ts";
import { getBalance, verifyLedger } from "../modules/wallet/mod.ts";
import { seedDemoBilling } from "../modules/billing/mod.ts";
import { delay } from "../bench/_lib.ts";
import { RetryingReader } from "../bench/_reader.ts";
import {
  type Cardholder,
  createCardholders,
  createReaders,
  type Reader,
  signedInStudent,
  type Student,
} from "../bench/_world.ts";

/** An acknowledgement a client received. */
interface Ack {
  card: number;
  amount: number;
  sentAt: number;
  ackAt: number;
}

/** The readers, cards and students of one phase. */
export interface World {
  cards: Cardholder[];
  readers: Reader[];
  students: Student[];
  startBalances: Map<number, number>;
}

/** Builds the world through the modules' functions on `db`; students sign in at `webUrl`. */
export async function buildWorld(
  db: Db,
  secrets: { appSecret: string; cardPepper: string },
  options: { tag: string; readers: number; students: number; webUrl: string },
): Promise<World> {
  const readers = await createReaders(db, secrets, {
    code: `DRILL-${options.tag}`,
    name: `演练食堂${options.tag}`,
    category: "canteen",
    kind: "canteen_pos",
    count: options.readers,
  });
  const cards = await createCardholders(db, secrets, {
    first: 1,
    count: options.readers * 4 + options.students,
    balance: 500_000,
    tag: `drill-${options.tag}`,
  });
  await seedDemoBilling(db);
  const room = await db.selectFrom("billing_rooms").select(["id", "building_id"])
    .orderBy("id").limit(1).executeTakeFirstOrThrow();
  const students: Student[] = [];
  for (let i = 0; i < options.students; i++) {
    const s = await signedInStudent(
      db,
      options.webUrl,
      cards[options.readers * 4 + i],
      `137${String(i + 1).padStart(8, "0")}`,
    );
    const r = await s.web.submit(`/billing/room?building=${room.building_id}`, "/billing/room", {
      building: String(room.building_id),
      room: String(room.id),
    });
    if (r.res.status !== 303) throw new Error(`choosing a room answered ${r.res.status}`);
    students.push(s);
  }
  const startBalances = new Map<number, number>();
  for (const c of cards) {
    startBalances.set(c.cardAccountId, (await getBalance(db, c.cardAccountId)).balance);
  }
  return { cards, readers, students, startBalances };
}

/** The load of one phase, and what its clients were told. */
export class Load {
  readonly charged = new Map<string, Ack>();
  readonly toppedUp = new Map<string, Ack>();
  readonly purchased = new Map<string, Ack>();
  readonly confirmed = new Map<string, { student: Student; amount: number; sentAt: number }>();
  readonly unanswered: string[] = [];
  /** Web responses a person would see as an error page (5xx), with when. */
  readonly webErrors: Array<{ at: number; what: string }> = [];
  /** Web requests that got no answer at all (connection failed), with when. */
  readonly webUnreachable: Array<{ at: number; what: string }> = [];
  webOk = 0;
  webRequests = 0;
  /** Web requests the browser sent again after its connection failed before any answer. */
  browserResends = 0;
  /**
   * Reader requests sent more than once (the connection closed or the reply was late, or the
   * server was busy): what finally answered each.
   */
  readonly resent: Array<{ ref: string; attempts: number; answer: string }> = [];
  /** Reader payments and web pages answered successfully: when sent and when answered. */
  readonly readerAcks: Array<{ sentAt: number; ackAt: number }> = [];
  readonly webAcks: Array<{ sentAt: number; ackAt: number }> = [];
  #running = true;
  #loops: Promise<void>[] = [];
  readonly #readers: RetryingReader[] = [];

  constructor(
    readonly world: World,
    readonly endpoint: { port: number },
    readonly options: { pace: number },
  ) {}

  start(): void {
    const { world } = this;
    this.#loops = [
      ...world.readers.map((r, i) => this.#readerLoop(r, world.cards.slice(i * 4, i * 4 + 4))),
      ...world.students.map((s) => this.#pageLoop(s)),
      ...world.students.map((s) => this.#topupLoop(s)),
      ...world.students.map((s) => this.#utilityLoop(s)),
    ];
  }

  /** Stops making new requests and waits until every one in flight is answered or given up. */
  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
  }

  /** Reader connections opened again after one closed (through HAProxy: to whichever instance). */
  get readerReconnects(): number {
    return this.#readers.reduce((n, r) => n + Math.max(0, r.reconnects - 1), 0);
  }

  /** Requests the readers sent again (same sequence number). */
  get readerResends(): number {
    return this.#readers.reduce((n, r) => n + r.retries, 0);
  }

  /** The `n` longest reader waits, as "HH:MM:SS.mmm +N ms" (when sent, how long). */
  slowestReaderWaits(n: number): string[] {
    return [...this.readerAcks].sort((a, b) => (b.ackAt - b.sentAt) - (a.ackAt - a.sentAt))
      .slice(0, n).map((a) =>
        `${new Date(a.sentAt).toISOString().slice(11, 23)} +${a.ackAt - a.sentAt} ms`
      );
  }

  /** The longest a reader waited for the answer to one payment (ms), resends included. */
  get longestReaderWait(): number {
    return Math.max(0, ...this.readerAcks.map((a) => a.ackAt - a.sentAt));
  }

  /**
   * After `t`: how long until a reader payment and a web page *sent* after `t` were answered
   * (ms from `t`), i.e. until the system served new work again.
   */
  recoveredAfter(t: number): { reader: number; web: number } {
    const first = (acks: Array<{ sentAt: number; ackAt: number }>) =>
      Math.min(...acks.filter((a) => a.sentAt >= t).map((a) => a.ackAt)) - t;
    return { reader: first(this.readerAcks), web: first(this.webAcks) };
  }

  async #readerLoop(r: Reader, cards: Cardholder[]): Promise<void> {
    const reader = new RetryingReader(this.endpoint, r.terminalId, r.keyHex, 1000);
    this.#readers.push(reader);
    let n = 0;
    while (this.#running) {
      const card = cards[n++ % cards.length];
      const amount = 1 + (n % 23);
      const sentAt = Date.now();
      const o = await reader.call(
        { code: MessageCode.CardPayment, chip: card.chipNumber, amount, password: "" },
        Date.now() + 120_000,
      );
      const ref = requestReference(r.terminalId, o.sequence);
      const status = (o.reply?.message as { status?: number } | undefined)?.status;
      if (o.attempts > 1) {
        const answer = !o.reply
          ? "no answer"
          : o.reply.header.type === MessageCode.Error
          ? `Error ${status}`
          : status === Status.Ok
          ? "ok"
          : `status ${status}`;
        this.resent.push({ ref, attempts: o.attempts, answer });
      }
      if (!o.reply) this.unanswered.push(`reader payment ${ref}`);
      else if (o.reply.header.type === MessageCode.Error) {
        this.unanswered.push(`reader payment ${ref} answered Error ${status}`);
      } else if (status === Status.Ok) {
        const ackAt = Date.now();
        this.charged.set(ref, { card: card.cardAccountId, amount, sentAt, ackAt });
        this.readerAcks.push({ sentAt, ackAt });
      }
      await delay(this.options.pace);
    }
    await reader.close();
  }

  /**
   * One web request as a person's browser makes it: an error page or no answer is counted. Like a
   * browser, it sends the request once more when the connection fails before any answer (a
   * kept-alive connection that nginx's old worker closed on reload, just as it was reused).
   */
  async #web<T extends { res: Response }>(what: string, f: () => Promise<T>): Promise<T | null> {
    this.webRequests++;
    const sentAt = Date.now();
    try {
      const r = await f().catch(() => {
        this.browserResends++;
        return f();
      });
      if (r.res.status >= 500) {
        this.webErrors.push({ at: Date.now(), what: `${what} ${r.res.status}` });
      } else {
        this.webOk++;
        this.webAcks.push({ sentAt, ackAt: Date.now() });
      }
      return r;
    } catch (err) {
      this.webUnreachable.push({ at: Date.now(), what: `${what}: ${(err as Error).message}` });
      return null;
    }
  }

  async #pageLoop(s: Student): Promise<void> {
    const pages = ["/wallet", "/wallet/transactions", "/", "/me"];
    let i = 0;
    while (this.#running) {
      await this.#web(`GET ${pages[i % pages.length]}`, () => s.web.get(pages[i++ % pages.length]));
      await delay(this.options.pace * 2);
    }
  }

  async #topupLoop(s: Student): Promise<void> {
    let n = 0;
    while (this.#running) {
      const amount = (1 + (n++ % 5)) * 100;
      const form = await this.#web("GET 充值", () => s.web.get("/wallet/recharge?method=sandbox"));
      if (form?.res.status === 200) {
        const created = await this.#web("POST 充值", () =>
          s.web.post("/wallet/recharge", {
            amount: (amount / 100).toFixed(2),
            quick: "",
            method: "sandbox",
          }, { csrfFrom: form.text }));
        const to = created?.res.headers.get("location") ?? "";
        const orderNo = /^\/pay\/sandbox\/([^/?]+)$/.exec(to)?.[1];
        const pay = orderNo
          ? await this.#web("GET 测试支付", () => s.web.get(`/pay/sandbox/${orderNo}`))
          : null;
        if (orderNo && pay?.res.status === 200) {
          // 确认支付 is idempotent: pressed again until the server answers.
          for (let i = 0; i < 200; i++) {
            const r = await this.#web(
              "POST 确认支付",
              () => s.web.post(`/pay/sandbox/${orderNo}/confirm`, {}, { csrfFrom: pay.text }),
            );
            if (r?.res.status === 303) {
              this.confirmed.set(orderNo, { student: s, amount, sentAt: Date.now() });
              break;
            }
            await delay(300);
          }
        }
      }
      await delay(this.options.pace * 10);
    }
  }

  async #utilityLoop(s: Student): Promise<void> {
    let n = 0;
    while (this.#running) {
      const utility = n++ % 2 ? "electricity" : "water";
      const amount = 100 + (n % 3) * 100;
      const form = await this.#web(`GET ${utility}`, () => s.web.get(`/billing/${utility}`));
      const token = form && /name="token" value="([^"]+)"/.exec(form.text)?.[1];
      if (form && token) {
        const sentAt = Date.now();
        const fields = { token, amount: (amount / 100).toFixed(2), quick: "" };
        // The browser resubmits the same form (same one-time token) until it gets an answer.
        for (let i = 0; i < 400; i++) {
          const r = await this.#web(
            `POST ${utility}`,
            () => s.web.post(`/billing/${utility}`, fields, { csrfFrom: form.text }),
          );
          const no = /\/billing\/orders\/([A-Z]{2}\d{20})$/.exec(
            r?.res.headers.get("location") ?? "",
          )
            ?.[1];
          if (r?.res.status === 303 && no) {
            this.purchased.set(no, {
              card: s.card.cardAccountId,
              amount,
              sentAt,
              ackAt: Date.now(),
            });
            break;
          }
          if (r && r.res.status >= 400 && r.res.status < 500) break;
          await delay(300);
        }
      }
      await delay(this.options.pace * 15);
    }
  }

  /** Waits for the confirmed top-ups to be paid (the sandbox notifies, retried by the server). */
  async settle(ms = 60_000): Promise<void> {
    const until = Date.now() + ms;
    for (const [orderNo, o] of this.confirmed) {
      while (Date.now() < until) {
        const page = await o.student.web.get(`/wallet/recharge/orders/${orderNo}`).catch(() =>
          null
        );
        if (page?.text.includes("充值成功")) {
          this.toppedUp.set(orderNo, {
            card: o.student.card.cardAccountId,
            amount: o.amount,
            sentAt: o.sentAt,
            ackAt: Date.now(),
          });
          break;
        }
        if (page && /已关闭|支付失败|已取消/.test(page.text)) break;
        await delay(500);
      }
    }
  }
}

/** The outcome of checking a database against what the clients were told. */
export interface Verdict {
  acknowledged: number;
  lost: string[];
  doubled: string[];
  balanceMismatches: string[];
  ledgerOk: boolean;
  ledgerProblems: string[];
}

/** How many ledger transfers carry each reference. */
async function referenceCounts(db: Db, refs: string[]): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (let i = 0; i < refs.length; i += 500) {
    const rows = await db.selectFrom("ledger_transfers").select("reference")
      .where("reference", "in", refs.slice(i, i + 500)).execute();
    for (const r of rows) counts.set(r.reference, (counts.get(r.reference) ?? 0) + 1);
  }
  return counts;
}

/**
 * Every acknowledged payment, top-up and utility purchase (those acknowledged before `before`,
 * when given) is in the ledger exactly once; with `balances`, each card's balance is what its
 * acknowledgements add up to; and the ledger verifier passes.
 */
export async function verify(
  db: Db,
  load: Load,
  options: { before?: number; balances: boolean },
): Promise<Verdict> {
  const cutoff = options.before ?? Infinity;
  const expected: Array<[string, Ack, number]> = [
    ...[...load.charged].map(([ref, a]) => [ref, a, -a.amount] as [string, Ack, number]),
    ...[...load.toppedUp].map(([no, a]) => [`topup:${no}`, a, a.amount] as [string, Ack, number]),
    ...[...load.purchased].map(([no, a]) =>
      [`billing:${no}`, a, -a.amount] as [string, Ack, number]
    ),
  ].filter(([, a]) => a.ackAt < cutoff);
  const counts = await referenceCounts(db, expected.map(([ref]) => ref));
  const lost = expected.filter(([ref]) => !counts.has(ref)).map(([ref]) => ref);
  const doubled = [...counts].filter(([, n]) => n > 1).map(([ref, n]) => `${ref} ×${n}`);
  const balanceMismatches: string[] = [];
  if (options.balances) {
    const want = new Map(load.world.startBalances);
    for (const [, a, delta] of expected) want.set(a.card, want.get(a.card)! + delta);
    for (const [card, balance] of want) {
      const got = (await getBalance(db, card)).balance;
      if (got !== balance) {
        balanceMismatches.push(`card ${card}: ${got}, acknowledgements say ${balance}`);
      }
    }
  }
  const ledger = await verifyLedger(db);
  return {
    acknowledged: expected.length,
    lost,
    doubled,
    balanceMismatches,
    ledgerOk: ledger.ok,
    ledgerProblems: ledger.problems.slice(0, 5),
  };
}

/**
 * Every reader request that was sent more than once was answered, and answered once: its payment
 * is acknowledged and in the ledger exactly once. Returns the problems (none when all is well).
 */
export async function checkResent(db: Db, load: Load): Promise<string[]> {
  const problems = load.resent.filter((r) => r.answer !== "ok")
    .map((r) => `reader payment ${r.ref} sent ${r.attempts} times: ${r.answer}`);
  const answered = load.resent.filter((r) => r.answer === "ok").map((r) => r.ref);
  const counts = await referenceCounts(db, answered);
  for (const ref of answered) {
    const n = counts.get(ref) ?? 0;
    if (n !== 1) {
      problems.push(`reader payment ${ref}, resent and answered, is in the ledger ${n} times`);
    }
    if (!load.charged.has(ref)) {
      problems.push(`reader payment ${ref}, resent, was not acknowledged`);
    }
  }
  return problems;
}

/**
 * Waits until no acknowledged utility purchase is still half-paid. A purchase whose web request
 * failed between its row and its payment (the database went away) is acknowledged to the form's
 * resubmission while still `paying`; the delivery worker finishes paying it once its grace has
 * passed (2 minutes, billing's payingGraceMs), so this waits longer than that.
 */
export async function settlePurchases(db: Db, load: Load, ms = 180_000): Promise<number> {
  const nos = [...load.purchased.keys()];
  const until = Date.now() + ms;
  while (nos.length) {
    const rows = await db.selectFrom("billing_purchases").select("order_no")
      .where("order_no", "in", nos).where("status", "=", "paying").execute();
    if (!rows.length || Date.now() > until) return rows.length;
    await delay(1000);
  }
  return 0;
}
