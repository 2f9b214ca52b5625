import type { Generated } from "kysely";

export interface StaffTable {
  id: Generated<number>;
  username: string;
  name: string;
  password_hash: string;
  roles: string[];
  disabled: Generated<boolean>;
  must_change_password: Generated<boolean>;
  created_at: Generated<Date>;
}

export interface AuditLogTable {
  id: Generated<number>;
  at: Generated<Date>;
  staff_id: number | null;
  action: string;
  target_type: string;
  target_id: string | null;
  before: unknown | null;
  after: unknown | null;
  ip: string | null;
}

declare module "../platform/database.ts" {
  interface Database {
    staff: StaffTable;
    audit_log: AuditLogTable;
  }
}
