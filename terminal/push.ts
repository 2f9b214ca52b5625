/**
 * Pushes blocklist changes to every authenticated connection. Changes made in this process are
 * announced by the card module at once; changes made by another server instance on the same
 * database are found by polling the version every second. Pushes to everyone are at least
 * `PUSH_SPACING_MS` apart: a run of changes (a 毕业离校 batch closing cards one after another)
 * goes out in a few pushes of several entries, not one frame per change to every reader.
 */
import type { Db } from "../modules/platform/database.ts";
import { logger } from "../modules/platform/log.ts";
import { blocklistSince, currentBlocklistVersion, onBlocklistChange } from "../modules/card/mod.ts";
import { MAX_BLOCKLIST_ENTRIES, type Message, MessageCode } from "./messages.ts";

const log = logger("terminal.push");

/**
 * Least time from one push run's start to the next's. A change waits at most this long behind
 * the previous push (a loss report reaches 1,000 readers in well under the 200 ms the bench asks).
 */
export const PUSH_SPACING_MS = 50;

/** What a push needs of a connection. */
export interface PushTarget {
  terminalId: number;
  closed: boolean;
}

export class BlocklistBroadcaster<C extends PushTarget> {
  #version: number | null = null;
  #running: Promise<void> | null = null;
  #again = false;
  /** The next run, waiting for `PUSH_SPACING_MS` after the last one began. */
  #next: ReturnType<typeof setTimeout> | null = null;
  #lastStart = -Infinity;
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #unsubscribe: () => void;

  constructor(
    readonly db: Db,
    readonly connections: Set<C>,
    readonly send: (connection: C, message: Message) => Promise<void>,
    pollMs = 1000,
  ) {
    this.#unsubscribe = onBlocklistChange(() => this.check());
    this.#timer = setInterval(() => {
      if (this.connections.size > 0) this.check();
    }, pollMs);
    this.check();
  }

  /** Looks for a new version and pushes what changed; concurrent calls collapse into one more run. */
  check(): void {
    if (this.#running) {
      this.#again = true;
      return;
    }
    if (this.#next) return;
    const wait = this.#lastStart + PUSH_SPACING_MS - performance.now();
    if (wait > 0) {
      this.#next = setTimeout(() => {
        this.#next = null;
        this.check();
      }, wait);
      return;
    }
    this.#lastStart = performance.now();
    this.#running = this.#run().catch((err) =>
      log.error("blocklist push failed", { err: (err as Error).message })
    )
      .finally(() => {
        this.#running = null;
        if (this.#again) {
          this.#again = false;
          this.check();
        }
      });
  }

  async #run(): Promise<void> {
    const current = await currentBlocklistVersion(this.db);
    if (this.#version === null) {
      this.#version = current;
      return;
    }
    while (this.#version < current) {
      const from = this.#version;
      const delta = await blocklistSince(this.db, from, MAX_BLOCKLIST_ENTRIES);
      if (delta.version <= from) break;
      const added = delta.added.slice(0, MAX_BLOCKLIST_ENTRIES);
      const removed = delta.removed.slice(0, MAX_BLOCKLIST_ENTRIES - added.length);
      const push: Message = {
        code: MessageCode.BlocklistPush,
        fromVersion: from,
        blocklist: { version: delta.version, complete: delta.complete, added, removed },
      };
      const sends: Promise<void>[] = [];
      for (const c of this.connections) {
        if (c.terminalId !== 0 && !c.closed) sends.push(this.send(c, push));
      }
      await Promise.allSettled(sends);
      this.#version = delta.version;
    }
  }

  /**
   * The version last pushed (or found at start). Null before the first check has read it and
   * while a check runs or waits to (a change made in this process starts one, so a heartbeat
   * right after it asks the database rather than hear "current").
   */
  get version(): number | null {
    return this.#running || this.#next ? null : this.#version;
  }

  stop(): void {
    clearInterval(this.#timer);
    if (this.#next) clearTimeout(this.#next);
    this.#unsubscribe();
  }
}
