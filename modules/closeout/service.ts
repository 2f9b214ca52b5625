/**
 * 毕业离校: a batch closes the cards of a graduating class on a date. Made from a school, a card
 * type, a 学号 prefix or a list (nothing changes yet), previewed with each card's money and what
 * will happen to it, announced to the holders, then confirmed: each card becomes a job of its own
 * (worker.ts) that closes it once, from the close-out day on.
 */
import { sql } from "kysely";
import type { Selectable } from "kysely";
import { chinaDay, chinaDayRange } from "../platform/china_time.ts";
import type { Db } from "../platform/database.ts";
import { DomainError, NotFoundError } from "../platform/errors.ts";
import { formatFen } from "../platform/money.ts";
import type { Paging } from "../platform/listing.ts";
import { readTable } from "../platform/sheets.ts";
import { wakeJobWorkers } from "../platform/jobs.ts";
import { writeAudit } from "../staff/mod.ts";
import { cardsForCloseout, findCardType, MAX_CLOSEOUT_CARDS, noticeCloseout } from "../card/mod.ts";
import { closingMoney } from "../wallet/mod.ts";
import { type Gateways, refundableByCard } from "../topup/mod.ts";
import { CLOSEOUT_QUEUE } from "./queue.ts";
import type { CloseoutBatchesTable, CloseoutCardsTable, Disposition } from "./tables.ts";
import "./tables.ts";

export class CloseoutError extends DomainError {
  override status = 422 as const;
}

/** Who acts, for the audit log. */
export interface Actor {
  staffId: number;
  ip: string | null;
}

export type Batch = Selectable<CloseoutBatchesTable>;
export type BatchCard = Selectable<CloseoutCardsTable>;

export const CARD_STATES = {
  pending: "待确认",
  queued: "待办理",
  done: "已办理",
  failed: "失败",
} as const;

export const DISPOSITION_LABELS: Record<Disposition, string> = {
  none: "无余额",
  refunded: "已原路退回",
  payout: "列入退款名单",
  kept: "小额留存",
  debt: "欠款",
};

/** The 学号 of an uploaded list: the first column of each row, a header row left out. */
export async function studentNumbersOf(bytes: Uint8Array): Promise<string[]> {
  const records = await readTable(bytes, { field: "file" });
  const out: string[] = [];
  for (const r of records) {
    const cell = (r.cells[0] ?? "").trim();
    if (!cell || /学号|student/i.test(cell)) continue;
    if (!/^[0-9A-Za-z]{1,20}$/.test(cell)) {
      throw new CloseoutError(
        "Bad student number",
        `名单第 ${r.line} 行的学号“${cell.slice(0, 20)}”格式不正确（第一列应为学号）`,
        "file",
      );
    }
    out.push(cell.toUpperCase());
  }
  if (out.length === 0) throw new CloseoutError("Empty list", "名单中没有学号", "file");
  return out;
}

/**
 * Makes a draft batch of the open cards the criteria name that no other batch holds. Nothing
 * about the cards changes. Returns the batch's id.
 */
