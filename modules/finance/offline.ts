/**
 * 脱机消费复核: offline records the reader server refused to charge (over a limit it announced,
 * out of time, a chip on a blocklist the reader held, a closed account, …). Finance accepts one
 * (charged through the wallet under the record's own reference, so never twice, even if the
 * reader or a second finance member tries again) or rejects it; both are audited.
 */
import type { Db } from "../platform/database.ts";
import type { Column, Paging } from "../platform/listing.ts";
import { NotFoundError } from "../platform/errors.ts";
import { staffByIds, writeAudit } from "../staff/mod.ts";
import { cardHoldersByIds, findCardAccount } from "../card/mod.ts";
import { applyOfflinePayment, MAX_AMOUNT } from "../wallet/mod.ts";
import { type Actor, FinanceError } from "./service.ts";
import "./tables.ts";

/** Why the server did not charge an offline record (the reason codes terminal/ files). */
export const OFFLINE_REVIEW_REASONS = {
  invalid_amount: "金额为零",
  over_payment_limit: "超过单笔脱机限额",
  over_password_threshold: "超过免密限额（脱机无法验密）",
  over_total_limit: "超过脱机累计限额",
  over_record_limit: "超过脱机笔数上限",
  future_time: "交易时间晚于上传时间",
  too_old: "交易时间过早（超过保留期）",
  unknown_chip: "芯片卡号不存在",
  card_cancelled: "一卡通账户已销户",
  chip_lost: "卡已挂失，终端已收到黑名单",
  chip_cancelled: "芯片已注销（补卡），终端已收到黑名单",
  listed_not_yet_known: "挂失/注销后、终端收到黑名单前",
  code_invalid: "付款码无效（不是离线付款码，或与设备不符）",
  code_time: "离线付款码与交易时间不符（手机时间不准）",
  code_revoked: "离线付款码设备已移除、冻结，或卡已挂失/解绑",
  code_used: "该离线付款码已付过款",
  code_over_limit: "超过离线付款码限额或持卡人限额",
  code_revoked_later: "交易后该卡曾挂失或解绑，需核实交易时设备是否有效",
} as const;

export type OfflineReviewReason = keyof typeof OFFLINE_REVIEW_REASONS;

/** One refused offline record, as the terminal server files it. */
export interface OfflineReviewItem {
  /** The ledger reference the record is charged under (the same one an accepted upload uses). */
  reference: string;
  terminalId: number;
  terminalName: string;
  merchantId: number;
  merchantName: string;
  offlineSequence: number;
  chip: string;
  cardAccountId: number | null;
  amount: number;
  occurredAt: Date;
  reason: OfflineReviewReason;
}

/** Files a refused record for review; once per reference (a re-filed record is ignored). */
export async function fileOfflineReview(db: Db, item: OfflineReviewItem): Promise<void> {
  await db.insertInto("finance_offline_reviews").values({
    reference: item.reference,
    terminal_id: item.terminalId,
    terminal_name: item.terminalName,
    merchant_id: item.merchantId,
    merchant_name: item.merchantName,
    offline_sequence: item.offlineSequence,
    chip: item.chip,
    card_account_id: item.cardAccountId,
    amount: item.amount,
    occurred_at: item.occurredAt,
    reason: item.reason,
  }).onConflict((oc) => oc.column("reference").doNothing()).execute();
}

/**
 * Records to review of a state (or all: pending first, then the latest decided ones), with the
 * cardholder: a page of them (the last when past the end) and how many there are.
 */
export async function listOfflineReviews(
  db: Db,
  filter: { state?: "pending" | "accepted" | "rejected" },
  page: (total: number) => Paging,
) {
  let q = db.selectFrom("finance_offline_reviews as r");
  if (filter.state) q = q.where("r.state", "=", filter.state);
  const count = await q.select((eb) => eb.fn.countAll<string>().as("n")).executeTakeFirstOrThrow();
  const total = Number(count.n);
  const p = page(total);
  const rows = await q
    .select([
      "r.id",
      "r.terminal_id",
      "r.terminal_name",
      "r.merchant_name",
      "r.offline_sequence",
      "r.chip",
      "r.card_account_id",
      "r.amount",
      "r.occurred_at",
      "r.reason",
      "r.state",
      "r.decided_at",
      "r.note",
      "r.transfer_id",
      "r.created_at",
      "r.decided_by",
    ])
    .orderBy((eb) => eb.case().when("r.state", "=", "pending").then(0).else(1).end())
    .orderBy("r.id", "desc").limit(p.perPage).offset(p.offset).execute();
  const holders = await cardHoldersByIds(db, rows.map((r) => r.card_account_id));
  const staff = await staffByIds(db, rows.map((r) => r.decided_by));
  return {
    total,
    page: p,
    rows: rows.map((r) => {
      const holder = r.card_account_id === null ? undefined : holders.get(r.card_account_id);
      return {
        ...r,
        student_number: holder?.studentNumber ?? null,
        holder: holder?.name ?? null,
        decided_by_name: r.decided_by === null ? null : staff.get(r.decided_by)?.name ?? null,
        reasonText: OFFLINE_REVIEW_REASONS[r.reason as OfflineReviewReason] ?? r.reason,
      };
    }),
  };
}

type ReviewRow = Awaited<ReturnType<typeof listOfflineReviews>>["rows"][number];

