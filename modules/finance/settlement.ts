/**
 * 商户结算: the statements of the merchants run by outside operators. A statement covers one
 * ended period (a China day, week from Monday, or month) of a merchant: the movements of its
 * ledger account made before the period's end that no earlier statement took (so a refund made
 * after a statement was prepared lands in the next one), gross payments, refunds, the net, the
 * management fee at the merchant's rate and the payable. Finance prepares it, a second finance
 * member approves it (or sends it back), and paying it, with the bank's reference, books the
 * ledger transfers out of the merchant's account once (wallet's `payMerchantStatement`). What
 * the school owes a merchant is that account's balance at any time.
 */
import { sql } from "kysely";
import type { Selectable } from "kysely";
import {
  chinaDay,
  chinaDayStart,
  chinaMonthStart,
  chinaWeekStart,
} from "../platform/china_time.ts";
import type { Db } from "../platform/database.ts";
import { NotFoundError } from "../platform/errors.ts";
import { formatFen } from "../platform/money.ts";
import type { Paging } from "../platform/listing.ts";
import { writeAudit } from "../staff/mod.ts";
import {
  merchantsByIds,
  type SettlementPeriod,
  type SettlementTerms,
  settlementTerms,
} from "../merchant/mod.ts";
import {
  type LedgerCheck,
  merchantBalances,
  merchantMovements,
  payMerchantStatement,
  settlementTransfers,
} from "../wallet/mod.ts";
import { type Actor, FinanceError } from "./service.ts";
import type { SettlementStatementsTable } from "./tables.ts";
import "./tables.ts";

const DAY_MS = 86_400_000;

/** A statement as its pages show it. */
export type Statement = Selectable<SettlementStatementsTable>;

export const STATEMENT_STATES = {
  prepared: "待复核",
  approved: "已复核待付款",
  rejected: "已退回",
  paid: "已付款",
} as const;

/** The period of `period` kind that holds `at`: [start, end) and its China days (inclusive). */
export function periodOf(
  period: SettlementPeriod,
  at: Date | number,
): { start: Date; end: Date; startDay: string; endDay: string } {
  let start: Date;
  let end: Date;
  if (period === "daily") {
    start = chinaDayStart(at);
    end = new Date(start.getTime() + DAY_MS);
  } else if (period === "weekly") {
    start = chinaWeekStart(at);
    end = new Date(start.getTime() + 7 * DAY_MS);
  } else {
    start = chinaMonthStart(at);
    end = chinaMonthStart(start.getTime() + 32 * DAY_MS);
  }
  return { start, end, startDay: chinaDay(start), endDay: chinaDay(end.getTime() - 1) };
}

/** The management fee of a net amount at `bp` basis points, rounded half up to the fen. */
export function feeOf(net: number, bp: number): number {
  return net <= 0 ? 0 : Math.floor((net * bp + 5_000) / 10_000);
}

/** The merchants that are settled, with their terms. */
async function settledMerchants(
  db: Db,
): Promise<Array<{ id: number; name: string; code: string; terms: SettlementTerms }>> {
  const terms = await settlementTerms(db);
  const ids = [...terms.values()].filter((t) => t.settles).map((t) => t.merchantId);
  const merchants = [...(await merchantsByIds(db, ids)).values()]
    .sort((a, b) => a.code.localeCompare(b.code));
  return merchants.map((m) => ({ id: m.id, name: m.name, code: m.code, terms: terms.get(m.id)! }));
}

/** Each settled merchant with what it is owed: unprepared, in open statements, in all, today. */
export async function settlementOverview(db: Db, now = new Date()) {
  const merchants = await settledMerchants(db);
  const ids = merchants.map((m) => m.id);
  const balances = await merchantBalances(db, ids, chinaDayStart(now));
  const open = ids.length
    ? await db.selectFrom("settlement_statements")
      .select(["merchant_id", (eb) => eb.fn.sum<string>("net").as("net")])
      .where("merchant_id", "in", ids).where("state", "in", ["prepared", "approved"])
      .groupBy("merchant_id").execute()
    : [];
  const inStatements = new Map(open.map((r) => [r.merchant_id, Number(r.net)]));
  return merchants.map((m) => {
    const b = balances.get(m.id) ?? { balance: 0, since: 0 };
    const prepared = inStatements.get(m.id) ?? 0;
    return {
      ...m,
      owed: {
        balance: b.balance,
        inStatements: prepared,
        unsettled: b.balance - prepared,
        today: b.since,
      },
    };
  });
}