export async function createBatch(
  db: Db,
  actor: Actor,
  input: {
    name: string;
    schoolId: number;
    kind?: "student" | "staff";
    cardTypeId?: number;
    prefix?: string;
    list: Uint8Array | null;
    closeOn: string;
    refundRule: "origin_first" | "payout_only";
    payoutMethod: "cash" | "bank";
    threshold: number;
    now?: Date;
  },
): Promise<number> {
  if (input.closeOn < chinaDay(input.now ?? new Date())) {
    throw new CloseoutError("Close-out day past", "离校日期不能早于今天", "close_on");
  }
  // A type asked for must exist (0 included): never "no type", which would widen the batch.
  const typed = input.cardTypeId !== undefined && input.cardTypeId !== null;
  const cardType = typed ? await findCardType(db, input.cardTypeId!) : null;
  if (typed && !cardType) {
    throw new CloseoutError("Unknown card type", "请选择有效的卡类别", "card_type");
  }
  const listed = input.list ? await studentNumbersOf(input.list) : undefined;
  const { cards, missing } = await cardsForCloseout(db, {
    schoolId: input.schoolId,
    kind: input.kind,
    cardTypeId: cardType?.id,
    prefix: input.prefix,
    studentNumbers: listed,
  });
  if (cards.length > MAX_CLOSEOUT_CARDS) {
    throw new CloseoutError(
      "Too many cards",
      `一个批次最多 ${MAX_CLOSEOUT_CARDS} 张卡，请缩小范围`,
      "_form",
    );
  }
  return await db.transaction().execute(async (trx) => {
    const taken = new Set<number>();
    for (let i = 0; i < cards.length; i += 5000) {
      const rows = await trx.selectFrom("closeout_cards").select("card_account_id")
        .where("card_account_id", "in", cards.slice(i, i + 5000).map((c) => c.id)).execute();
      for (const r of rows) taken.add(r.card_account_id);
    }
    const free = cards.filter((c) => !taken.has(c.id));
    if (free.length === 0) {
      throw new CloseoutError(
        "No cards",
        taken.size ? "符合条件的卡都已在其他离校批次中" : "没有符合条件的未注销一卡通账户",
        "_form",
      );
    }
    const criteria = {
      kind: input.kind ?? null,
      cardType: cardType ? { id: cardType.id, name: cardType.name } : null,
      prefix: input.prefix ?? null,
      listed: listed?.length ?? null,
      missing: missing.slice(0, 500),
      inOtherBatch: taken.size,
    };
    const batch = await trx.insertInto("closeout_batches").values({
      name: input.name,
      school_id: input.schoolId,
      criteria: JSON.stringify(criteria),
      close_on: input.closeOn,
      refund_rule: input.refundRule,
      threshold: input.threshold,
      payout_method: input.payoutMethod,
      card_count: free.length,
      created_by: actor.staffId,
    }).returning("id").executeTakeFirstOrThrow();
    for (let i = 0; i < free.length; i += 2000) {
      await trx.insertInto("closeout_cards").values(
        free.slice(i, i + 2000).map((c) => ({
          batch_id: batch.id,
          card_account_id: c.id,
          student_number: c.studentNumber,
          name: c.name,
          state: "pending" as const,
        })),
      ).execute();
    }
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "closeout.created",
      targetType: "closeout_batch",
      targetId: batch.id,
      before: null,
      after: { name: input.name, closeOn: input.closeOn, cards: free.length, ...criteria },
      ip: actor.ip,
    });
    return batch.id;
  });
}

export async function getBatch(db: Db, id: number): Promise<Batch | null> {
  return (await db.selectFrom("closeout_batches").selectAll().where("id", "=", id)
    .executeTakeFirst()) ?? null;
}

/** The batches, newest first: a page of them (the last when past the end) and how many. */
export async function listBatches(
  db: Db,
  page: (total: number) => Paging,
): Promise<{ rows: Batch[]; total: number; page: Paging }> {
  const count = await db.selectFrom("closeout_batches")
    .select((eb) => eb.fn.countAll<string>().as("n")).executeTakeFirstOrThrow();
  const total = Number(count.n);
  const p = page(total);
  const rows = await db.selectFrom("closeout_batches").selectAll().orderBy("id", "desc")
    .limit(p.perPage).offset(p.offset).execute();
  return { rows, total, page: p };
}

/** What closing would do to one card with this money (the worker follows the same rule). */
export function planOf(
  batch: Pick<Batch, "refund_rule" | "threshold">,
  money: { cash: number; overdraft: number; refundable: number },
): { refunded: number; disposition: Disposition; left: number; debt: number } {
  if (money.overdraft > 0) {
    return { refunded: 0, disposition: "debt", left: 0, debt: money.overdraft };
  }
  if (money.cash <= 0) return { refunded: 0, disposition: "none", left: 0, debt: 0 };
  if (money.cash < Number(batch.threshold)) {
    return { refunded: 0, disposition: "kept", left: money.cash, debt: 0 };
  }
  const refunded = batch.refund_rule === "origin_first"
    ? Math.min(money.cash, money.refundable)
    : 0;
  const left = money.cash - refunded;
  return { refunded, disposition: left > 0 ? "payout" : "refunded", left, debt: 0 };
}

