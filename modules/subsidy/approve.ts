/**
 * Approving a batch (the checker, never its preparer) and crediting it: the approval is recorded
 * first (state `approving`), then the rows are credited a chunk per transaction through the
 * wallet's `grantLots` (reference per batch and card: a retried, double-submitted or concurrent
 * approval credits each card once), and the batch is `approved` when no row is left. A crash in
 * between leaves it `approving`: approving again, or the worker below, credits the rest.
 */
import type { Db } from "../platform/database.ts";
import { NotFoundError } from "../platform/errors.ts";
import { logger } from "../platform/log.ts";
import { startLoop } from "../platform/loop.ts";
import { writeAudit } from "../staff/mod.ts";
import { findSchool } from "../account/mod.ts";
import { cardsByStudentNumbers } from "../card/mod.ts";
import { grantLots, subsidyFundingAccount } from "../wallet/mod.ts";
import { SubsidyError } from "./recipients.ts";
import { type Actor, type Batch, grantReference } from "./service.ts";
import "./tables.ts";

const log = logger("subsidy");

/** Rows credited per transaction: short enough never to hold locks long, on any batch size. */
export const CHUNK = 500;

/** What an approval did: cards credited now, and whether the batch is fully credited. */
export interface Approval {
  credited: number;
  complete: boolean;
}

/** Records the approval (or a resumption) of batch `id` by `actor`; the batch as approved. */
async function startApproval(db: Db, actor: Actor, id: number, now: Date): Promise<Batch | null> {
  return await db.transaction().execute(async (trx) => {
    const b = await trx.selectFrom("subsidy_batches").selectAll().where("id", "=", id).forUpdate()
      .executeTakeFirst();
    if (!b) throw new NotFoundError("subsidy batch");
    if (b.state === "approved") return null;
    if (b.state === "withdrawn") {
      throw new SubsidyError("Withdrawn", "批次已撤回，不能发放", "_form");
    }
    if (Number(b.created_by) === actor.staffId) {
      throw new SubsidyError(
        "Maker cannot check",
        "不能审核自己编制的批次，请由另一位财务人员审核",
        "_form",
      );
    }
    if (b.state === "approving") return b;
    if (b.recipients === 0) throw new SubsidyError("Nobody", "批次中没有可发放的持卡人", "_form");
    if (b.valid_until <= now) {
      throw new SubsidyError("Period over", "补助有效期已结束，请撤回后重新编制", "_form");
    }
    const started = await trx.updateTable("subsidy_batches")
      .set({ state: "approving", approved_by: actor.staffId, approved_at: now })
      .where("id", "=", id).returningAll().executeTakeFirstOrThrow();
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "subsidy.approved",
      targetType: "subsidy_batch",
      targetId: id,
      before: { state: "draft" },
      after: { state: "approving", recipients: b.recipients, total: Number(b.total) },
      ip: actor.ip,
    });
    return started;
  });
}

/**
 * Credits the next chunk of rows nobody else is crediting (`skip locked`): cards closed since
 * the preview are refused now, the rest granted and marked, in one transaction. Returns how many
 * rows it took (0: none left to take).
 */
async function creditChunk(db: Db, b: Batch, funding: number, size: number): Promise<number> {
  return await db.transaction().execute(async (trx) => {
    const rows = await trx.selectFrom("subsidy_recipients")
      .select(["id", "student_number", "card_account_id", "amount"])
      .where("batch_id", "=", b.id).where("error", "is", null).where("granted_at", "is", null)
      .orderBy("id").limit(size).forUpdate().skipLocked().execute();
    if (rows.length === 0) return 0;
    const cards = await cardsByStudentNumbers(
      trx,
      Number(b.school_id),
      rows.map((r) => r.student_number),
    );
    const closed = rows.filter((r) => {
      const card = cards.get(r.student_number);
      return !card || card.status === "cancelled" || card.id !== Number(r.card_account_id);
    });
    const open = rows.filter((r) => !closed.includes(r));
    if (closed.length) {
      await trx.updateTable("subsidy_recipients").set({ error: "审核发放前一卡通账户已注销" })
        .where("id", "in", closed.map((r) => r.id)).execute();
      await trx.updateTable("subsidy_batches").set((eb) => ({
        recipients: eb("recipients", "-", closed.length),
        total: eb("total", "-", closed.reduce((s, r) => s + Number(r.amount), 0)),
        refused: eb("refused", "+", closed.length),
      })).where("id", "=", b.id).execute();
    }
    if (open.length) {
      await grantLots(
        trx,
        {
          purse: b.purse,
          fundingAccountId: funding,
          batchId: b.id,
          validFrom: b.valid_from,
          validUntil: b.valid_until,
          categories: b.categories,
        },
        open.map((r) => ({
          cardAccountId: Number(r.card_account_id),
          amount: Number(r.amount),
          reference: grantReference(b.id, Number(r.card_account_id)),
        })),
      );
      await trx.updateTable("subsidy_recipients").set({ granted_at: new Date() })
        .where("id", "in", open.map((r) => r.id)).execute();
    }
    return rows.length;
  });
}

