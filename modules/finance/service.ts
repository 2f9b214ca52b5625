/** 财务处's money changes: refunds of payments and maker-checker adjustments. */
import type { Db } from "../platform/database.ts";
import { DomainError, NotFoundError } from "../platform/errors.ts";
import { formatFen, parseYuan } from "../platform/money.ts";
import type { Column, Paging } from "../platform/listing.ts";
import { staffByIds, writeAudit } from "../staff/mod.ts";
import { adjustBalance, listTransfers, refundTransfer, type TransferView } from "../wallet/mod.ts";
import { cardHoldersByIds, findCardsByStudentNumber } from "../card/mod.ts";
import { resolveFlaggedNotify } from "../topup/mod.ts";
import "./tables.ts";

/** A finance rule was not met (bad amount, four-eyes, state). */
export class FinanceError extends DomainError {
  override status = 422 as const;
}

/** Who acts, for the audit log. */
export interface Actor {
  staffId: number;
  ip: string | null;
}

/** Form tokens are random URL-safe strings; they become the ledger reference of a refund. */
const TOKEN_RE = /^[A-Za-z0-9_-]{16,64}$/;

function reasonOf(raw: string): string {
  const reason = raw.trim();
  if (reason.length < 2) throw new FinanceError("No reason", "请填写原因（至少2个字）", "reason");
  if (reason.length > 200) throw new FinanceError("Reason too long", "原因不超过200字", "reason");
  return reason;
}

/** A transfer by id with what was already given back, or null. */
export async function findTransfer(db: Db, id: number): Promise<TransferView | null> {
  if (!Number.isSafeInteger(id) || id <= 0) return null;
  return (await listTransfers(db, { id, limit: 1 }))[0] ?? null;
}

/** The refunds finance made of one transfer, oldest first. */
export async function refundsOf(db: Db, transferId: number) {
  const rows = await db.selectFrom("finance_refunds")
    .select(["id", "amount", "reason", "created_at", "refund_transfer_id", "staff_id"])
    .where("transfer_id", "=", transferId).orderBy("id").execute();
  const staff = await staffByIds(db, rows.map((r) => r.staff_id));
  return rows.map(({ staff_id, ...r }) => ({
    ...r,
    staff_name: staff.get(staff_id)?.name ?? null,
  }));
}

/**
 * Refunds a card payment in full or in part. The form's one-time token is the reference: a
 * second submit of the same form returns the first refund and moves nothing. The ledger refuses
 * refunds that would add up to more than the original.
 */
export async function refundPayment(
  db: Db,
  actor: Actor,
  input: { transferId: number; amountText: string; reason: string; token: string },
): Promise<{ refundId: number; duplicate: boolean }> {
  if (!TOKEN_RE.test(input.token)) {
    throw new FinanceError("Bad form token", "表单已失效，请刷新页面后重试");
  }
  const reference = `finance-refund:${input.token}`;
  const first = await db.selectFrom("finance_refunds").select(["id", "transfer_id"])
    .where("reference", "=", reference).executeTakeFirst();
  if (first) {
    if (first.transfer_id !== input.transferId) {
      throw new FinanceError("Token reused", "表单已失效，请刷新页面后重试");
    }
    return { refundId: first.id, duplicate: true };
  }
  const amount = parseYuan(input.amountText);
  if (amount === null || amount <= 0) {
    throw new FinanceError(
      "Bad refund amount",
      "请输入正确的退款金额（元，最多两位小数）",
      "amount",
    );
  }
  const reason = reasonOf(input.reason);
  const original = await findTransfer(db, input.transferId);
  if (!original) throw new NotFoundError(`transfer ${input.transferId}`);
  const left = Math.max(0, original.amount - original.returned);
  if (amount > left) {
    // The ledger checks this again under its lock; this only answers early and clearly.
    throw new FinanceError(
      "Refund above what is left",
      `退款金额超过可退金额 ${formatFen(left)}`,
      "amount",
    );
  }
  try {
    return await db.transaction().execute(async (trx) => {
      const result = await refundTransfer(trx, {
        transferId: original.id,
        amount,
        reference,
        reason,
        staffId: actor.staffId,
      });
      const row = await trx.insertInto("finance_refunds").values({
        reference,
        transfer_id: original.id,
        amount,
        reason,
        staff_id: actor.staffId,
        refund_transfer_id: result.transferId,
      }).returning("id").executeTakeFirstOrThrow();
      await writeAudit(trx, {
        staffId: actor.staffId,
        action: "finance.refund",
        targetType: "transfer",
        targetId: original.id,
        before: { amount: original.amount, returned: original.returned },
        after: { refunded: amount, reason, refundTransferId: result.transferId },
        ip: actor.ip,
      });
      return { refundId: row.id, duplicate: false };
    });
  } catch (err) {
    // The same form submitted twice at once: the second loses on the unique reference.
    if ((err as { code?: string }).code !== "23505") throw err;
    const again = await db.selectFrom("finance_refunds").select("id").where(
      "reference",
      "=",
      reference,
    )
      .executeTakeFirst();
    if (!again) throw err;
    return { refundId: again.id, duplicate: true };
  }
}

