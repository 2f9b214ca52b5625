/**
 * The listener's registry of terminals: each one's row (status, merchant, key version) and key,
 * trusted for `ttlMs` after it was read, so a terminal disabled or re-keyed by staff is refused
 * within that time on every instance. A reader paying once a second would otherwise wait for a
 * lookup before nearly every payment: the terminals in use are read again together, one
 * statement for all of them, every half `ttlMs`, so their entries stay fresh and a request waits
 * for a lookup only for a terminal it is the first to use (or when the refresh falls behind: an
 * entry is never trusted past its time).
 */
import type { Db } from "../modules/platform/database.ts";
import { logger } from "../modules/platform/log.ts";
import {
  deriveTerminalKey,
  findTerminal,
  findTerminals,
  type Terminal,
} from "../modules/merchant/mod.ts";
import type { RegisteredTerminal } from "./connection.ts";

const log = logger("terminal");

/** A terminal as the registry knows it, until when, and when a request last asked for it. */
interface Entry extends RegisteredTerminal {
  until: number;
  usedAt: number;
}

/**
 * A terminal counts as in use, and is kept fresh, for this long after a request asked for it: a
 * paying reader asks every few seconds at most, an idle one only with its heartbeat (30 s), and
 * waits for a lookup then.
 */
const IN_USE_MS = 10_000;
/** Most terminals read in one refresh statement. */
const REFRESH_CHUNK = 1000;
/** Unknown ids from garbage must not grow the registry without bound. */
const MAX_ENTRIES = 50_000;

export class TerminalRegistry {
  readonly #entries = new Map<number, Entry>();
  readonly #timer: ReturnType<typeof setInterval> | null;
  #refreshing: Promise<void> | null = null;
  #failedAt = 0;
  #afterRefresh: Array<() => void> = [];
  /** Requests that waited for their terminal to be read (the others found it fresh). */
  waited = 0;

  constructor(
    readonly db: Db,
    readonly appSecret: string,
    readonly ttlMs: number,
  ) {
    this.#timer = ttlMs > 0 ? setInterval(() => this.#tick(), Math.max(50, ttlMs / 2)) : null;
  }

  /** The terminal of an id and its key, read again when its entry is older than `ttlMs`. */
  async get(terminalId: number): Promise<RegisteredTerminal> {
    const now = Date.now();
    const hit = this.#entries.get(terminalId);
    if (hit && hit.until > now) {
      hit.usedAt = now;
      return hit;
    }
    this.waited++;
    const terminal = await findTerminal(this.db, terminalId);
    if (this.#entries.size > MAX_ENTRIES) this.#entries.clear();
    return this.#store(terminalId, terminal, now, now);
  }

  /** Resolves when the next refresh round has ended. */
  nextRefresh(): Promise<void> {
    return new Promise((resolve) => this.#afterRefresh.push(resolve));
  }

  /** Stops refreshing (the listener is closing); waits for a refresh under way. */
  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    await this.#refreshing;
  }

  #store(id: number, terminal: Terminal | null, readAt: number, usedAt: number): Entry {
    const old = this.#entries.get(id);
    // The key is an HMAC: derived again only when the key version changed.
    const key = !terminal
      ? null
      : old?.terminal && old.key && old.terminal.keyVersion === terminal.keyVersion
      ? old.key
      : deriveTerminalKey(this.appSecret, terminal.id, terminal.keyVersion);
    const entry: Entry = { terminal, key, until: readAt + this.ttlMs, usedAt };
    this.#entries.set(id, entry);
    return entry;
  }

  #tick(): void {
    if (this.#refreshing) return;
    this.#refreshing = this.#refresh().finally(() => {
      this.#refreshing = null;
      const waiting = this.#afterRefresh;
      this.#afterRefresh = [];
      for (const resolve of waiting) resolve();
    });
  }

  /** Reads again the known terminals in use (asked for within `IN_USE_MS`, or two `ttlMs`). */
  async #refresh(): Promise<void> {
    try {
      const readAt = Date.now();
      const ids: number[] = [];
      for (const [id, e] of this.#entries) {
        if (e.terminal && readAt - e.usedAt < Math.max(IN_USE_MS, 2 * this.ttlMs)) ids.push(id);
      }
      for (let i = 0; i < ids.length; i += REFRESH_CHUNK) {
        const chunk = ids.slice(i, i + REFRESH_CHUNK);
        const found = new Map((await findTerminals(this.db, chunk)).map((t) => [t.id, t]));
        for (const id of chunk) {
          const usedAt = this.#entries.get(id)?.usedAt ?? readAt;
          this.#store(id, found.get(id) ?? null, readAt, usedAt);
        }
      }
    } catch (err) {
      // Entries then run out and requests read their terminal themselves; one line a minute.
      if (Date.now() - this.#failedAt > 60_000) {
        this.#failedAt = Date.now();
        log.warn("cannot refresh the terminal registry", { err: (err as Error).message });
      }
    }
  }
}
