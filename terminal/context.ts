/**
 * What every request handler is given and what it returns: the request's context (database,
 * settings, the chip lookup allowance, the protocol's clock) and the reply to send.
 */
import type { Config } from "../modules/platform/config.ts";
import type { Db } from "../modules/platform/database.ts";
import type { Message } from "./messages.ts";
import type { LookupAllowance } from "./limits.ts";
import type { ProtocolSettings } from "./settings.ts";
import { serializeBody } from "./serializer.ts";

export interface ServiceContext {
  db: Db;
  config: Config;
  settings: ProtocolSettings;
  /**
   * The blocklist version this server last pushed to its readers (at most a poll interval
   * behind the database), or null before it knows: a reader heartbeating at that version is
   * current without asking the database, and any later change reaches it by push.
   */
  pushedBlocklistVersion?: () => number | null;
  /**
   * Each terminal's allowance of answers that tell whether a chip exists (PROTOCOL.md §4.5);
   * unlimited when absent.
   */
  lookups?: LookupAllowance;
  /**
   * Each terminal's allowance of offline payment codes refused as no device's (PROTOCOL.md §4.4);
   * unlimited when absent.
   */
  offlineCodeGuesses?: LookupAllowance;
  /**
   * The protocol's clock (ms): server time in replies. Money and its times (holds, the ledger)
   * keep the real clock and the database's. Tests replaying PROTOCOL.md §6 fix it.
   */
  clock?: () => number;
}

/** A reply to send: the message code, its body, and the header timestamp when not the echo. */
export interface Reply {
  code: number;
  body: Uint8Array;
  status?: number;
  timestamp?: number;
}

/** The reply carrying `message` (its header echoes the request's timestamp). */
export function replyOf(message: Message): Reply {
  return {
    code: message.code,
    body: serializeBody(message),
    status: "status" in message ? message.status : undefined,
  };
}

/** Server time for a reply body, in Unix seconds. */
export function serverTime(ctx: ServiceContext): number {
  return Math.floor((ctx.clock ?? Date.now)() / 1000);
}

/** The wallet reference of a reader request: unique per (terminal, sequence). */
export function requestReference(terminalId: number, sequence: number): string {
  return `T${terminalId}:${sequence}`;
}
