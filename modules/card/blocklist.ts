/**
 * The readers' blocklist (黑名单): chip numbers readers must refuse, served as a versioned change
 * log. A change takes the head row's lock inside the caller's transaction, so versions are handed
 * out in commit order: a reader that has seen version v and asks for changes since v never misses
 * one that commits later with a smaller number.
 */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { logger } from "../platform/log.ts";
import "./tables.ts";

const log = logger("card.blocklist");

/** The net change of the blocklist between two versions. */
export interface BlocklistDelta {
  /** The version the caller has after applying this delta. */
  version: number;
  /** Chip numbers to refuse from now on. */
  added: string[];
  /** Chip numbers to accept again. */
  removed: string[];
  /** True when `version` is the current version; false: ask again from `version`. */
  complete: boolean;
}

/** A chip joining the blocklist or leaving it. */
export interface BlocklistChange {
  chipNumber: string;
  op: "add" | "remove";
}

/** Changes the head's one statement takes with it; the rest follow in chunks of this many. */
const CHUNK = 1000;

/**
 * Appends changes to the log and returns the new version (or the current one if none). The head
 * row's lock is held from here to the caller's commit, which serialises every change: call this
 * last in the transaction. The bump and the first chunk of the log are one statement.
 */
export async function recordBlocklistChanges(
  trx: Db,
  changes: BlocklistChange[],
): Promise<number | null> {
  if (changes.length === 0) return null;
  const first = changes.slice(0, CHUNK);
  const chips = first.map((c) => c.chipNumber);
  const ops = first.map((c) => c.op);
  const head = await sql<{ version: number }>`
    with head as (
      update card_blocklist_head set version = version + ${changes.length} where id = 1
      returning version
    ), logged as (
      insert into card_blocklist_changes (version, chip_number, op)
      select head.version - ${changes.length} + c.ord, c.chip_number, c.op
      from head,
        unnest(${chips}::text[], ${ops}::text[]) with ordinality as c(chip_number, op, ord)
    )
    select version from head`.execute(trx);
  const last = Number(head.rows[0].version);
  const firstVersion = last - changes.length + 1;
  for (let i = CHUNK; i < changes.length; i += CHUNK) {
    await trx.insertInto("card_blocklist_changes").values(
      changes.slice(i, i + CHUNK).map((c, j) => ({
        version: firstVersion + i + j,
        chip_number: c.chipNumber,
        op: c.op,
      })),
    ).execute();
  }
  return last;
}

/** The current blocklist version (0 before any change). */
export async function currentBlocklistVersion(db: Db): Promise<number> {
  const row = await db.selectFrom("card_blocklist_head").select("version").where("id", "=", 1)
    .executeTakeFirstOrThrow();
  return Number(row.version);
}

/**
 * The net change since `version`, covering at most `limit` log entries. From version 0 this is
 * the whole list. A chip added and removed within the span appears in neither list. The current
 * version is read before the log, so `complete` never claims more than was read.
 */
export async function blocklistSince(
  db: Db,
  version: number,
  limit = 1000,
): Promise<BlocklistDelta> {
  const current = await currentBlocklistVersion(db);
  // A version from the future (a reader that knew another database) starts over from nothing.
  const from = Number.isSafeInteger(version) && version > 0 && version <= current ? version : 0;
  const take = Math.max(1, Math.min(Number.isSafeInteger(limit) ? limit : 1000, 100_000));
  const rows = await db.selectFrom("card_blocklist_changes")
    .select(["version", "chip_number", "op"])
    .where("version", ">", from).orderBy("version").limit(take).execute();
  const net = new Map<string, "add" | "remove">();
  const wasListed = new Map<string, boolean>();
  for (const r of rows) {
    if (!wasListed.has(r.chip_number)) wasListed.set(r.chip_number, r.op === "remove");
    net.set(r.chip_number, r.op);
  }
  const added: string[] = [];
  const removed: string[] = [];
  for (const [chip, op] of net) {
    const before = wasListed.get(chip)!;
    if (op === "add" && !before) added.push(chip);
    if (op === "remove" && before) removed.push(chip);
  }
  const reached = rows.length ? Number(rows[rows.length - 1].version) : from;
  return { version: reached, added, removed, complete: reached >= current };
}

/**
 * Whether `chip` was on the blocklist at `at`, and since which version: its last change at or
 * before `at` was an addition (null: it was not listed then).
 */
export async function blocklistedAt(
  db: Db,
  chip: string,
  at: Date,
): Promise<{ version: number; since: Date } | null> {
  const row = await db.selectFrom("card_blocklist_changes").select(["version", "op", "at"])
    .where("chip_number", "=", chip).where("at", "<=", at)
    .orderBy("version", "desc").limit(1).executeTakeFirst();
  return row?.op === "add" ? { version: Number(row.version), since: row.at } : null;
}

type Listener = (version: number) => void;
const listeners = new Set<Listener>();

/**
 * Calls `listener` with the new version after a committed blocklist change in this process (the
 * terminal server pushes to connected readers). Returns a function that removes the listener.
 */
export function onBlocklistChange(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Tells the listeners; call after the transaction that changed the blocklist has committed. */
export function notifyBlocklistChange(version: number | null): void {
  if (version === null) return;
  for (const l of listeners) {
    try {
      l(version);
    } catch (err) {
      log.error("blocklist listener failed", { err: (err as Error).message });
    }
  }
}
