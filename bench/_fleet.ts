/**
 * The bench's own load generator for readers: a fleet of readers of one kind that stay connected
 * between measurements (so a short measurement is not a reconnection storm), numbering their own
 * requests across reconnects. Two ways to load the server:
 *
 * - closed loop: each reader sends its next request as soon as the previous reply arrives;
 * - open loop: requests arrive at a fixed offered rate with Poisson arrivals (each reader its share
 *   of the rate, queueing at the reader like students at a till), and latency counts from the
 *   arrival, not from when the reader got round to sending it, so a slow server cannot slow the
 *   arrivals down and hide its own queue.
 *
 * A QR reader's 付款码 comes from the bench's own database connection (named `yxt-bench-issuer`,
 * its CPU not counted as the server's database work), fetched for the next payment while the
 * current one is in flight; a QR payment's latency starts when its code is in hand.
 */
import { MessageCode, type Received, Status, statusName, TerminalClient } from "../terminal/mod.ts";
import { openDatabase } from "../modules/platform/mod.ts";
import { issuePaymentCode } from "../modules/wallet/mod.ts";
import { percentile } from "./_lib.ts";
import { withTimeout } from "./_reader.ts";
import { createLoadReaders, openWorld, type Secrets } from "./_world.ts";

export type Kind = "card" | "qr" | "shower";

/** A registered reader with the cards it swipes (its own: no two readers share a card). */
export interface FleetReader {
  terminalId: number;
  keyHex: string;
  cards: Array<{ cardAccountId: number; chip: string }>;
}

/** What one measurement of a fleet gave. */
export interface SliceResult {
  kind: Kind;
  readers: number;
  /** Length of the load in seconds (arrivals or sends happen inside it). */
  seconds: number;
  /** Requests answered Ok (a shower pair counts once, as its end). */
  ok: number;
  /** Ok answers that arrived inside the load's seconds, per second. */
  perSecond: number;
  /** Answered with another status, or failed (no reply, connection lost). */
  errors: number;
  refusals: Record<string, number>;
  /** Open loop: arrivals offered. */
  offered: number;
  /** Latency percentiles in ms; a failed request counts as infinitely late. */
  p50: number;
  p95: number;
  p99: number;
  max: number;
  /** Share of requests slower than `limitMs` (or failed). */
  overLimit: number;
}

/** A request that got no reply within this long counts as failed and its connection is dropped. */
const REPLY_TIMEOUT_MS = 10_000;

/** Refreshed when older than this: a 付款码 lives 60 s. */
const CODE_MAX_AGE_MS = 30_000;

class Reader {
  #client: TerminalClient | null = null;
  #sequence = 1;
  #turn = 0;
  #nextCode: { card: number; at: number; code: Promise<string | null> } | null = null;

  constructor(
    readonly info: FleetReader,
    readonly port: number,
    readonly issueCode?: (cardAccountId: number) => Promise<string>,
  ) {}

  get connected(): boolean {
    return !!this.#client && !this.#client.closed;
  }

  /** Connects (if not connected) and signs on. */
  async connect(): Promise<void> {
    if (this.connected) return;
    const c = await TerminalClient.connect({
      port: this.port,
      terminalId: this.info.terminalId,
      key: this.info.keyHex,
      sequence: this.#sequence,
    });
    const reply = await withTimeout(
      c.request({ code: MessageCode.SignOn, firmware: "yxt-bench" }),
      REPLY_TIMEOUT_MS,
    );
    this.#sequence = c.sequence;
    const status = (reply?.message as { status?: number } | undefined)?.status;
    if (status !== Status.Ok) {
      await c.close();
      throw new Error(
        `sign-on of reader ${this.info.terminalId} answered ${
          status === undefined ? "nothing" : statusName(status)
        }`,
      );
    }
    this.#client = c;
  }