/**
 * Prepares the statements of every ended period of one settled merchant (or all of them) that
 * has movements no statement took yet. A period whose net would be negative (more refunded than
 * taken) gets no statement: its movements carry into the next one. Returns the statements made.
 */
export async function prepareStatements(
  db: Db,
  actor: Actor,
  input: { merchantId: number | "all"; now?: Date },
): Promise<{ prepared: number[]; carried: number }> {
  const now = input.now ?? new Date();
  let merchants = await settledMerchants(db);
  if (input.merchantId !== "all") {
    merchants = merchants.filter((m) => m.id === input.merchantId);
    if (merchants.length === 0) {
      throw new FinanceError("Merchant not settled", "该商户未开启结算", "merchant");
    }
  }
  const prepared: number[] = [];
  let carried = 0;
  for (const m of merchants) {
    const r = await db.transaction().execute((trx) => prepareOf(trx, actor, m, now));
    prepared.push(...r.prepared);
    carried += r.carried;
  }
  return { prepared, carried };
}

async function prepareOf(
  trx: Db,
  actor: Actor,
  m: { id: number; name: string; terms: SettlementTerms },
  now: Date,
): Promise<{ prepared: number[]; carried: number }> {
  // One preparer per merchant at a time; the unique period index and the lines' key hold anyway.
  await sql`select pg_advisory_xact_lock(7301, ${m.id}::int)`.execute(trx);
  const period = m.terms.period;
  const current = periodOf(period, now);
  const moves = (await merchantMovements(trx, {
    merchantId: m.id,
    before: current.start,
    except: sql`select transfer_id from settlement_lines`,
  })).sort((a, b) => +a.createdAt - +b.createdAt || a.transferId - b.transferId);
  const live = new Set(
    (await trx.selectFrom("settlement_statements").select("period_start")
      .where("merchant_id", "=", m.id).where("state", "<>", "rejected").execute())
      .map((s) => s.period_start),
  );
  const prepared: number[] = [];
  let from = 0;
  let i = 0;
  while (i < moves.length) {
    // The movement's period, or the first later one without a statement (a late arrival).
    let p = periodOf(period, moves[i].createdAt);
    while (live.has(p.startDay)) p = periodOf(period, p.end);
    if (p.start >= current.start) break;
    let j = i;
    while (j < moves.length && moves[j].createdAt < p.end) j++;
    const batch = moves.slice(from, j);
    i = j;
    const gross = batch.filter((x) => x.delta > 0);
    const back = batch.filter((x) => x.delta < 0);
    const grossSum = gross.reduce((s, x) => s + x.delta, 0);
    const backSum = -back.reduce((s, x) => s + x.delta, 0);
    const net = grossSum - backSum;
    if (net < 0) continue; // carried into the next period with movements
    const fee = feeOf(net, m.terms.feeRateBp);
    const row = await trx.insertInto("settlement_statements").values({
      merchant_id: m.id,
      period,
      period_start: p.startDay,
      period_end: p.endDay,
      cutoff: p.end,
      gross: grossSum,
      gross_count: gross.length,
      refunds: backSum,
      refund_count: back.length,
      net,
      fee_rate_bp: m.terms.feeRateBp,
      fee,
      payable: net - fee,
      prepared_by: actor.staffId,
    }).returning("id").executeTakeFirstOrThrow();
    for (let k = 0; k < batch.length; k += 1000) {
      await trx.insertInto("settlement_lines").values(
        batch.slice(k, k + 1000).map((x) => ({
          transfer_id: x.transferId,
          statement_id: row.id,
          merchant_delta: x.delta,
          kind: x.kind,
          terminal_id: x.terminalId,
          created_at: x.createdAt,
        })),
      ).execute();
    }
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "settlement.prepared",
      targetType: "settlement_statement",
      targetId: row.id,
      before: null,
      after: {
        merchant: m.name,
        period: `${p.startDay} 至 ${p.endDay}`,
        net,
        feeRate: `${(m.terms.feeRateBp / 100).toFixed(2)}%`,
        payable: net - fee,
      },
      ip: actor.ip,
    });
    live.add(p.startDay);
    prepared.push(row.id);
    from = j;
  }
  return { prepared, carried: moves.length - from };
}

