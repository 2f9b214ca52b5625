/**
 * What the protocol server knows about a reader that the registry does not: the requests it
 * handled and whether the reader is connected now. The terminal module sits to the right of this
 * one and provides it at start; the staff pages read it through here.
 */
import type { Db } from "../platform/database.ts";

/** One money-moving request of a reader, as the per-terminal transaction list shows it. */
export interface TerminalTransaction {
  sequence: number;
  type: string;
  status: string;
  amount: number;
  at: Date;
}

export interface TerminalActivity {
  transactions(db: Db, terminalId: number, limit: number): Promise<TerminalTransaction[]>;
  /** True while the reader holds a connection to this server instance. */
  connected(terminalId: number): boolean;
}

let provided: TerminalActivity | null = null;

/** Called by the terminal module so the staff pages can show reader activity. */
export function provideTerminalActivity(activity: TerminalActivity): void {
  provided = activity;
}

/** The activity source, or null when no protocol server code is loaded. */
export function terminalActivity(): TerminalActivity | null {
  return provided;
}

/** A reader counts as online when heard from within this many seconds (two heartbeats). */
const ONLINE_SECONDS = 70;

/** Whether a reader is online: connected to this instance now, or heard from lately. */
export function isOnline(
  terminal: { id: number; lastSeenAt: Date | null },
  now = Date.now(),
): boolean {
  return (provided?.connected(terminal.id) ?? false) ||
    (terminal.lastSeenAt !== null && now - terminal.lastSeenAt.getTime() < ONLINE_SECONDS * 1000);
}