/** Card accounts with a 学号 (several schools may share one). */
export { findCardsByStudentNumber };

/** Proposes a manual adjustment (maker); a different staff member must approve it (checker). */
export async function proposeAdjustment(
  db: Db,
  actor: Actor,
  input: { studentNumber: string; amountText: string; reason: string },
): Promise<number> {
  const cards = await findCardsByStudentNumber(db, input.studentNumber);
  if (cards.length === 0) {
    throw new FinanceError("No such card", "未找到该学号的一卡通账户", "student_number");
  }
  if (cards.length > 1) {
    throw new FinanceError(
      "Ambiguous card",
      "该学号对应多个学校的账户，请联系系统管理员",
      "student_number",
    );
  }
  const text = input.amountText.trim();
  const negative = text.startsWith("-");
  const fen = parseYuan(negative ? text.slice(1) : text);
  if (fen === null || fen <= 0) {
    throw new FinanceError(
      "Bad adjustment amount",
      "请输入正确的调账金额（元，负数表示扣减）",
      "amount",
    );
  }
  if (fen > 1_000_000) {
    throw new FinanceError(
      "Adjustment too large",
      `单笔调账不能超过${formatFen(1_000_000)}`,
      "amount",
    );
  }
  const reason = reasonOf(input.reason);
  const amount = negative ? -fen : fen;
  return await db.transaction().execute(async (trx) => {
    const row = await trx.insertInto("finance_adjustments").values({
      card_account_id: cards[0].id,
      amount,
      reason,
      proposed_by: actor.staffId,
      decided_by: null,
      decided_at: null,
      transfer_id: null,
    }).returning("id").executeTakeFirstOrThrow();
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "finance.adjustment_proposed",
      targetType: "adjustment",
      targetId: row.id,
      after: { cardAccountId: cards[0].id, amount, reason },
      ip: actor.ip,
    });
    return row.id;
  });
}

/** Approves (posting it to the ledger) or rejects a proposed adjustment; never its proposer's own. */
export async function decideAdjustment(
  db: Db,
  actor: Actor,
  input: { id: number; approve: boolean },
): Promise<void> {
  if (!Number.isSafeInteger(input.id) || input.id <= 0) throw new NotFoundError("adjustment");
  await db.transaction().execute(async (trx) => {
    const adj = await trx.selectFrom("finance_adjustments").selectAll().where("id", "=", input.id)
      .forUpdate().executeTakeFirst();
    if (!adj) throw new NotFoundError(`adjustment ${input.id}`);
    if (adj.state !== "proposed") throw new FinanceError("Already decided", "该调账已处理");
    if (adj.proposed_by === actor.staffId) {
      throw new FinanceError("Self approval", "不能审批自己提交的调账，须由另一位财务人员审批");
    }
    let transferId: number | null = null;
    if (input.approve) {
      const r = await adjustBalance(trx, {
        cardAccountId: adj.card_account_id,
        amount: adj.amount,
        reference: `finance-adjustment:${adj.id}`,
        reason: adj.reason,
        staffId: actor.staffId,
      });
      transferId = r.transferId;
    }
    const state = input.approve ? "approved" as const : "rejected" as const;
    await trx.updateTable("finance_adjustments").set({
      state,
      decided_by: actor.staffId,
      decided_at: new Date(),
      transfer_id: transferId,
    }).where("id", "=", adj.id).execute();
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: input.approve ? "finance.adjustment_approved" : "finance.adjustment_rejected",
      targetType: "adjustment",
      targetId: adj.id,
      before: { state: adj.state },
      after: { state, transferId },
      ip: actor.ip,
    });
  });
}