/** Marks the batch approved when no row is left to credit (audited once). */
async function finish(db: Db, id: number): Promise<boolean> {
  return await db.transaction().execute(async (trx) => {
    const b = await trx.selectFrom("subsidy_batches").selectAll().where("id", "=", id).forUpdate()
      .executeTakeFirstOrThrow();
    if (b.state === "approved") return true;
    const left = await trx.selectFrom("subsidy_recipients").select("id")
      .where("batch_id", "=", id).where("error", "is", null).where("granted_at", "is", null)
      .limit(1).executeTakeFirst();
    if (left || b.state !== "approving") return false;
    await trx.updateTable("subsidy_batches").set({ state: "approved", completed_at: new Date() })
      .where("id", "=", id).execute();
    await writeAudit(trx, {
      staffId: b.approved_by === null ? null : Number(b.approved_by),
      action: "subsidy.completed",
      targetType: "subsidy_batch",
      targetId: id,
      before: { state: "approving" },
      after: { state: "approved", recipients: b.recipients, total: Number(b.total) },
    });
    return true;
  });
}

/** Credits what is left of an `approving` batch; `maxChunks` stops early (a crash, in tests). */
export async function creditBatch(
  db: Db,
  b: Batch,
  options: { chunk?: number; maxChunks?: number } = {},
): Promise<Approval> {
  const school = await findSchool(db, Number(b.school_id));
  if (!school) throw new NotFoundError("school");
  const funding = await subsidyFundingAccount(db, school);
  let credited = 0;
  for (let i = 0; i < (options.maxChunks ?? Infinity); i++) {
    const n = await creditChunk(db, b, funding, options.chunk ?? CHUNK);
    if (n === 0) break;
    credited += n;
  }
  return { credited, complete: await finish(db, b.id) };
}

/**
 * 审核发放: the checker approves batch `id` (or resumes an approval left unfinished) and its rows
 * are credited. Approving an approved batch again does nothing.
 */
export async function approveBatch(
  db: Db,
  actor: Actor,
  id: number,
  options: { chunk?: number; maxChunks?: number; now?: Date } = {},
): Promise<Approval> {
  const b = await startApproval(db, actor, id, options.now ?? new Date());
  if (!b) return { credited: 0, complete: true };
  return await creditBatch(db, b, options);
}

/**
 * Resumes approvals left unfinished for a minute (their instance died mid-way): safe beside a
 * running approval, which takes other rows. Returns the stop function for `onShutdown`.
 */
export function startSubsidyWorker(deps: { db: Db }, seconds = 30): () => Promise<void> {
  const loop = startLoop({
    name: "subsidy approval round",
    log,
    everyMs: seconds * 1000,
    round: async () => {
      const stale = await deps.db.selectFrom("subsidy_batches").selectAll()
        .where("state", "=", "approving")
        .where("approved_at", "<", new Date(Date.now() - 60_000)).limit(10).execute();
      for (const b of stale) {
        const r = await creditBatch(deps.db, b);
        if (r.credited) log.info("subsidy approval resumed", { batch: b.id, credited: r.credited });
      }
      return false;
    },
  });
  return loop.stop;
}