export const OFFLINE_REVIEW_STATES = {
  pending: "待复核",
  accepted: "已确认扣款",
  rejected: "已驳回",
};

/** The columns of 脱机复核 as a file. */
export const OFFLINE_REVIEW_COLUMNS: Column<ReviewRow>[] = [
  { header: "上传时间", value: (r) => r.created_at, kind: "time" },
  { header: "终端号", value: (r) => r.terminal_id, kind: "int" },
  { header: "终端", value: (r) => r.terminal_name },
  { header: "商户", value: (r) => r.merchant_name },
  { header: "脱机流水", value: (r) => r.offline_sequence, kind: "int" },
  { header: "芯片卡号", value: (r) => r.chip },
  { header: "学号", value: (r) => r.student_number ?? "" },
  { header: "姓名", value: (r) => r.holder ?? "" },
  { header: "金额(元)", value: (r) => r.amount, kind: "yuan" },
  { header: "交易时间", value: (r) => r.occurred_at, kind: "time" },
  { header: "未扣款原因", value: (r) => r.reasonText },
  { header: "状态", value: (r) => OFFLINE_REVIEW_STATES[r.state] },
  { header: "处理人", value: (r) => r.decided_by_name ?? "" },
  { header: "处理时间", value: (r) => r.decided_at, kind: "time" },
  { header: "处理说明", value: (r) => r.note ?? "" },
];

function noteOf(raw: string): string {
  const note = raw.trim();
  if (note.length < 2) throw new FinanceError("No note", "请填写处理说明（至少2个字）", "note");
  if (note.length > 200) throw new FinanceError("Note too long", "处理说明不超过200字", "note");
  return note;
}

/**
 * Accepts a record: marks it accepted (audited), then charges it through the wallet under the
 * record's reference (it may take the balance below zero, as an offline record may). The charge
 * runs outside the decision's transaction so the wallet can open a merchant's or card's account on
 * first use; it is idempotent, so accepting again (or two members at once) charges once, and an
 * accepted record whose charge did not complete is charged by accepting it again.
 */
export async function acceptOfflineReview(
  db: Db,
  actor: Actor,
  input: { id: number; note: string },
): Promise<{ transferId: number; duplicate: boolean }> {
  const note = noteOf(input.note);
  const r = await db.transaction().execute(async (trx) => {
    const r = await lockReview(trx, input.id);
    if (r.state === "rejected") throw new FinanceError("Already rejected", "该记录已驳回");
    if (r.state === "accepted") return r;
    if (r.card_account_id === null) {
      throw new FinanceError("Unknown chip", "芯片卡号不存在，无法扣款，只能驳回");
    }
    const card = await findCardAccount(trx, r.card_account_id);
    if (!card || card.status === "cancelled") {
      throw new FinanceError("Closed account", "该一卡通账户已销户，无法扣款，只能驳回");
    }
    if (r.amount <= 0 || r.amount > MAX_AMOUNT) {
      throw new FinanceError("Absurd amount", "金额超出可扣款范围，只能驳回");
    }
    await decide(trx, actor, r, { state: "accepted", note });
    return { ...r, state: "accepted" as const, transfer_id: null };
  });
  if (r.transfer_id !== null) return { transferId: r.transfer_id, duplicate: true };
  const paid = await applyOfflinePayment(db, {
    cardAccountId: r.card_account_id!,
    merchantId: r.merchant_id,
    terminalId: r.terminal_id,
    amount: r.amount,
    reference: r.reference,
    occurredAt: r.occurred_at,
  });
  await db.updateTable("finance_offline_reviews").set({ transfer_id: paid.transferId })
    .where("id", "=", r.id).where("transfer_id", "is", null).execute();
  return { transferId: paid.transferId, duplicate: paid.duplicate };
}

/** Rejects a record: nothing is charged; the merchant bears it. Rejecting twice changes nothing. */
export async function rejectOfflineReview(
  db: Db,
  actor: Actor,
  input: { id: number; note: string },
): Promise<void> {
  const note = noteOf(input.note);
  await db.transaction().execute(async (trx) => {
    const r = await lockReview(trx, input.id);
    if (r.state === "rejected") return;
    if (r.state === "accepted") throw new FinanceError("Already accepted", "该记录已确认扣款");
    await decide(trx, actor, r, { state: "rejected", note });
  });
}

async function lockReview(trx: Db, id: number) {
  if (!Number.isSafeInteger(id) || id <= 0) throw new NotFoundError("offline review");
  const r = await trx.selectFrom("finance_offline_reviews").selectAll().where("id", "=", id)
    .forUpdate().executeTakeFirst();
  if (!r) throw new NotFoundError(`offline review ${id}`);
  return r;
}

async function decide(
  trx: Db,
  actor: Actor,
  r: { id: number; state: string; reference: string; amount: number },
  to: { state: "accepted" | "rejected"; note: string },
): Promise<void> {
  await trx.updateTable("finance_offline_reviews").set({
    state: to.state,
    note: to.note,
    decided_by: actor.staffId,
    decided_at: new Date(),
  }).where("id", "=", r.id).execute();
  await writeAudit(trx, {
    staffId: actor.staffId,
    action: to.state === "accepted" ? "finance.offline_accepted" : "finance.offline_rejected",
    targetType: "offline_record",
    targetId: r.id,
    before: { state: r.state },
    after: { state: to.state, reference: r.reference, amount: r.amount, note: to.note },
    ip: actor.ip,
  });
}