/** Adjustments waiting for a second finance member. */
export async function countPendingAdjustments(db: Db): Promise<number> {
  const r = await db.selectFrom("finance_adjustments").where("state", "=", "proposed")
    .select((eb) => eb.fn.countAll<string>().as("n")).executeTakeFirstOrThrow();
  return Number(r.n);
}

/**
 * Adjustments of a state (or all), newest first, with who proposed and decided them: a page of
 * them (the last when past the end) and how many there are.
 */
export async function listAdjustments(
  db: Db,
  filter: { state?: "proposed" | "approved" | "rejected" },
  page: (total: number) => Paging,
) {
  let q = db.selectFrom("finance_adjustments as a");
  if (filter.state) q = q.where("a.state", "=", filter.state);
  const count = await q.select((eb) => eb.fn.countAll<string>().as("n")).executeTakeFirstOrThrow();
  const total = Number(count.n);
  const p = page(total);
  const rows = await q
    .select([
      "a.id",
      "a.card_account_id",
      "a.amount",
      "a.reason",
      "a.state",
      "a.proposed_by",
      "a.proposed_at",
      "a.decided_by",
      "a.decided_at",
      "a.transfer_id",
    ])
    .orderBy("a.id", "desc").limit(p.perPage).offset(p.offset).execute();
  const staff = await staffByIds(db, rows.flatMap((r) => [r.proposed_by, r.decided_by]));
  const holders = await cardHoldersByIds(db, rows.map((r) => r.card_account_id));
  return {
    total,
    page: p,
    rows: rows.map(({ decided_by, ...r }) => ({
      ...r,
      proposer: staff.get(r.proposed_by)?.name ?? null,
      decider: decided_by === null ? null : staff.get(decided_by)?.name ?? null,
      student_number: holders.get(r.card_account_id)?.studentNumber ?? null,
      holder: holders.get(r.card_account_id)?.name ?? null,
    })),
  };
}

/** An adjustment as its list shows it. */
export type AdjustmentRow = Awaited<ReturnType<typeof listAdjustments>>["rows"][number];

export const ADJUSTMENT_STATES = { proposed: "待审批", approved: "已入账", rejected: "已驳回" };

/** The columns of 调账 as a file. */
export const ADJUSTMENT_COLUMNS: Column<AdjustmentRow>[] = [
  { header: "编号", value: (a) => a.id, kind: "int" },
  { header: "学号", value: (a) => a.student_number ?? "" },
  { header: "姓名", value: (a) => a.holder ?? "" },
  { header: "金额(元)", value: (a) => a.amount, kind: "yuan" },
  { header: "原因", value: (a) => a.reason },
  { header: "提交人", value: (a) => a.proposer ?? "" },
  { header: "提交时间", value: (a) => a.proposed_at, kind: "time" },
  { header: "状态", value: (a) => ADJUSTMENT_STATES[a.state] },
  { header: "审批人", value: (a) => a.decider ?? "" },
  { header: "审批时间", value: (a) => a.decided_at, kind: "time" },
  { header: "流水号", value: (a) => a.transfer_id, kind: "int" },
];

/**
 * Marks a flagged notify as looked at, with what finance decided, and its audit record; a notify
 * that is not flagged or already resolved is not found.
 */
export async function resolveFlag(
  db: Db,
  actor: Actor,
  input: { id: number; resolution: string },
): Promise<void> {
  const done = await db.transaction().execute(async (trx) => {
    if (!await resolveFlaggedNotify(trx, input.id, actor.staffId, input.resolution)) return false;
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "finance.notify_resolved",
      targetType: "topup_notify",
      targetId: String(input.id),
      after: { resolution: input.resolution },
      ip: actor.ip,
    });
    return true;
  });
  if (!done) throw new NotFoundError("flagged notify");
}
