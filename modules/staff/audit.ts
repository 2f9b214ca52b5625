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
  /** An action code, or a module's prefix ending in "." ("card.") for all of its actions. */
  action?: string;
  targetType?: string;
  targetId?: string;
  staffUsername?: string;
  from?: Date;
  to?: Date;
  beforeId?: number;
  limit?: number;
  offset?: number;
}

function filtered(db: Db, filter: AuditFilter) {
  let q = db.selectFrom("audit_log").leftJoin("staff", "staff.id", "audit_log.staff_id");
  if (filter.action) {
    q = filter.action.endsWith(".")
      ? q.where("audit_log.action", "like", `${escapeLike(filter.action)}%`)
      : q.where("audit_log.action", "=", filter.action);
  }
  if (filter.targetType) q = q.where("audit_log.target_type", "=", filter.targetType);
  if (filter.targetId) q = q.where("audit_log.target_id", "=", filter.targetId);
  if (filter.staffUsername) q = q.where("staff.username", "=", filter.staffUsername);
  if (filter.from) q = q.where("audit_log.at", ">=", filter.from);
  if (filter.to) q = q.where("audit_log.at", "<", filter.to);
  if (filter.beforeId) q = q.where("audit_log.id", "<", filter.beforeId);
  return q;
}

/** Audit records, newest first, filtered. */
export async function listAudit(db: Db, filter: AuditFilter = {}) {
  return await filtered(db, filter)
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
    ])
    .orderBy("audit_log.id", "desc").limit(filter.limit ?? 100).offset(filter.offset ?? 0)
    .execute();
}

/** One audit record as `listAudit` returns it. */
export type AuditRow = Awaited<ReturnType<typeof listAudit>>[number];

/** How many audit records the filter matches. */
export async function countAudit(db: Db, filter: AuditFilter = {}): Promise<number> {
  const { n } = await filtered(db, filter)
    .select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow();
  return Number(n);
}

/** The actions and kinds of target the log holds, and the staff who acted: the filter's choices. */
export async function auditChoices(db: Db): Promise<{
  actions: string[];
  targetTypes: string[];
  staff: Array<{ username: string; name: string }>;
}> {
  const [actions, targets, staff] = await Promise.all([
    db.selectFrom("audit_log").select("action").distinct().orderBy("action").execute(),
    db.selectFrom("audit_log").select("target_type").distinct().orderBy("target_type").execute(),
    db.selectFrom("staff").select(["username", "name"]).orderBy("username").execute(),
  ]);
  return {
    actions: actions.map((a) => a.action),
    targetTypes: targets.map((t) => t.target_type),
    staff,
  };
}

/** One line of a record's before → after. */
export interface AuditChange {
  field: string;
  before: string;
  after: string;
  changed: boolean;
}

function shown(v: unknown): string {
  if (v === undefined) return "";
  if (v === null) return "—";
  if (typeof v === "string") return v;
  if (typeof v === "boolean") return v ? "是" : "否";
  return JSON.stringify(v);
}

/**
 * A record's before and after side by side, field by field (in the order the record has them,
 * before's first), each marked when it changed. A value that is not an object is one line.
 */
export function auditDiff(before: unknown, after: unknown): AuditChange[] {
  const isObject = (v: unknown): v is Record<string, unknown> =>
    typeof v === "object" && v !== null && !Array.isArray(v);
  if (!isObject(before) && !isObject(after)) {
    if (before === null && after === null) return [];
    const b = shown(before ?? undefined);
    const a = shown(after ?? undefined);
    return [{ field: "", before: b, after: a, changed: b !== a }];
  }
  const b = isObject(before) ? before : {};
  const a = isObject(after) ? after : {};
  const fields = [...new Set([...Object.keys(b), ...Object.keys(a)])];
  return fields.map((field) => {
    const was = shown(b[field]);
    const now = shown(a[field]);
    return { field, before: was, after: now, changed: was !== now };
  });
}

/** Escapes % and _ for a LIKE pattern. */
export function escapeLike(s: string): string {
  return s.replace(/[\\%_]/g, (m) => `\\${m}`);
}
