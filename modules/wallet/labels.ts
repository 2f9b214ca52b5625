import type { Db } from "../platform/database.ts";
import type { HistoryRow } from "./history.ts";
import { splitsOf, type TransferSplit } from "./purses.ts";

/** How another module describes transfers it made (e.g. billing: 电费 · 3号楼101, 已到账). */
export interface TransferLabel {
  label: string;
  room?: string;
  statusLabel?: string;
}

/** Looks up labels for transfer ids; ids it does not know are left out of the map. */
export type TransferLabeler = (
  db: Db,
  transferIds: number[],
) => Promise<Map<number, TransferLabel>>;

const labelers = new Set<TransferLabeler>();

/**
 * Lets a module to the wallet's right (billing) describe its transfers in 交易记录 without the
 * wallet importing it; main.ts registers them when it composes the app.
 */
export function registerTransferLabeler(labeler: TransferLabeler): void {
  labelers.add(labeler);
}

/**
 * Rows with `label` and `note` filled in from the registered labelers (or the transfer's details),
 * and `split`: which purses paid (or took back) a transfer that moved a lot's money (补助 and
 * cash, once per transfer), null for cash only.
 */
export async function labelRows(
  db: Db,
  rows: HistoryRow[],
): Promise<
  Array<HistoryRow & { label: string | null; note: string | null; split: TransferSplit | null }>
> {
  const splits = await splitsOf(db, rows);
  const ids = rows.filter((r) => ["electricity", "water", "utility_refund"].includes(r.kind)).map((
    r,
  ) => r.id);
  const labels = new Map<number, TransferLabel>();
  if (ids.length) {
    for (const l of labelers) {
      for (const [id, label] of await l(db, ids)) labels.set(id, label);
    }
  }
  return rows.map((r) => {
    const found = labels.get(r.id);
    const split = splits.get(r.id) ?? null;
    if (found) {
      return {
        ...r,
        label: found.label,
        note: [found.room, found.statusLabel].filter(Boolean).join(" · ") || null,
        split,
      };
    }
    const d = r.details as { room?: unknown } | null;
    const room = d && typeof d.room === "string" ? d.room : null;
    return { ...r, label: null, note: room, split };
  });
}
