import type { Generated } from "kysely";

export interface TerminalRequestsTable {
  terminal_id: number;
  sequence: number;
  /** Request message code. */
  type: number;
  /** The request body as received: a retry must match it byte for byte. */
  request: Uint8Array;
  status: number;
  reply_type: number;
  /** The reply header's timestamp (the first request's timestamp, echoed). */
  reply_timestamp: number;
  /** The reply body; the frame is rebuilt from it under the terminal's key. */
  reply: Uint8Array;
  amount: Generated<number>;
  card_account_id: number | null;
  created_at: Generated<Date>;
}

export interface TerminalOfflineRecordsTable {
  terminal_id: number;
  offline_sequence: number;
  occurred_at: Date;
  chip: string;
  amount: number;
  card_account_id: number | null;
  /** "applied" (charged), "held" (refused, in finance's review); before 1.1 also "unknown_chip". */
  outcome: string;
  /** The per-record status the reader was told (0 = charged in full). */
  result: Generated<number>;
  /** Fen charged when it was acknowledged. */
  charged: Generated<number>;
  balance_after: number | null;
  /** When it was acknowledged. */
  created_at: Generated<Date>;
}

export interface TerminalBlocklistAcksTable {
  terminal_id: number;
  version: number;
  acknowledged_at: Generated<Date>;
}

export interface TerminalOfflineStateTable {
  terminal_id: number;
  acked_sequence: Generated<number>;
}

export interface TerminalShowersTable {
  hold_id: number;
  terminal_id: number;
  start_sequence: number;
  card_account_id: number;
  tariff_id: number;
  fen_per_unit: number;
  created_at: Generated<Date>;
}

declare module "../modules/platform/database.ts" {
  interface Database {
    terminal_requests: TerminalRequestsTable;
    terminal_offline_records: TerminalOfflineRecordsTable;
    terminal_offline_state: TerminalOfflineStateTable;
    terminal_blocklist_acks: TerminalBlocklistAcksTable;
    terminal_showers: TerminalShowersTable;
  }
}
