/** 充值对账: a gateway statement reconciled with our top-up orders, stored and audited. */
import { sql } from "kysely";
import { chinaDayRange } from "../platform/china_time.ts";
import type { Db } from "../platform/database.ts";
import { staffByIds, writeAudit } from "../staff/mod.ts";
import { ordersByNumbers, paidOrdersBetween, type TopupMethod } from "../topup/mod.ts";
import { readStatement, reconcile, type ReconcileResult } from "./reconcile.ts";
import { type Actor, FinanceError } from "./service.ts";
import "./tables.ts";

/** A stored reconciliation with its buckets. */
export interface StoredReconciliation {
  id: number;
  filename: string;
  periodFrom: string;
  periodTo: string;
  result: ReconcileResult;
}

/**
 * Reconciles a gateway statement with our top-up orders: matched, paid there but not here,
 * paid here but absent there, and amount mismatches. The period is the statement's days
 * (or the given dates). Stored and audited.
 */
export async function reconcileStatement(
  db: Db,
  actor: Actor,
  input: { method: TopupMethod; filename: string; text: string; from?: string; to?: string },
): Promise<number> {
  const read = readStatement(input.text);
  if (read.rows.length === 0 && read.problems.length && read.problems[0].line === 1) {
    throw new FinanceError(
      "Unreadable statement",
      `对账单无法识别：${read.problems[0].message}`,
      "statement",
    );
  }
  const days = read.rows.map((r) => r.time.slice(0, 10)).filter((d) => /^\d{4}-\d\d-\d\d$/.test(d))
    .sort();
  const from = input.from || days[0];
  const to = input.to || days[days.length - 1];
  if (!from || !to) {
    throw new FinanceError("No period", "对账单中没有可识别的交易日期，请填写对账日期", "from");
  }
  if (from > to) throw new FinanceError("Bad period", "起始日期不能晚于截止日期", "from");
  const [start] = chinaDayRange(from);
  const [, end] = chinaDayRange(to);
  const toOurs = (
    o: {
      order_no: string;
      gateway_txn_id: string | null;
      amount: number;
      state: string;
      paid_at: Date | null;
    },
  ) => ({
    orderNo: o.order_no,
    txnId: o.gateway_txn_id,
    amount: o.amount,
    state: o.state,
    paidAt: o.paid_at,
  });
  const named = (await ordersByNumbers(db, read.rows.map((r) => r.orderNo))).filter((o) =>
    o.method === input.method
  );
  const period = await paidOrdersBetween(db, input.method, start, end);
  const buckets = reconcile(read.rows, named.map(toOurs), period.map(toOurs));
  const result: ReconcileResult = { ...buckets, problems: read.problems, skipped: read.skipped };
  return await db.transaction().execute(async (trx) => {
    const row = await trx.insertInto("finance_reconciliations").values({
      staff_id: actor.staffId,
      filename: input.filename.slice(0, 120) || "statement.csv",
      period_from: from,
      period_to: to,
      rows_total: read.rows.length,
      matched: result.matched.length,
      missing_ours: result.missingOurs.length,
      missing_theirs: result.missingTheirs.length,
      mismatched: result.mismatched.length,
      result: JSON.stringify(result),
    }).returning("id").executeTakeFirstOrThrow();
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "finance.reconciled",
      targetType: "reconciliation",
      targetId: row.id,
      after: {
        method: input.method,
        from,
        to,
        matched: result.matched.length,
        missingOurs: result.missingOurs.length,
        missingTheirs: result.missingTheirs.length,
        mismatched: result.mismatched.length,
      },
      ip: actor.ip,
    });
    return row.id;
  });
}

/** A stored reconciliation, or null. */
export async function getReconciliation(db: Db, id: number): Promise<StoredReconciliation | null> {
  if (!Number.isSafeInteger(id) || id <= 0) return null;
  const row = await db.selectFrom("finance_reconciliations")
    .select([
      "id",
      "filename",
      "result",
      sql<string>`period_from::text`.as("period_from"),
      sql<string>`period_to::text`.as("period_to"),
    ])
    .where("id", "=", id).executeTakeFirst();
  if (!row) return null;
  return {
    id: row.id,
    filename: row.filename,
    periodFrom: row.period_from,
    periodTo: row.period_to,
    result:
      (typeof row.result === "string" ? JSON.parse(row.result) : row.result) as ReconcileResult,
  };
}

/** Past reconciliations, newest first. */
export async function listReconciliations(db: Db, limit = 20) {
  const rows = await db.selectFrom("finance_reconciliations")
    .select([
      "id",
      "filename",
      "rows_total",
      "matched",
      "missing_ours",
      "missing_theirs",
      "mismatched",
      "created_at",
      "staff_id",
    ]).orderBy("id", "desc").limit(limit).execute();
  const staff = await staffByIds(db, rows.map((r) => r.staff_id));
  return rows.map(({ staff_id, ...r }) => ({
    ...r,
    staff_name: staff.get(staff_id)?.name ?? null,
  }));
}