async function lockStatement(trx: Db, id: number): Promise<Statement> {
  const s = await trx.selectFrom("settlement_statements").selectAll().where("id", "=", id)
    .forUpdate().executeTakeFirst();
  if (!s) throw new NotFoundError("settlement statement");
  return s;
}

/**
 * Approves (or sends back) a prepared statement: only a finance member other than its preparer
 * (maker-checker). Approved, it is frozen; sent back, its movements are free for a new one.
 */
export async function decideStatement(
  db: Db,
  actor: Actor,
  input: { id: number; approve: boolean; note: string },
): Promise<void> {
  await db.transaction().execute(async (trx) => {
    const s = await lockStatement(trx, input.id);
    if (s.state !== "prepared") {
      throw new FinanceError("Statement decided", "该结算单已复核，不能再次复核");
    }
    if (s.prepared_by === actor.staffId) {
      throw new FinanceError("Maker cannot check", "本结算单由您编制，须由另一位财务人员复核");
    }
    if (!input.approve && !input.note) {
      throw new FinanceError("Note required", "请填写退回说明", "note");
    }
    const state = input.approve ? "approved" as const : "rejected" as const;
    await trx.updateTable("settlement_statements").set({
      state,
      decided_by: actor.staffId,
      decided_at: new Date(),
      decision_note: input.note || null,
    }).where("id", "=", s.id).execute();
    if (!input.approve) {
      await trx.deleteFrom("settlement_lines").where("statement_id", "=", s.id).execute();
    }
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: input.approve ? "settlement.approved" : "settlement.rejected",
      targetType: "settlement_statement",
      targetId: s.id,
      before: { state: s.state, payable: s.payable },
      after: { state, ...(input.note ? { note: input.note } : {}) },
      ip: actor.ip,
    });
  });
}

/**
 * Marks an approved statement paid with the bank's reference and books its payout and fee out of
 * the merchant's account, once. Paying a paid statement again with the same reference is the
 * same payment (`duplicate`); with another reference it is refused.
 */
export async function payStatement(
  db: Db,
  actor: Actor,
  input: { id: number; bankReference: string },
): Promise<{ duplicate: boolean }> {
  return await db.transaction().execute(async (trx) => {
    const s = await lockStatement(trx, input.id);
    const bankReference = input.bankReference.trim() || null;
    if (s.state === "paid") {
      if (s.bank_reference === bankReference) return { duplicate: true };
      throw new FinanceError("Statement paid", "该结算单已登记付款");
    }
    if (s.state !== "approved") {
      throw new FinanceError("Statement not approved", "结算单须复核通过后才能付款");
    }
    if (s.payable > 0 && !bankReference) {
      throw new FinanceError("Bank reference required", "请填写银行付款流水号", "bank_reference");
    }
    const paid = await payMerchantStatement(trx, {
      merchantId: s.merchant_id,
      statementId: s.id,
      payable: s.payable,
      fee: s.fee,
      details: {
        staffId: actor.staffId,
        bankReference,
        period: `${s.period_start}/${s.period_end}`,
      },
    });
    await trx.updateTable("settlement_statements").set({
      state: "paid",
      paid_by: actor.staffId,
      paid_at: new Date(),
      bank_reference: bankReference,
      payout_transfer_id: paid.payoutTransferId,
      fee_transfer_id: paid.feeTransferId,
    }).where("id", "=", s.id).execute();
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "settlement.paid",
      targetType: "settlement_statement",
      targetId: s.id,
      before: { state: s.state },
      after: { state: "paid", payable: s.payable, bankReference },
      ip: actor.ip,
    });
    return { duplicate: false };
  });
}