  /** Sends `m` and returns the reply's message; no reply in time drops the connection. */
  async #request(m: Parameters<TerminalClient["request"]>[0]): Promise<{ status: number }> {
    if (!this.connected) await this.connect();
    const c = this.#client!;
    const reply: Received | null = await withTimeout(c.request(m), REPLY_TIMEOUT_MS);
    this.#sequence = c.sequence;
    if (!reply) {
      await c.close();
      throw new Error("no reply");
    }
    return reply.message as { status: number };
  }

  /** The 付款码 of the card at `turn`: the one fetched ahead when it is still fresh. */
  #code(turn: number): Promise<string | null> {
    const ahead = this.#nextCode;
    if (ahead && ahead.card === turn && performance.now() - ahead.at < CODE_MAX_AGE_MS) {
      return ahead.code;
    }
    return this.#issue(turn);
  }

  #issue(turn: number): Promise<string | null> {
    const card = this.info.cards[turn % this.info.cards.length];
    return this.issueCode!(card.cardAccountId).catch(() => null);
  }

  /**
   * One operation of `kind` (a payment, or a shower start and end); returns its status and when
   * its latency starts (later than `from` only for a QR payment whose code was not yet in hand).
   */
  async operate(kind: Kind, from: number): Promise<{ status: number; began: number }> {
    const turn = this.#turn++;
    const card = this.info.cards[turn % this.info.cards.length];
    if (kind === "card") {
      const m = await this.#request({
        code: MessageCode.CardPayment,
        chip: card.chip,
        amount: 1,
        password: "",
      });
      return { status: m.status, began: from };
    }
    if (kind === "qr") {
      const code = await this.#code(turn);
      // The next card's code is fetched while this payment is in flight (two cards or more:
      // issuing a code retires the same card's older one, never this one).
      this.#nextCode = { card: turn + 1, at: performance.now(), code: this.#issue(turn + 1) };
      const began = Math.max(from, performance.now());
      if (!code) throw new Error("no payment code");
      const m = await this.#request({ code: MessageCode.QrPayment, paymentCode: code, amount: 1 });
      return { status: m.status, began };
    }
    // A shower: the start holds money, the end (with the hold's id from the start's reply) charges.
    const start = await this.#request({ code: MessageCode.ShowerStart, chip: card.chip }) as {
      status: number;
      holdId: number;
    };
    if (start.status !== Status.Ok) return { status: start.status, began: from };
    const end = await this.#request({
      code: MessageCode.ShowerEnd,
      holdId: start.holdId,
      units: 10,
    });
    return { status: end.status, began: from };
  }

  async close(): Promise<void> {
    await this.#client?.close().catch(() => {});
    this.#client = null;
  }
}

/** Collects outcomes of one measurement. */
class Tally {
  latencies: number[] = [];
  ok = 0;
  okInTime = 0;
  errors = 0;
  refusals: Record<string, number> = {};

  record(status: number | null, ms: number, inTime: boolean): void {
    if (status === Status.Ok) {
      this.ok++;
      if (inTime) this.okInTime++;
      this.latencies.push(ms);
      return;
    }
    this.errors++;
    this.latencies.push(Infinity);
    const name = status === null ? "failed" : statusName(status);
    this.refusals[name] = (this.refusals[name] ?? 0) + 1;
  }

  result(
    kind: Kind,
    readers: number,
    seconds: number,
    offered: number,
    limitMs: number,
  ): SliceResult {
    const sorted = this.latencies.sort((a, b) => a - b);
    const over = sorted.filter((ms) => ms > limitMs).length;
    return {
      kind,
      readers,
      seconds,
      ok: this.ok,
      perSecond: this.okInTime / seconds,
      errors: this.errors,
      refusals: this.refusals,
      offered,
      p50: percentile(sorted, 50),
      p95: percentile(sorted, 95),
      p99: percentile(sorted, 99),
      max: sorted.at(-1) ?? NaN,
      overLimit: sorted.length ? over / sorted.length : NaN,
    };
  }
}

/** Readers of one kind against one server's reader port. */
export class Fleet {
  readonly #readers: Reader[];

  constructor(
    readonly kind: Kind,
    port: number,
    readers: FleetReader[],
    issueCode?: (cardAccountId: number) => Promise<string>,
  ) {
    if (kind === "qr" && !issueCode) throw new Error("QR readers need a way to issue 付款码");
    if (readers.some((r) => r.cards.length < (kind === "qr" ? 2 : 1))) {
      throw new Error(`${kind} readers need ${kind === "qr" ? "two cards" : "a card"} each`);
    }
    this.#readers = readers.map((r) => new Reader(r, port, issueCode));
  }

  get size(): number {
    return this.#readers.length;
  }

