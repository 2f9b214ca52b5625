import type { Generated } from "kysely";

export interface SessionsTable {
  /** SHA-256 of the cookie token: a database leak does not leak live sessions. */
  id: string;
  kind: "student" | "staff";
  subject_id: number;
  created_at: Generated<Date>;
  last_seen_at: Generated<Date>;
  idle_expires_at: Date;
  absolute_expires_at: Date;
  ip: string | null;
  user_agent: string | null;
}

export interface ThrottlesTable {
  key: string;
  count: number;
  window_started_at: Date;
  locked_until: Date | null;
}

/** A secret's owner proved themselves from this source (see throttle.ts `guessGuard`). */
export interface ProvenSourcesTable {
  key: string;
  proven_at: Generated<Date>;
}

declare module "../platform/database.ts" {
  interface Database {
    sessions: SessionsTable;
    throttles: ThrottlesTable;
    proven_sources: ProvenSourcesTable;
  }
}