/** One statement, or null. */
export async function getStatement(db: Db, id: number): Promise<Statement | null> {
  return (await db.selectFrom("settlement_statements").selectAll().where("id", "=", id)
    .executeTakeFirst()) ?? null;
}

/** A statement's lines, oldest first: `paging` of them and how many there are. */
export async function statementLines(db: Db, id: number, paging: Paging) {
  const total = await db.selectFrom("settlement_lines")
    .select((eb) => eb.fn.countAll<string>().as("n")).where("statement_id", "=", id)
    .executeTakeFirstOrThrow();
  const rows = await db.selectFrom("settlement_lines").selectAll().where("statement_id", "=", id)
    .orderBy("created_at").orderBy("transfer_id").limit(paging.perPage).offset(paging.offset)
    .execute();
  return {
    total: Number(total.n),
    lines: rows.map((r) => ({
      transferId: r.transfer_id,
      delta: r.merchant_delta,
      kind: r.kind,
      terminalId: r.terminal_id,
      createdAt: r.created_at,
    })),
  };
}

/**
 * Statements, newest first, of a merchant and a state (or any of `states`); `paging` of them and
 * how many.
 */
export async function listStatements(
  db: Db,
  filter: { merchantId?: number; state?: Statement["state"]; states?: Statement["state"][] },
  paging: Paging,
) {
  let q = db.selectFrom("settlement_statements");
  if (filter.merchantId) q = q.where("merchant_id", "=", filter.merchantId);
  if (filter.state) q = q.where("state", "=", filter.state);
  if (filter.states) q = q.where("state", "in", filter.states);
  const total = await q.select((eb) => eb.fn.countAll<string>().as("n")).executeTakeFirstOrThrow();
  const rows = await q.selectAll().orderBy("period_start", "desc").orderBy("id", "desc")
    .limit(paging.perPage).offset(paging.offset).execute();
  const names = await merchantsByIds(db, rows.map((r) => r.merchant_id));
  return {
    total: Number(total.n),
    rows: rows.map((r) => ({ ...r, merchantName: names.get(r.merchant_id)?.name ?? "" })),
  };
}

/**
 * The statements checked against the ledger: each paid statement's payout and fee were booked for
 * its merchant at its amounts, and nothing was booked for a statement not paid. Empty when all
 * agree (what a merchant is owed is then its account's balance, less what was paid out).
 */
export async function verifySettlements(db: Db): Promise<string[]> {
  const booked = await settlementTransfers(db);
  const statements = await db.selectFrom("settlement_statements")
    .select(["id", "merchant_id", "state", "payable", "fee"])
    .where((eb) =>
      eb.or([
        eb("state", "=", "paid"),
        ...(booked.size ? [eb("id", "in", [...booked.keys()])] : []),
      ])
    ).execute();
  const problems: string[] = [];
  const seen = new Set<number>();
  for (const s of statements) {
    seen.add(s.id);
    const b = booked.get(s.id) ?? { payout: 0, fee: 0, merchantId: s.merchant_id };
    if (s.state !== "paid") {
      problems.push(`结算单 #${s.id} 未登记付款，但账上已付 ${formatFen(b.payout + b.fee)}`);
    } else if (b.payout !== s.payable || b.fee !== s.fee || b.merchantId !== s.merchant_id) {
      problems.push(
        `结算单 #${s.id}：应付 ${formatFen(s.payable)}、管理费 ${formatFen(s.fee)}，账上付款 ${
          formatFen(b.payout)
        }、管理费 ${formatFen(b.fee)}`,
      );
    }
  }
  for (const [id, b] of booked) {
    if (!seen.has(id)) {
      problems.push(`账上有结算单 #${id} 的付款 ${formatFen(b.payout + b.fee)}，但没有该结算单`);
    }
  }
  return problems;
}

/** 商户结算's rule of the books, for the ledger verifier (账务核验, `deno task verify-ledger`). */
export const settlementLedgerCheck: LedgerCheck = {
  name: "商户结算",
  problems: verifySettlements,
};
