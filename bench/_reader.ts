/**
 * A reader as the soak needs it: it survives server restarts, numbers its requests itself and,
 * as PROTOCOL.md §3 demands, resends an unanswered request with the same sequence number until a
 * reply arrives (refreshing only the timestamp when it grows old).
 */
import { encodeFrame, type Message, MessageCode, Status } from "../terminal/mod.ts";
import { keyFromHex, type Received, TerminalClient } from "../terminal/sim/client.ts";
import { delay } from "./_lib.ts";

/** Where the reader connects; the port stays the same across restarts. */
export interface Endpoint {
  port: number;
}

/** What happened to one request. */
export interface Outcome {
  sequence: number;
  reply: Received | null;
  attempts: number;
}

/** A reader that keeps one connection and reconnects after any failure. */
export class RetryingReader {
  #client: TerminalClient | null = null;
  readonly key: Uint8Array;
  /** Requests resent at least once (their reply was lost or late). */
  retries = 0;
  reconnects = 0;

  constructor(
    readonly endpoint: Endpoint,
    readonly terminalId: number,
    keyHex: string,
    public sequence: number,
  ) {
    this.key = keyFromHex(keyHex);
  }

  /**
   * The open connection, or a new one. The first frame on a new connection is the unanswered
   * request itself, not a SignOn (PROTOCOL.md §3): a SignOn would take a higher number, and the
   * request's own number, had the server never recorded it, would then be refused as
   * SequenceReused (rule 3) — while it might still be in flight on the instance that went away.
   */
  async #connected(until: number): Promise<TerminalClient | null> {
    while (Date.now() < until) {
      if (this.#client && !this.#client.closed) return this.#client;
      this.#client = null;
      try {
        this.#client = await TerminalClient.connect({
          port: this.endpoint.port,
          terminalId: this.terminalId,
          key: this.key,
        });
        this.reconnects++;
        return this.#client;
      } catch { /* server down: try again shortly */ }
      await delay(150 + Math.random() * 150);
    }
    return null;
  }

  /**
   * Sends `m` under a new sequence number and waits for its reply, resending the same request
   * after a lost reply, a closed connection or ServerBusy, until `until` (epoch ms).
   */
  async call(m: Message, until: number): Promise<Outcome> {
    const sequence = this.sequence++;
    return await this.resend(sequence, m, until);
  }

  /** Sends (again) the request `m` under `sequence` until answered or `until`. */
  async resend(sequence: number, m: Message, until: number): Promise<Outcome> {
    let built = Math.floor(Date.now() / 1000);
    let bytes = encodeFrame(
      this.key,
      { terminalId: this.terminalId, sequence, timestamp: built },
      m,
    );
    let attempts = 0;
    while (Date.now() < until) {
      const c = await this.#connected(until);
      if (!c) break;
      attempts++;
      if (attempts > 1) this.retries++;
      // The same bytes on a retry; the same body with a fresh timestamp once the old one ages.
      if (Date.now() / 1000 - built > 200) {
        built = Math.floor(Date.now() / 1000);
        bytes = encodeFrame(
          this.key,
          { terminalId: this.terminalId, sequence, timestamp: built },
          m,
        );
      }
      let reply: Received | null = null;
      try {
        reply = await withTimeout(c.sendFrame(bytes, sequence), 5000);
      } catch {
        reply = null;
      }
      if (!reply) {
        await c.close().catch(() => {});
        this.#client = null;
        continue;
      }
      const status = (reply.message as { status?: number }).status;
      if (reply.header.type === MessageCode.Error && status === Status.ServerBusy) {
        await delay(200);
        continue;
      }
      if (reply.header.type === MessageCode.Error && status === Status.StaleTimestamp) {
        built = 0;
        continue;
      }
      return { sequence, reply, attempts };
    }
    return { sequence, reply: null, attempts };
  }

  async close(): Promise<void> {
    await this.#client?.close().catch(() => {});
    this.#client = null;
  }
}

/** The promise's value, or null after `ms` or when it fails (a late failure is swallowed). */
export async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | null> {
  const p = promise.catch(() => null);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<null>((resolve) => {
    timer = setTimeout(() => resolve(null), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
