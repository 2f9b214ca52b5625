import type { Db } from "../platform/database.ts";
import "./tables.ts";

/** One staff action that changed data. */
export interface AuditEntry {
  staffId: number | null;
  action: string;
  targetType: string;
  targetId?: string | number | null;
  before?: unknown;
  after?: unknown;
  ip?: string | null;
}

/**
 * Records a staff action. Call it with the same transaction as the change, so the record and the
 * change commit or fail together.
 */
export async function writeAudit(db: Db, entry: AuditEntry): Promise<void> {
  await db.insertInto("audit_log").values({
    staff_id: entry.staffId,
    action: entry.action,
    target_type: entry.targetType,
    target_id: entry.targetId == null ? null : String(entry.targetId),
    before: entry.before === undefined ? null : JSON.stringify(entry.before),
    after: entry.after === undefined ? null : JSON.stringify(entry.after),
    ip: entry.ip ?? null,
  }).execute();
}

export interface AuditFilter {
  action?: string;
  targetType?: string;
  targetId?: string;
  staffUsername?: string;
  from?: Date;
  to?: Date;
  beforeId?: number;
  limit?: number;
}

/** Audit records, newest first, filtered. */
export async function listAudit(db: Db, filter: AuditFilter = {}) {
  let q = db.selectFrom("audit_log")
    .leftJoin("staff", "staff.id", "audit_log.staff_id")
    .select([
      "audit_log.id",
      "audit_log.at",
      "audit_log.action",
      "audit_log.target_type",
      "audit_log.target_id",
      "audit_log.before",
      "audit_log.after",
      "audit_log.ip",
      "staff.username",
      "staff.name",
    ]);
  if (filter.action) q = q.where("audit_log.action", "like", `%${escapeLike(filter.action)}%`);
  if (filter.targetType) q = q.where("audit_log.target_type", "=", filter.targetType);
  if (filter.targetId) q = q.where("audit_log.target_id", "=", filter.targetId);
  if (filter.staffUsername) q = q.where("staff.username", "=", filter.staffUsername);
  if (filter.from) q = q.where("audit_log.at", ">=", filter.from);
  if (filter.to) q = q.where("audit_log.at", "<", filter.to);
  if (filter.beforeId) q = q.where("audit_log.id", "<", filter.beforeId);
  return await q.orderBy("audit_log.id", "desc").limit(filter.limit ?? 100).execute();
}

/** Escapes % and _ for a LIKE pattern. */
export function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, (m) => `\\${m}`);
}