/** The preview of a draft batch: each card's money and plan (a page of them) and the totals. */
export async function previewBatch(
  db: Db,
  gateways: Gateways,
  batch: Batch,
  paging: Paging,
) {
  const rows = await db.selectFrom("closeout_cards")
    .select(["card_account_id", "student_number", "name"])
    .where("batch_id", "=", batch.id).orderBy("student_number").execute();
  const ids = rows.map((r) => r.card_account_id);
  const refundable = batch.refund_rule === "origin_first"
    ? await refundableByCard(db, gateways, ids)
    : new Map<number, number>();
  const money = await closingMoney(db, ids);
  const totals = {
    cards: ids.length,
    balance: 0,
    refunded: 0,
    payout: 0,
    kept: 0,
    holds: 0,
    held: 0,
    debts: 0,
    debt: 0,
  };
  const nothing = { balance: 0, cash: 0, lots: 0, held: 0, overdraft: 0 };
  const cards = [];
  for (const [i, r] of rows.entries()) {
    const s = money.get(r.card_account_id) ?? nothing;
    const plan = planOf(batch, {
      cash: s.cash,
      overdraft: s.overdraft,
      refundable: refundable.get(r.card_account_id) ?? 0,
    });
    totals.balance += s.balance;
    totals.refunded += plan.refunded;
    if (plan.disposition === "payout") totals.payout += plan.left;
    if (plan.disposition === "kept") totals.kept += plan.left;
    if (s.held > 0) {
      totals.holds++;
      totals.held += s.held;
    }
    if (plan.debt > 0) {
      totals.debts++;
      totals.debt += plan.debt;
    }
    if (i >= paging.offset && i < paging.offset + paging.perPage) {
      cards.push({
        id: r.card_account_id,
        studentNumber: r.student_number,
        name: r.name,
        balance: s.balance,
        held: s.held,
        plan,
      });
    }
  }
  return { totals, cards };
}

function refundWords(batch: Pick<Batch, "refund_rule" | "payout_method" | "threshold">): string {
  const payout = batch.payout_method === "bank" ? "银行代发" : "到一卡通中心领取现金";
  const rule = batch.refund_rule === "origin_first"
    ? `余额优先原路退回微信，其余${payout}`
    : `余额${payout}`;
  const small = Number(batch.threshold) > 0
    ? `；低于${formatFen(Number(batch.threshold))}的余额留在账户中，可到一卡通中心领取`
    : "";
  return rule + small;
}

async function lockBatch(trx: Db, id: number): Promise<Batch> {
  const b = await trx.selectFrom("closeout_batches").selectAll().where("id", "=", id).forUpdate()
    .executeTakeFirst();
  if (!b) throw new NotFoundError("closeout batch");
  return b;
}

/** Sends each holder of the batch the notice of the close-out (once per batch). */
export async function notifyBatch(db: Db, actor: Actor, id: number): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const b = await lockBatch(trx, id);
    if (b.state === "cancelled") throw new CloseoutError("Cancelled", "该批次已取消");
    if (b.notified_at) throw new CloseoutError("Notified", "已通知过本批次的持卡人");
    const cards = await trx.selectFrom("closeout_cards").select("card_account_id")
      .where("batch_id", "=", id).where("state", "in", ["pending", "queued"]).execute();
    await noticeCloseout(trx, {
      cardIds: cards.map((c) => c.card_account_id),
      staffId: actor.staffId,
      closeOn: b.close_on,
      refund: refundWords(b),
    });
    await trx.updateTable("closeout_batches").set({ notified_at: new Date() })
      .where("id", "=", id).execute();
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "closeout.notified",
      targetType: "closeout_batch",
      targetId: id,
      before: null,
      after: { cards: cards.length, closeOn: b.close_on },
      ip: actor.ip,
    });
  });
}

/**
 * Confirms a draft batch: its cards are queued, due from the start of the close-out day (China
 * time), and the workers are woken.
 */
export async function confirmBatch(
  db: Db,
  actor: Actor,
  id: number,
  now = new Date(),
): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const b = await lockBatch(trx, id);
    if (b.state !== "draft") throw new CloseoutError("Not draft", "该批次已确认或已取消");
    const [dayStart] = chinaDayRange(b.close_on);
    const due = dayStart > now ? dayStart : now;
    await trx.updateTable("closeout_batches").set({
      state: "scheduled",
      scheduled_by: actor.staffId,
      scheduled_at: now,
    }).where("id", "=", id).execute();
    await trx.updateTable("closeout_cards").set({
      state: "queued",
      next_attempt_at: due,
      updated_at: now,
    }).where("batch_id", "=", id).where("state", "=", "pending").execute();
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "closeout.started",
      targetType: "closeout_batch",
      targetId: id,
      before: { state: b.state },
      after: { state: "scheduled", closeOn: b.close_on, cards: b.card_count },
      ip: actor.ip,
    });
  });
  wakeJobWorkers(CLOSEOUT_QUEUE);
}

/**
 * Cancels a batch: a draft whole, a confirmed one's cards not closed yet (they leave the batch,
 * free for another). Cards already closed stay closed.
 */
