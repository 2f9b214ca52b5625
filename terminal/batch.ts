/**
 * Group commit without a timer: the first request runs at once; requests arriving while batches
 * are in flight wait, and when one finishes everything waiting (up to a cap) goes as the next
 * batch. At low load a request waits for nothing; under load many share one round trip and one
 * commit. Items that share a key (the same card row, the same request) never run in the same batch
 * or in two batches at once: the later one waits for the next batch.
 */
import type { Db } from "../modules/platform/database.ts";
import { logger } from "../modules/platform/log.ts";
import { isDatabaseError } from "./refusals.ts";

const log = logger("terminal.batch");

/** How a group commit forms and runs its batches. */
export interface GroupCommitOptions<I, O> {
  /** Most items in one batch. */
  maxBatch: number;
  /** Most batches in flight at once. */
  maxInFlight: number;
  /** Keys of an item: no two items sharing one are in flight at the same time. */
  keys(item: I): string[];
  /** Runs one batch, returning one result per item, in order. */
  run(items: I[]): Promise<O[]>;
}

interface Waiting<I, O> {
  item: I;
  keys: string[];
  resolve(out: O): void;
  reject(err: unknown): void;
}

/** Gathers concurrent items into batches (see the file's comment). */
export class GroupCommit<I, O> {
  #queue: Waiting<I, O>[] = [];
  readonly #busy = new Set<string>();
  #inFlight = 0;

  constructor(readonly options: GroupCommitOptions<I, O>) {}

  /** Items waiting for a batch. */
  get waiting(): number {
    return this.#queue.length;
  }

  /** Runs `item` in the next batch that can take it; resolves to its result. */
  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.#queue.push({ item, keys: this.options.keys(item), resolve, reject });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#inFlight < this.options.maxInFlight && this.#queue.length > 0) {
      const batch: Waiting<I, O>[] = [];
      const rest: Waiting<I, O>[] = [];
      for (const w of this.#queue) {
        if (batch.length < this.options.maxBatch && w.keys.every((k) => !this.#busy.has(k))) {
          for (const k of w.keys) this.#busy.add(k);
          batch.push(w);
        } else {
          rest.push(w);
        }
      }
      if (batch.length === 0) return;
      this.#queue = rest;
      this.#inFlight++;
      this.#execute(batch);
    }
  }

  async #execute(batch: Waiting<I, O>[]): Promise<void> {
    try {
      const out = await this.options.run(batch.map((w) => w.item));
      batch.forEach((w, i) => w.resolve(out[i]));
    } catch (err) {
      for (const w of batch) w.reject(err);
    } finally {
      for (const w of batch) for (const k of w.keys) this.#busy.delete(k);
      this.#inFlight--;
      this.#pump();
    }
  }
}

/**
 * One group commit per database, made on its first use from `options(db)`: a batch holds one
 * database's connection, and tests run many databases in one process.
 */
export function perDatabase<I, O>(
  options: (db: Db) => GroupCommitOptions<I, O>,
): (db: Db) => GroupCommit<I, O> {
  const made = new WeakMap<Db, GroupCommit<I, O>>();
  return (db) => {
    let batcher = made.get(db);
    if (!batcher) {
      batcher = new GroupCommit(options(db));
      made.set(db, batcher);
    }
    return batcher;
  };
}

/**
 * Runs one batch statement of `kind` for `items`: its results, or, if the statement failed as a
 * whole (a retry racing its first request on another instance, a code or hold taken at the same
 * moment by another instance, a number outside its reply field, …), nothing written and null for
 * every item, each of which then goes the ordinary way on its own. A failure that is not the
 * database's is logged (the kind and the size, never the requests).
 */
export async function inOneBatch<O>(
  kind: string,
  size: number,
  run: () => Promise<Array<O | null>>,
): Promise<Array<O | null>> {
  try {
    return await run();
  } catch (err) {
    if (!isDatabaseError(err)) log.error("batch failed", { kind, size, err: String(err) });
    return new Array(size).fill(null);
  }
}
