/**
 * Lots: money of a purse other than cash (补助, …) granted to a card by a batch, and its way back
 * to where it came from. A grant moves money from a funding account (the school's 补助资金) into
 * a new lot of the card; what a lot still holds free goes back by a transfer of its own when
 * finance reverses the grant for the card (`subsidy_reversal`), when it expires
 * (`subsidy_expiry`, the worker below) or when the card is closed (`subsidy_return`). Each such
 * transfer names the grant as its original, so the verifier sees the give-backs of a grant stay
 * within it.
 */
import { type RawBuilder, sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { writeAudit } from "../staff/mod.ts";
import { checkReference, ensureCardWallet, ensureSystemAccount, type Trx } from "./_common.ts";
import { checkAmount } from "./_amounts.ts";
import { creditSql, signedBalanceSql } from "./_rules.ts";
import { InvalidAmountError, WalletError } from "./errors.ts";
import type { TransferKind } from "./tables.ts";

/** A grant cannot be made as asked (a purse, a place or a period that is not one). */
export class GrantError extends WalletError {
  readonly code = "bad_grant";
  override status = 422 as const;
  constructor(why: string, userMessage: string, field?: string) {
    super(`Cannot grant: ${why}`, userMessage, field);
  }
}

/** The subsidy funding account (补助资金) of a school, created on first use. */
export async function subsidyFundingAccount(
  db: Db,
  school: { id: number; name: string },
): Promise<number> {
  return await ensureSystemAccount(
    db,
    `subsidy:${school.id}`,
    "subsidy",
    `${school.name} 补助资金`,
  );
}

/** A purse kind as pages and forms show it. */
export interface PurseKind {
  code: string;
  name: string;
  spendOrder: number;
  /** Where its money may be spent; null: anywhere. */
  categories: string[] | null;
  /** False for the cash purse. */
  lots: boolean;
}

/** Every purse kind, in spend order (cash last). */
export async function listPurseKinds(db: Db): Promise<PurseKind[]> {
  const rows = await db.selectFrom("purse_kinds").selectAll()
    .orderBy("lots", "desc").orderBy("spend_order").orderBy("code").execute();
  return rows.map((r) => ({
    code: r.code,
    name: r.name,
    spendOrder: r.spend_order,
    categories: r.categories,
    lots: r.lots,
  }));
}

/** What a batch grants: the same purse, place and period for every card. */
export interface GrantTerms {
  purse: string;
  fundingAccountId: number;
  batchId: number | null;
  validFrom: Date;
  validUntil: Date;
  /** Merchant categories and "utilities" the money may be spent at (within the purse's). */
  categories: string[];
}

/** Grants more than this per statement are split: one round trip each. */
const GRANTS_PER_STATEMENT = 500;

/**
 * Credits each card its grant into a new lot under `terms`, inside the caller's transaction (with
 * its audit and the batch's state). Idempotent on each grant's reference: a grant already made is
 * skipped. Returns how many were made now.
 */
export async function grantLots(
  trx: Trx,
  terms: GrantTerms,
  grants: Array<{ cardAccountId: number; amount: number; reference: string }>,
): Promise<number> {
  const kind = await trx.selectFrom("purse_kinds").selectAll().where("code", "=", terms.purse)
    .executeTakeFirst();
  if (!kind || !kind.lots) throw new GrantError(`no purse ${terms.purse}`, "请选择补助钱包");
  const outside = terms.categories.filter((c) => kind.categories && !kind.categories.includes(c));
  if (terms.categories.length === 0 || outside.length) {
    throw new GrantError("categories outside the purse", "请选择可使用的商户类别", "categories");
  }
  if (!(terms.validUntil.getTime() > terms.validFrom.getTime())) {
    throw new GrantError("empty period", "有效期截止须晚于开始时间", "valid_until");
  }
  let made = 0;
  for (let i = 0; i < grants.length; i += GRANTS_PER_STATEMENT) {
    const chunk = grants.slice(i, i + GRANTS_PER_STATEMENT);
    for (const g of chunk) {
      checkAmount(g.amount);
      checkReference(g.reference);
      await ensureCardWallet(trx, g.cardAccountId);
    }
    made += await grantChunk(trx, terms, chunk);
  }
  return made;
}

async function grantChunk(
  trx: Trx,
  terms: GrantTerms,
  grants: Array<{ cardAccountId: number; amount: number; reference: string }>,
): Promise<number> {
  const cards = grants.map((g) => g.cardAccountId);
  const amounts = grants.map((g) => g.amount);
  const references = grants.map((g) => g.reference);
  const details = JSON.stringify({ batchId: terms.batchId, purse: terms.purse });
  // The wallet rows are updated before the transfers draw their ids (a card's ids follow the
  // order its balance changed in), relative to the rows. A grant's money all goes to its lot (it
  // pays no overdraft).
  const { rows: [r] } = await sql<{ n: number }>`
    with g as (
      select * from unnest(${cards}::bigint[], ${amounts}::bigint[], ${references}::text[])
        as g(card_account_id, amount, reference)
      where not exists (select 1 from ledger_transfers t where t.reference = g.reference)
    ), w as (
      update ledger_accounts la set ${creditSql(sql`0`, sql`g.amount`)}
      from g where la.card_account_id = g.card_account_id
      returning la.id as account_id, la.card_account_id, g.amount, g.reference,
        ${signedBalanceSql()} as after
    ), t as (
      insert into ledger_transfers (reference, kind, debit_account_id, credit_account_id, amount,
        card_account_id, card_delta, balance_after, details)
      select w.reference, 'subsidy', ${terms.fundingAccountId}, w.account_id, w.amount,
        w.card_account_id, w.amount, w.after, ${details}::jsonb
      from w
      returning id, reference, card_account_id, amount
    ), l as (
      insert into purse_lots (card_account_id, purse, reference, grant_transfer_id,
        funding_account_id, batch_id, granted, remaining, valid_from, valid_until, categories)
      select t.card_account_id, ${terms.purse}, t.reference, t.id, ${terms.fundingAccountId},
        ${terms.batchId}, t.amount, t.amount, ${terms.validFrom}, ${terms.validUntil},
        ${terms.categories}::text[]
      from t
      returning id, grant_transfer_id, granted
    ), legs as (
      insert into purse_legs (transfer_id, lot_id, amount)
      select l.grant_transfer_id, l.id, l.granted from l
      returning 1
    )
    select count(*)::int as n from legs`.execute(trx);
  return Number(r?.n ?? 0);
}

/** A lot's free money sent back to its funding account. */
export interface LotReturn {
  lotId: number;
  batchId: number | null;
  cardAccountId: number;
  amount: number;
  transferId: number;
}

/**
 * Sends what lot `lotId` holds free (remaining less held) back to its funding account as a
 * transfer of `kind` from the card, in one statement: the card's row, then the lot, locked in the
 * purse rule's order (`skipLocked`: one another transaction holds is left for the next round).
 * The reference names the lot and its last movement, so a retry of the same state is the same
 * return. Null when it holds nothing free (or, with `due`, is not yet past its end).
 */
async function returnLot(
  trx: Trx,
  lotId: number,
  p: {
    kind: Extract<TransferKind, "subsidy_reversal" | "subsidy_expiry" | "subsidy_return">;
    details: unknown;
    due?: Date;
    skipLocked?: boolean;
  },
): Promise<LotReturn | null> {
  const due = p.due ? sql`and valid_until <= ${p.due}` : sql``;
  const skip = p.skipLocked ? sql`skip locked` : sql``;
  // The card's row, then the lot, locked by a statement of their own (the purse rule's order), so
  // the statement that returns what the lot holds free begins after every change to it.
  const { rows: [locked] } = await sql<{ id: number }>`
    with lk as (
      select id from ledger_accounts
      where card_account_id = (select card_account_id from purse_lots where id = ${lotId})
      for update ${skip}
    )
    select l.id from purse_lots l
    where l.id = ${lotId} and (select count(*) from lk) > 0
    for update ${skip}`.execute(trx);
  if (!locked) return null;
  const { rows: [r] } = await sql<LotReturn & { card_account_id: number; batch_id: number | null }>`
    with l as (
      select id, card_account_id, batch_id, remaining - held as x, funding_account_id,
        grant_transfer_id,
        ${p.kind} || ':' || id || ':' ||
          (select max(transfer_id) from purse_legs where lot_id = purse_lots.id) as reference
      from purse_lots where id = ${lotId} and remaining > held ${due}
    ), w as (
      update ledger_accounts la set balance = la.balance - l.x, lots = la.lots - l.x
      from l where la.card_account_id = l.card_account_id
      returning la.id as account_id, la.card_account_id, ${signedBalanceSql()} as after, l.x,
        l.id as lot_id, l.batch_id, l.funding_account_id, l.grant_transfer_id, l.reference
    ), lu as (
      update purse_lots set remaining = remaining - w.x from w where purse_lots.id = w.lot_id
      returning 1
    ), t as (
      insert into ledger_transfers (reference, kind, debit_account_id, credit_account_id, amount,
        card_account_id, card_delta, balance_after, related_transfer_id, details)
      select w.reference, ${p.kind}, w.account_id, w.funding_account_id, w.x, w.card_account_id,
        -w.x, w.after, w.grant_transfer_id, ${JSON.stringify(p.details ?? null)}::jsonb
      from w
      returning id, amount
    ), legs as (
      insert into purse_legs (transfer_id, lot_id, amount)
      select t.id, w.lot_id, -w.x from t, w
      returning 1
    )
    select w.lot_id as "lotId", w.batch_id, w.card_account_id, t.amount, t.id as "transferId"
    from t, w`.execute(trx);
  if (!r) return null;
  return {
    lotId: Number(r.lotId),
    batchId: r.batch_id === null ? null : Number(r.batch_id),
    cardAccountId: Number(r.card_account_id),
    amount: Number(r.amount),
    transferId: Number(r.transferId),
  };
}

/**
 * Reverses a grant for its card (财务处, after approval; a new transfer, never an edit): what the
 * lot still holds free goes back to its funding account. Inside the caller's transaction, with
 * its audit. Returns what went back (null: nothing was left).
 */
export async function reverseGrant(
  trx: Trx,
  input: { grantReference: string; reason: string; staffId: number },
): Promise<LotReturn | null> {
  const lot = await trx.selectFrom("purse_lots").select("id")
    .where("reference", "=", checkReference(input.grantReference)).executeTakeFirst();
  if (!lot) throw new InvalidAmountError(input.grantReference, "grant");
  return await returnLot(trx, lot.id, {
    kind: "subsidy_reversal",
    details: { reason: String(input.reason ?? "").slice(0, 200), staffId: input.staffId },
  });
}

/**
 * 销户: sends every lot of the card back to its funding account (its money is never paid out in
 * cash), inside the caller's transaction; the card's lots are locked already. Returns the total.
 */
export async function returnLotsOfCard(
  trx: Trx,
  cardAccountId: number,
  details: { staffId: number; reason: string },
): Promise<number> {
  const lots = await trx.selectFrom("purse_lots").select("id")
    // A literal 0, not a parameter: the cards' lot index is partial (where remaining > 0), and a
    // plan made without the values (platform/database.ts) can use it only so.
    .where("card_account_id", "=", cardAccountId).where("remaining", ">", sql.lit(0)).orderBy("id")
    .execute();
  let total = 0;
  for (const l of lots) {
    total += (await returnLot(trx, l.id, { kind: "subsidy_return", details }))?.amount ?? 0;
  }
  return total;
}

/** Lots handled per round of the expiry worker (each in its own small statement). */
export const EXPIRY_ROUND = 200;

/**
 * One round of the expiry worker: lots past their end that still hold money free (what a shower
 * hold set aside waits for the shower's end) go back to their funding accounts, at most
 * `limit` of them, in one transaction with one audit record per batch (no staff member: the
 * system). Safe on several instances at once (a locked lot is skipped) and idempotent (a lot
 * with nothing free is not due). Returns what it sent back.
 */
export async function expireLots(
  db: Db,
  now: Date = new Date(),
  limit = EXPIRY_ROUND,
): Promise<LotReturn[]> {
  return await db.transaction().execute(async (trx) => {
    const due = await trx.selectFrom("purse_lots").select("id")
      .where("valid_until", "<=", now).whereRef("remaining", ">", "held")
      .orderBy("valid_until").orderBy("id").limit(limit).execute();
    const done: LotReturn[] = [];
    for (const d of due) {
      const r = await returnLot(trx, d.id, {
        kind: "subsidy_expiry",
        details: { expiredAt: now.toISOString() },
        due: now,
        skipLocked: true,
      });
      if (r) done.push(r);
    }
    const byBatch = new Map<number | null, LotReturn[]>();
    for (const r of done) byBatch.set(r.batchId, [...(byBatch.get(r.batchId) ?? []), r]);
    for (const [batchId, rs] of byBatch) {
      await writeAudit(trx, {
        staffId: null,
        action: "wallet.subsidy_expired",
        targetType: "subsidy_batch",
        targetId: batchId,
        after: {
          lots: rs.length,
          amount: rs.reduce((s, r) => s + r.amount, 0),
          transfers: rs.map((r) => r.transferId),
        },
      });
    }
    return done;
  });
}

/** A lot whose end is near, with what it still holds free (for 补助即将到期). */
export interface LotEnding {
  id: number;
  cardAccountId: number;
  /** The purse kind's name (补助, …). */
  purse: string;
  /** What it holds free now (more than 0): remaining less what a running shower set aside. */
  free: number;
  validUntil: Date;
  /** Its end exactly, as text (a JS Date keeps milliseconds, the column microseconds). */
  position: string;
}

/**
 * The lots holding money free that end after position `after` (its end as `position` text, then
 * its id) and by `until`, in that order, at most `limit` (the index of the expiry worker's due lots
 * serves it). A reader of the lots' ends as a clock: the next call starts where this one stopped;
 * a lot wholly spent or set aside by a running shower when the clock passes it is not read, nor
 * one granted after the clock passed its end (`lotsOfGrants` finds those).
 */
export function lotsEndingBy(
  db: Db,
  after: { at: string; id: number },
  until: Date,
  limit: number,
): Promise<LotEnding[]> {
  return lotsEnding(
    db,
    sql`l.remaining > l.held
      and l.valid_until between ${after.at}::timestamptz and ${until}
      and (l.valid_until > ${after.at}::timestamptz or l.id > ${after.id})
    order by l.valid_until, l.id
    limit ${limit}`,
  );
}

/**
 * The lots these grant transfers (each with its card) made that still hold money free
 * (`LotEnding`), by id; found through the cards' lots (their index, whose 0 is a literal here).
 */
export async function lotsOfGrants(
  db: Db,
  grants: Array<{ cardAccountId: number; transferId: number }>,
): Promise<LotEnding[]> {
  if (grants.length === 0) return [];
  return await lotsEnding(
    db,
    sql`l.card_account_id = any(${grants.map((g) => g.cardAccountId)}::bigint[])
      and l.remaining > 0 and l.remaining > l.held
      and l.grant_transfer_id = any(${grants.map((g) => g.transferId)}::bigint[])
    order by l.id`,
  );
}

/** `LotEnding`s of the lots `l` (with their purse kind `pk`) that `rest` (where …) selects. */
async function lotsEnding(db: Db, rest: RawBuilder<unknown>): Promise<LotEnding[]> {
  const { rows } = await sql<
    {
      id: number;
      card_account_id: number;
      purse: string;
      free: number;
      valid_until: Date;
      position: string;
    }
  >`
    select l.id, l.card_account_id, pk.name as purse, l.remaining - l.held as free,
      l.valid_until, l.valid_until::text as position
    from purse_lots l join purse_kinds pk on pk.code = l.purse
    where ${rest}`.execute(db);
  return rows.map((r) => ({
    id: Number(r.id),
    cardAccountId: Number(r.card_account_id),
    purse: r.purse,
    free: Number(r.free),
    validUntil: r.valid_until,
    position: r.position,
  }));
}