  /**
   * Connects the first `n` readers that are not connected, 40 at a time (the server holds at
   * most 50 connections of one address that have not yet sent an accepted frame).
   */
  async connect(n: number): Promise<void> {
    if (n > this.#readers.length) {
      throw new Error(`the ${this.kind} fleet has ${this.#readers.length} readers, not ${n}`);
    }
    const todo = this.#readers.slice(0, n).filter((r) => !r.connected);
    for (let i = 0; i < todo.length; i += 40) {
      await Promise.all(todo.slice(i, i + 40).map((r) => r.connect()));
    }
  }

  async #one(r: Reader, from: number): Promise<{ status: number | null; began: number }> {
    try {
      return await r.operate(this.kind, from);
    } catch {
      return { status: null, began: from };
    }
  }

  /** The first `n` readers each as fast as replies come, for `seconds`. */
  async closed(n: number, seconds: number, limitMs = 20): Promise<SliceResult> {
    await this.connect(n);
    const tally = new Tally();
    const start = performance.now();
    const deadline = start + seconds * 1000;
    await Promise.all(
      this.#readers.slice(0, n).map(async (r) => {
        while (performance.now() < deadline) {
          const { status, began } = await this.#one(r, performance.now());
          const end = performance.now();
          tally.record(status, end - began, end <= deadline);
        }
      }),
    );
    return tally.result(this.kind, n, seconds, 0, limitMs);
  }

  /**
   * The first `n` readers offered `rate` operations a second in all (Poisson arrivals, each
   * reader a rate / n share) for `seconds`; every arrival is answered or failed before this returns.
   */
  async open(n: number, rate: number, seconds: number, limitMs = 20): Promise<SliceResult> {
    await this.connect(n);
    const tally = new Tally();
    const start = performance.now();
    const deadline = start + seconds * 1000;
    const meanGapMs = (1000 * n) / rate;
    let offered = 0;
    await Promise.all(
      this.#readers.slice(0, n).map(async (r) => {
        let arrival = start;
        for (;;) {
          // Exponential gaps: a Poisson process of rate / n per reader.
          arrival += -Math.log(1 - Math.random()) * meanGapMs;
          if (arrival >= deadline) break;
          offered++;
          const wait = arrival - performance.now();
          if (wait > 0) await new Promise((res) => setTimeout(res, wait));
          const { status, began } = await this.#one(r, arrival);
          const end = performance.now();
          tally.record(status, end - began, end <= deadline);
        }
      }),
    );
    return tally.result(this.kind, n, seconds, offered, limitMs);
  }

  async close(): Promise<void> {
    await Promise.all(this.#readers.map((r) => r.close()));
  }
}

/** A fleet of each kind against one server, and the database connection that issues 付款码. */
export interface Fleets {
  card: Fleet;
  qr: Fleet;
  shower: Fleet;
  close(): Promise<void>;
}

/**
 * Creates `sizes[kind]` readers of each kind (two funded cards each) in the server's database and
 * returns them as fleets against the server's reader port. `issuerUser` is the role the 付款码
 * connection signs in as (profiling tells its statements apart by role).
 */
export async function openFleets(
  databaseUrl: string,
  secrets: Secrets,
  port: number,
  sizes: Record<Kind, number>,
  options: { issuerUser?: string } = {},
): Promise<Fleets> {
  const world = await openWorld(databaseUrl);
  const made = {} as Record<Kind, FleetReader[]>;
  try {
    for (const [i, kind] of (["card", "qr", "shower"] as const).entries()) {
      made[kind] = await createLoadReaders(world.db, secrets, {
        kind,
        count: sizes[kind],
        cardsPerReader: 2,
        first: 100_001 + i * 100_000,
        balance: 10_000_000,
      });
    }
  } finally {
    await world.close();
  }
  const u = new URL(databaseUrl);
  u.searchParams.set("application_name", "yxt-bench-issuer");
  if (options.issuerUser) u.username = options.issuerUser;
  const issuer = await openDatabase({ databaseUrl: u.toString(), poolSize: 8 });
  const issue = async (cardAccountId: number) =>
    (await issuePaymentCode(issuer.db, cardAccountId)).code;
  const fleets = {
    card: new Fleet("card", port, made.card),
    qr: new Fleet("qr", port, made.qr, issue),
    shower: new Fleet("shower", port, made.shower),
  };
  return {
    ...fleets,
    async close() {
      await Promise.all(Object.values(fleets).map((f) => f.close()));
      await issuer.close();
    },
  };
}
