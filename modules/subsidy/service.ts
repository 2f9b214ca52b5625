/**
 * 补助发放: a finance member prepares a batch (its recipients checked row by row; nothing is
 * credited), another approves it (approve.ts credits the rows), or it is withdrawn first. After
 * approval a card's grant is only undone by a new transfer (冲回). The batches' reports read the
 * wallet's lots. Every change is audited in its own transaction.
 */
import type { Selectable } from "kysely";
import { chinaDay, chinaDayRange } from "../platform/china_time.ts";
import type { Db } from "../platform/database.ts";
import { NotFoundError } from "../platform/errors.ts";
import type { Paging } from "../platform/listing.ts";
import { writeAudit } from "../staff/mod.ts";
import { parseStudentNumber } from "../card/mod.ts";
import {
  type BatchLot,
  listPurseKinds,
  lotsOfBatch,
  type LotTotals,
  lotTotalsByBatch,
  reverseGrant,
} from "../wallet/mod.ts";
import { checkList, everyCardOf, type RecipientRow, SubsidyError } from "./recipients.ts";
import type { SubsidyBatchesTable, SubsidyRecipientsTable } from "./tables.ts";
import "./tables.ts";

export type Batch = Selectable<SubsidyBatchesTable>;
export type Recipient = Selectable<SubsidyRecipientsTable>;

/** Who acts, for the checks and the audit log. */
export interface Actor {
  staffId: number;
  ip: string | null;
}

export const BATCH_STATES = {
  draft: "待审核",
  approving: "发放中",
  approved: "已发放",
  withdrawn: "已撤回",
} as const;

/** What a new batch asks for (the form's fields, checked). */
export interface NewBatch {
  name: string;
  purpose: string;
  schoolId: number;
  purse: string;
  source: "list" | "card_type";
  cardTypeId?: number;
  list: Uint8Array | null;
  /** Each card's amount (a card type's batch), or a list row's when its cell is empty. */
  amount: number | null;
  /** China days, both included. */
  validFrom: string;
  validUntil: string;
  categories: string[];
  now?: Date;
}

/** The batch's terms checked: the period in China days and where its money may be spent. */
async function checkTerms(db: Db, input: NewBatch): Promise<[Date, Date]> {
  if (input.validUntil < input.validFrom) {
    throw new SubsidyError(
      "Period ends before it starts",
      "有效期截止不能早于开始日期",
      "valid_until",
    );
  }
  if (input.validUntil < chinaDay(input.now ?? new Date())) {
    throw new SubsidyError("Period over", "有效期截止不能早于今天", "valid_until");
  }
  const kind = (await listPurseKinds(db)).find((k) => k.code === input.purse && k.lots);
  if (!kind) throw new SubsidyError("No such purse", "请选择补助钱包", "purse");
  const outside = input.categories.filter((c) => kind.categories && !kind.categories.includes(c));
  if (input.categories.length === 0 || outside.length) {
    throw new SubsidyError("Bad categories", "请选择可使用的商户类别", "categories");
  }
  return [chinaDayRange(input.validFrom)[0], chinaDayRange(input.validUntil)[1]];
}

/** Makes a draft batch with its checked rows (refused ones with their reasons). Returns its id. */
export async function createBatch(db: Db, actor: Actor, input: NewBatch): Promise<number> {
  const [validFrom, validUntil] = await checkTerms(db, input);
  let rows: RecipientRow[];
  if (input.source === "card_type") {
    if (!input.cardTypeId) throw new SubsidyError("No card type", "请选择卡类别", "card_type");
    if (input.amount === null) throw new SubsidyError("No amount", "请填写每人金额", "amount");
    rows = await everyCardOf(db, input.schoolId, input.cardTypeId, input.amount);
  } else {
    if (!input.list) throw new SubsidyError("No list", "请上传发放名单", "file");
    rows = await checkList(db, input.schoolId, input.list, input.amount);
  }
  const ok = rows.filter((r) => !r.error);
  return await db.transaction().execute(async (trx) => {
    const batch = await trx.insertInto("subsidy_batches").values({
      name: input.name,
      purpose: input.purpose,
      school_id: input.schoolId,
      purse: input.purse,
      source: input.source,
      card_type_id: input.cardTypeId ?? null,
      valid_from: validFrom,
      valid_until: validUntil,
      categories: input.categories,
      recipients: ok.length,
      total: ok.reduce((s, r) => s + r.amount!, 0),
      refused: rows.length - ok.length,
      created_by: actor.staffId,
    }).returning(["id", "total"]).executeTakeFirstOrThrow();
    for (let i = 0; i < rows.length; i += 2000) {
      await trx.insertInto("subsidy_recipients").values(
        rows.slice(i, i + 2000).map((r) => ({
          batch_id: batch.id,
          line: r.line,
          student_number: r.studentNumber,
          name: r.name,
          card_account_id: r.cardAccountId,
          amount: r.amount,
          error: r.error,
        })),
      ).execute();
    }
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "subsidy.created",
      targetType: "subsidy_batch",
      targetId: batch.id,
      after: {
        name: input.name,
        purpose: input.purpose,
        source: input.source,
        cardTypeId: input.cardTypeId ?? null,
        recipients: ok.length,
        total: Number(batch.total),
        refused: rows.length - ok.length,
        validFrom: input.validFrom,
        validUntil: input.validUntil,
        categories: input.categories,
      },
      ip: actor.ip,
    });
    return batch.id;
  });
}