export async function cancelBatch(db: Db, actor: Actor, id: number): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const b = await lockBatch(trx, id);
    if (b.state === "cancelled") throw new CloseoutError("Cancelled", "该批次已取消");
    // Cards a worker holds right now finish; the rest leave the batch.
    const removed = await trx.deleteFrom("closeout_cards").where("batch_id", "=", id)
      .where("state", "in", ["pending", "queued", "failed"])
      .where((eb) =>
        eb.or([eb("lease_expires_at", "is", null), eb("lease_expires_at", "<=", new Date())])
      ).executeTakeFirst();
    const left = await trx.selectFrom("closeout_cards")
      .select((eb) => eb.fn.countAll<string>().as("n")).where("batch_id", "=", id)
      .executeTakeFirstOrThrow();
    await trx.updateTable("closeout_batches").set({
      state: b.state === "draft" ? "cancelled" : b.state,
      cancelled_at: new Date(),
      card_count: Number(left.n),
    }).where("id", "=", id).execute();
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "closeout.cancelled",
      targetType: "closeout_batch",
      targetId: id,
      before: { state: b.state, cards: b.card_count },
      after: { removed: Number(removed.numDeletedRows ?? 0), cards: Number(left.n) },
      ip: actor.ip,
    });
  });
}

/** Queues the batch's failed cards again, now. */
export async function retryFailed(db: Db, actor: Actor, id: number): Promise<number> {
  const n = await db.transaction().execute(async (trx) => {
    const b = await lockBatch(trx, id);
    if (b.state !== "scheduled") throw new CloseoutError("Not scheduled", "该批次尚未确认办理");
    const r = await trx.updateTable("closeout_cards").set({
      state: "queued",
      next_attempt_at: new Date(),
      attempts: 0,
      lease_token: null,
      lease_expires_at: null,
      updated_at: new Date(),
    }).where("batch_id", "=", id).where("state", "=", "failed").executeTakeFirst();
    const n = Number(r.numUpdatedRows ?? 0);
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "closeout.retried",
      targetType: "closeout_batch",
      targetId: id,
      before: null,
      after: { cards: n },
      ip: actor.ip,
    });
    return n;
  });
  wakeJobWorkers(CLOSEOUT_QUEUE);
  return n;
}

/** How far a batch is: its cards by state and what their closing did with the money. */
export async function batchProgress(db: Db, id: number) {
  const { rows } = await sql<{
    total: number;
    done: number;
    failed: number;
    queued: number;
    retrying: number;
    refunded: number;
    payout: number;
    kept: number;
    debt: number;
  }>`
    select count(*)::int as total,
      count(*) filter (where state = 'done')::int as done,
      count(*) filter (where state = 'failed')::int as failed,
      count(*) filter (where state = 'queued')::int as queued,
      count(*) filter (where state = 'queued' and attempts > 0)::int as retrying,
      coalesce(sum(refunded), 0)::bigint as refunded,
      coalesce(sum(left_on_card) filter (where disposition = 'payout'), 0)::bigint as payout,
      coalesce(sum(left_on_card) filter (where disposition = 'kept'), 0)::bigint as kept,
      coalesce(sum(debt), 0)::bigint as debt
    from closeout_cards where batch_id = ${id}`.execute(db);
  const r = rows[0];
  const total = Number(r.total);
  const done = Number(r.done);
  return {
    total,
    done,
    failed: Number(r.failed),
    queued: Number(r.queued),
    retrying: Number(r.retrying),
    refunded: Number(r.refunded),
    payout: Number(r.payout),
    kept: Number(r.kept),
    debt: Number(r.debt),
    percent: total === 0 ? 100 : Math.floor((done * 100) / total),
  };
}

/** The words for where a batch is. */
export function batchStatus(
  batch: Batch,
  p: Awaited<ReturnType<typeof batchProgress>>,
  now = new Date(),
): string {
  if (batch.state === "draft") return "待确认";
  if (batch.state === "cancelled") return "已取消";
  if (p.queued > 0) {
    return batch.close_on > chinaDay(now) ? `已安排（${batch.close_on} 起办理）` : "办理中";
  }
  if (p.failed > 0) return "部分失败";
  return batch.cancelled_at ? "已取消（已办理的卡保持销户）" : "已完成";
}

/** A batch's cards (of a state), by 学号: `paging` of them and how many. */
export async function batchCards(
  db: Db,
  id: number,
  filter: { state?: BatchCard["state"] },
  paging: Paging,
): Promise<{ rows: BatchCard[]; total: number }> {
  let q = db.selectFrom("closeout_cards").where("batch_id", "=", id);
  if (filter.state) q = q.where("state", "=", filter.state);
  const total = await q.select((eb) => eb.fn.countAll<string>().as("n")).executeTakeFirstOrThrow();
  const rows = await q.selectAll().orderBy("student_number").limit(paging.perPage)
    .offset(paging.offset).execute();
  return { rows, total: Number(total.n) };
}
