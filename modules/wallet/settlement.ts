/**
 * 商户结算 on the ledger's side. What the school owes a merchant is its ledger account's balance
 * (payments in, refunds and reversals out); finance's statements read its movements here and pay a
 * statement with two transfers out of that account: the payable to the payout clearing account
 * (money that left for the operator's bank account) and the management fee to the school's fee
 * income. Both are idempotent on the statement, so a statement is paid once whatever the retries.
 */
import { type RawBuilder, sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { checkReference, ensureMerchantAccount, type Trx } from "./_common.ts";
import { InvalidAmountError, ReferenceConflictError } from "./errors.ts";
import { MAX_AMOUNT } from "./_amounts.ts";
import "./tables.ts";

/** Where a statement's payable goes (money paid out to operators' banks). */
const PAYOUT_ACCOUNT = { code: "clearing:settlement", kind: "clearing", name: "商户结算付款清算" };
/** Where a statement's management fee goes (the school's income). */
const FEE_ACCOUNT = { code: "revenue:settlement_fee", kind: "revenue", name: "商户管理费收入" };

/** The kinds of a statement's own transfers: never a line of a statement. */
const SETTLEMENT_KINDS = ["settlement_payout", "settlement_fee"];

/** One movement of a merchant's account: + a payment, − a refund or reversal of one. */
export interface MerchantMovement {
  transferId: number;
  kind: string;
  delta: number;
  terminalId: number | null;
  createdAt: Date;
}

/**
 * The movements of a merchant's account made before `before`, in id order, except the transfers
 * `except` selects (a query of the caller's own table, e.g. the ids its statements hold already).
 */
export async function merchantMovements(
  db: Db,
  input: { merchantId: number; before: Date; except: RawBuilder<unknown> },
): Promise<MerchantMovement[]> {
  const account = await db.selectFrom("ledger_accounts").select("id")
    .where("merchant_id", "=", input.merchantId).executeTakeFirst();
  if (!account) return [];
  const { rows } = await sql<{
    id: number;
    kind: string;
    delta: number;
    terminal_id: number | null;
    created_at: Date;
  }>`
    select t.id, t.kind, t.terminal_id, t.created_at,
      case when t.credit_account_id = ${account.id} then t.amount else -t.amount end as delta
    from ledger_transfers t
    where t.merchant_id = ${input.merchantId} and t.created_at < ${input.before}
      and ${account.id} in (t.credit_account_id, t.debit_account_id)
      and t.kind <> all(${SETTLEMENT_KINDS}::text[]) and t.amount > 0
      and t.id not in (${input.except})
    order by t.id`.execute(db);
  return rows.map((r) => ({
    transferId: Number(r.id),
    kind: r.kind,
    delta: Number(r.delta),
    terminalId: r.terminal_id === null ? null : Number(r.terminal_id),
    createdAt: new Date(r.created_at),
  }));
}

/**
 * What the school owes each merchant now (its account's balance), and of it what was taken
 * since `since` (today's takings: payments less refunds).
 */
export async function merchantBalances(
  db: Db,
  merchantIds: number[],
  since: Date,
): Promise<Map<number, { balance: number; since: number }>> {
  const out = new Map<number, { balance: number; since: number }>();
  if (merchantIds.length === 0) return out;
  const { rows } = await sql<{ merchant_id: number; balance: number; since: number }>`
    select a.merchant_id,
      coalesce(sum(case when t.credit_account_id = a.id then t.amount else -t.amount end), 0)
        as balance,
      coalesce(sum(case when t.created_at < ${since} or t.kind = any(${SETTLEMENT_KINDS}::text[])
        then 0 when t.credit_account_id = a.id then t.amount else -t.amount end), 0) as since
    from ledger_accounts a
    join ledger_transfers t on t.merchant_id = a.merchant_id
      and a.id in (t.credit_account_id, t.debit_account_id)
    where a.merchant_id = any(${merchantIds}::bigint[])
    group by a.merchant_id`.execute(db);
  for (const r of rows) {
    out.set(Number(r.merchant_id), { balance: Number(r.balance), since: Number(r.since) });
  }
  return out;
}

async function systemAccount(trx: Trx, a: typeof PAYOUT_ACCOUNT): Promise<number> {
  await sql`insert into ledger_accounts (kind, code, name) values (${a.kind}, ${a.code}, ${a.name})
    on conflict (code) do nothing`.execute(trx);
  const row = await trx.selectFrom("ledger_accounts").select("id").where("code", "=", a.code)
    .executeTakeFirstOrThrow();
  return row.id;
}

/** Books one transfer out of the merchant's account, or finds the one its reference booked. */
async function bookOut(
  trx: Trx,
  t: {
    reference: string;
    kind: string;
    merchantAccount: number;
    to: number;
    merchantId: number;
    amount: number;
    details: unknown;
  },
): Promise<number> {
  const reference = checkReference(t.reference);
  const { rows } = await sql<{ id: number }>`
    insert into ledger_transfers (reference, kind, debit_account_id, credit_account_id, amount,
      merchant_id, details)
    values (${reference}, ${t.kind}, ${t.merchantAccount}, ${t.to}, ${t.amount}, ${t.merchantId},
      ${JSON.stringify(t.details)}::jsonb)
    on conflict (reference) do nothing
    returning id`.execute(trx);
  if (rows[0]) return Number(rows[0].id);
  const first = await trx.selectFrom("ledger_transfers")
    .select(["id", "amount", "debit_account_id", "credit_account_id"])
    .where("reference", "=", reference).executeTakeFirstOrThrow();
  if (
    first.amount !== t.amount || first.debit_account_id !== t.merchantAccount ||
    first.credit_account_id !== t.to
  ) {
    throw new ReferenceConflictError(reference);
  }
  return first.id;
}

/**
 * Pays statement `statementId` of a merchant inside the caller's transaction: `payable` to the
 * payout clearing account, `fee` to the fee income (either skipped when 0). Idempotent on the
 * statement: a repeat returns the transfers the first booked. Returns their ids (null when 0).
 */
export async function payMerchantStatement(
  trx: Trx,
  input: {
    merchantId: number;
    statementId: number;
    payable: number;
    fee: number;
    details: Record<string, unknown>;
  },
): Promise<{ payoutTransferId: number | null; feeTransferId: number | null }> {
  for (const [what, v] of [["payable", input.payable], ["fee", input.fee]] as const) {
    if (!Number.isSafeInteger(v) || v < 0 || v > MAX_AMOUNT) throw new InvalidAmountError(v, what);
  }
  const merchantAccount = await ensureMerchantAccount(trx, input.merchantId, {
    allowInactive: true,
  });
  const details = { statementId: input.statementId, ...input.details };
  const payoutTransferId = input.payable > 0
    ? await bookOut(trx, {
      reference: `settlement-payout:${input.statementId}`,
      kind: "settlement_payout",
      merchantAccount,
      to: await systemAccount(trx, PAYOUT_ACCOUNT),
      merchantId: input.merchantId,
      amount: input.payable,
      details,
    })
    : null;
  const feeTransferId = input.fee > 0
    ? await bookOut(trx, {
      reference: `settlement-fee:${input.statementId}`,
      kind: "settlement_fee",
      merchantAccount,
      to: await systemAccount(trx, FEE_ACCOUNT),
      merchantId: input.merchantId,
      amount: input.fee,
      details,
    })
    : null;
  return { payoutTransferId, feeTransferId };
}

/** Every statement payout and fee booked so far, by statement: what the ledger says was paid. */
export async function settlementTransfers(
  db: Db,
): Promise<Map<number, { payout: number; fee: number; merchantId: number | null }>> {
  const { rows } = await sql<{ reference: string; amount: number; merchant_id: number | null }>`
    select reference, amount, merchant_id from ledger_transfers
    where kind in ('settlement_payout', 'settlement_fee')`.execute(db);
  const out = new Map<number, { payout: number; fee: number; merchantId: number | null }>();
  for (const r of rows) {
    const m = /^settlement-(payout|fee):(\d+)$/.exec(r.reference);
    if (!m) continue;
    const id = Number(m[2]);
    const t = out.get(id) ?? { payout: 0, fee: 0, merchantId: r.merchant_id };
    t[m[1] === "payout" ? "payout" : "fee"] += Number(r.amount);
    out.set(id, t);
  }
  return out;
}