export async function getBatch(db: Db, id: number): Promise<Batch | null> {
  return (await db.selectFrom("subsidy_batches").selectAll().where("id", "=", id)
    .executeTakeFirst()) ?? null;
}

/** The latest batches, newest first. */
/** The batches, newest first: a page of them (the last when past the end) and how many. */
export async function listBatches(
  db: Db,
  page: (total: number) => Paging,
): Promise<{ rows: Batch[]; total: number; page: Paging }> {
  const count = await db.selectFrom("subsidy_batches")
    .select((eb) => eb.fn.countAll<string>().as("n")).executeTakeFirstOrThrow();
  const total = Number(count.n);
  const p = page(total);
  const rows = await db.selectFrom("subsidy_batches").selectAll().orderBy("id", "desc")
    .limit(p.perPage).offset(p.offset).execute();
  return { rows, total, page: p };
}

/** A batch's rows: all, those refused, or those to credit; a page of them and how many. */
export async function batchRows(
  db: Db,
  batchId: number,
  filter: { refused?: boolean },
  paging: Paging,
): Promise<{ rows: Recipient[]; total: number }> {
  let q = db.selectFrom("subsidy_recipients").where("batch_id", "=", batchId);
  if (filter.refused !== undefined) {
    q = q.where("error", filter.refused ? "is not" : "is", null);
  }
  const { n } = await q.select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow();
  const rows = await q.selectAll().orderBy("id").limit(paging.perPage).offset(paging.offset)
    .execute();
  return { rows, total: Number(n) };
}

/** Withdraws a batch not yet approved: nothing was credited, nothing will be. */
export async function withdrawBatch(db: Db, actor: Actor, id: number): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const b = await trx.selectFrom("subsidy_batches").select(["state"]).where("id", "=", id)
      .forUpdate().executeTakeFirst();
    if (!b) throw new NotFoundError("subsidy batch");
    if (b.state === "withdrawn") return;
    if (b.state !== "draft") {
      throw new SubsidyError(
        "Batch approved",
        "批次已审核发放，不能撤回；如需收回，请逐卡冲回",
        "_form",
      );
    }
    await trx.updateTable("subsidy_batches")
      .set({ state: "withdrawn", withdrawn_by: actor.staffId, withdrawn_at: new Date() })
      .where("id", "=", id).execute();
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "subsidy.withdrawn",
      targetType: "subsidy_batch",
      targetId: id,
      before: { state: "draft" },
      after: { state: "withdrawn" },
      ip: actor.ip,
    });
  });
}

/** The reference of a batch's grant to a card: one grant per batch and card, ever. */
export function grantReference(batchId: number, cardAccountId: number): string {
  return `subsidy:${batchId}:${cardAccountId}`;
}

/**
 * 冲回 one card's grant of an approved batch: what its lot still holds free goes back to the
 * funding account by a new transfer, audited with the reason. Returns the amount.
 */
export async function reverseRecipient(
  db: Db,
  actor: Actor,
  input: { batchId: number; studentNumber: string; reason: string },
): Promise<number> {
  const number = parseStudentNumber(input.studentNumber);
  if (!number) throw new SubsidyError("Bad student number", "请填写正确的学号", "student_number");
  return await db.transaction().execute(async (trx) => {
    const row = await trx.selectFrom("subsidy_recipients")
      .select(["id", "card_account_id", "granted_at"])
      .where("batch_id", "=", input.batchId).where("student_number", "=", number)
      .where("error", "is", null).executeTakeFirst();
    if (!row?.granted_at || row.card_account_id === null) {
      throw new SubsidyError("Not granted", "本批次没有发放给该学号的补助", "student_number");
    }
    const back = await reverseGrant(trx, {
      grantReference: grantReference(input.batchId, row.card_account_id),
      reason: input.reason,
      staffId: actor.staffId,
    });
    if (!back) {
      throw new SubsidyError(
        "Nothing left",
        "该持卡人的本批补助已用完或已退回，没有可冲回的金额",
        "student_number",
      );
    }
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "subsidy.reversed",
      targetType: "subsidy_batch",
      targetId: input.batchId,
      after: {
        studentNumber: number,
        cardAccountId: row.card_account_id,
        amount: back.amount,
        transferId: back.transferId,
        reason: input.reason,
      },
      ip: actor.ip,
    });
    return back.amount;
  });
}

/** The report of each batch: issued, spent, expired, returned, remaining (from its lots). */
export async function batchTotals(db: Db, ids: number[]): Promise<Map<number, LotTotals>> {
  return await lotTotalsByBatch(db, ids);
}

/** A batch's cards with what each spent, lost to expiry, had reversed and holds still. */
export async function batchLots(
  db: Db,
  batchId: number,
): Promise<Array<BatchLot & { studentNumber: string; name: string | null }>> {
  const lots = await lotsOfBatch(db, batchId);
  const rows = await db.selectFrom("subsidy_recipients")
    .select(["card_account_id", "student_number", "name"])
    .where("batch_id", "=", batchId).where("error", "is", null).execute();
  const byCard = new Map(rows.map((r) => [Number(r.card_account_id), r]));
  return lots.map((l) => ({
    ...l,
    studentNumber: byCard.get(l.cardAccountId)?.student_number ?? "",
    name: byCard.get(l.cardAccountId)?.name ?? null,
  }));
}
