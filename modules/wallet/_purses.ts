/**
 * The purse rule, written once: which of a card's money a payment at a place may take, and in
 * what order. A card's money is its wallet row's `balance` (the card's ledger account, all purses),
 * split into the cash purse and lots (one grant each of 补助 or another purse kind, see migration
 * 0385). A debit at a place (a merchant's category, "utilities", or nowhere: cash only) draws:
 *
 * 1. the free money (remaining less held) of the card's lots that may be spent there now (the
 *    place is among the lot's categories and its purse kind's, and now is in [valid from, valid
 *    until)), in spend order: the purse kind's `spend_order`, then the lot that expires first,
 *    then the older lot;
 * 2. then the cash purse.
 *
 * One payment may take from both (mixed). _rules.ts composes this into the debit rule (what is
 * available at a place) and every statement that moves a card's money; each records a leg per lot
 * it moved (`purse_legs`), so a lot's remaining is the sum of its legs.
 *
 * Locks and what a statement may trust: a statement that moves a card's money locks the card's
 * wallet row first (FOR UPDATE), then the lots it reads (FOR UPDATE, in id order); every path
 * keeps that order, so two never wait for each other in a circle. How much each lot gives depends
 * on the lots' values as the statement read them, and PostgreSQL re-checks an UPDATE of a row
 * that changed since the statement began against the statement's other CTEs as they read at its
 * start, not as its locks returned them (purses_race_test.ts caught a payment taking a lot's held
 * money that way). So a draw is only made where the card's row is unchanged since the statement
 * began (`unchangedSql`): every change to a card's lots changes its row in the same transaction,
 * so then its lots are unchanged too. A one-statement path that finds the row changed does
 * nothing and its caller takes the ordinary path, which locks the card's row in a statement of
 * its own first, so the statement that follows begins after every change. Movements whose amounts
 * do not depend on what they read (a hold's end, a refund's parts, a grant) write relative to the
 * row (`held = held - …`), which that re-check keeps right. The wallet row's `lots` and
 * `lots_held` keep the lots' sums, so a lot granted after the statement began, which it cannot
 * see, is never taken for cash.
 */
import { type RawBuilder, sql } from "kysely";
import "./tables.ts";

/** The place of a utility payment (电费, 冷水) among merchant categories. */
export const UTILITIES = "utilities";

/** Where money is spent: a merchant category, `UTILITIES`, or null (cash only: gateways, 调账). */
export type SpendAt = string | null;

/** SQL: lot `l` (joined with its purse kind `pk`) may pay at `at` now. */
export function spendableSql(at: RawBuilder<SpendAt>): RawBuilder<boolean> {
  return sql<boolean>`l.remaining > 0 and ${at} is not null and ${at} = any(l.categories)
    and (pk.categories is null or ${at} = any(pk.categories))
    and l.valid_from <= now() and now() < l.valid_until`;
}

/**
 * The lot CTEs of a statement over the asks relation `ask` (one row per payment: `ord`,
 * `card_account_id`, `amount`, `at`): `lk` locks the asks' wallet rows, `lt` the lots each payment
 * may draw, locked after them; `dr` what each lot gives (`take`, in draw order `n`) when the
 * payment takes `ask.amount`; `ak`, each ask with its lots' `lot_free`, `lot_remaining` and
 * `lot_take` in sum (0 without such lots) and `card_xmin`, its wallet row's version as the
 * statement began (for `unchangedSql`).
 */
export function lotDrawsSql(): RawBuilder<unknown> {
  return sql`lk as (
      select id, card_account_id from ledger_accounts
      where card_account_id in (select card_account_id from ask)
      order by id
      for update
    ), lt as (
      select a.ord, l.id as lot_id, l.remaining, l.held, l.remaining - l.held as free,
        pk.spend_order, l.valid_until
      from ask a
      join lk on lk.card_account_id = a.card_account_id
      join purse_lots l on l.card_account_id = a.card_account_id
      join purse_kinds pk on pk.code = l.purse
      where ${spendableSql(sql`a.at`)}
      order by l.id
      for update of l
    ), dr as (
      select lt.ord, lt.lot_id, lt.remaining, lt.held, lt.free,
        row_number() over o as n,
        least(lt.free, greatest(0, a.amount - coalesce(sum(lt.free) over (o
          rows between unbounded preceding and 1 preceding), 0))) as take
      from lt join ask a on a.ord = lt.ord
      window o as (partition by lt.ord order by lt.spend_order, lt.valid_until, lt.lot_id)
    ), ak as materialized (
      select a.*, coalesce(sp.free, 0) as lot_free, coalesce(sp.remaining, 0) as lot_remaining,
        coalesce(sp.take, 0) as lot_take,
        (select s.xmin::text from ledger_accounts s where s.card_account_id = a.card_account_id)
          as card_xmin
      from ask a left join (
        select ord, sum(free) as free, sum(remaining) as remaining, sum(take) as take
        from dr group by ord
      ) sp on sp.ord = a.ord
    )`;
}

/**
 * SQL for an UPDATE of `la` from `ak a`: the draw may be made, because the payment draws no lot
 * or its card's row (and so its lots) did not change since the statement began.
 */
export function unchangedSql(): RawBuilder<boolean> {
  return sql<boolean>`(a.lot_remaining = 0 or la.xmin::text = a.card_xmin)`;
}

/** `lotDrawsSql`'s columns for the row of payment `a` (of `ak`): 0 when it has no lots there. */
export const drawn = {
  free: sql<number>`a.lot_free`,
  remaining: sql<number>`a.lot_remaining`,
  take: sql<number>`a.lot_take`,
};

/**
 * The CTE `lu` after a debit `w` (returning `ord`): each lot gives what `dr` says it takes, only
 * for payments that were debited. `column` is what the take comes out of: `remaining` (a
 * payment) or `held` set aside (`held`: a hold reserves it).
 */
export function lotTakesSql(column: "remaining" | "held"): RawBuilder<unknown> {
  const set = column === "remaining"
    ? sql`remaining = l.remaining - dr.take`
    : sql`held = l.held + dr.take`;
  return sql`lu as (
      update purse_lots l set ${set}
      from dr join w on w.ord = dr.ord
      where l.id = dr.lot_id and dr.take > 0
      returning l.id
    )`;
}

/**
 * The CTE `legs`: a leg per lot a debit took from, for the transfers `t` (returning `reference`)
 * recorded from `w` (returning `ord` and `reference`).
 */
export function debitLegsSql(): RawBuilder<unknown> {
  return sql`legs as (
      insert into purse_legs (transfer_id, lot_id, amount)
      select t.id, dr.lot_id, -dr.take
      from dr join w on w.ord = dr.ord join t on t.reference = w.reference
      where dr.take > 0
      returning 1
    )`;
}

/** SQL: what `lotDrawsSql` drew for payment `ord`, as a hold keeps it (`[{lot, amount}]`, or NULL). */
export function heldLotsSql(ord: RawBuilder<number>): RawBuilder<string | null> {
  return sql<string | null>`(select jsonb_agg(jsonb_build_object('lot', dr.lot_id,
      'amount', dr.take) order by dr.n) from dr where dr.ord = ${ord} and dr.take > 0)`;
}

/** One lot's free money, as a card's spendable lots are read. */
export interface LotMoney {
  lotId: number;
  purse: string;
  remaining: number;
  free: number;
  validUntil: Date;
}

/**
 * The lots of a card that may pay at `at` now, in draw order (not locked: for explanations and
 * pages; a statement that moves money locks them itself).
 */
export function spendableLotsQuery(
  cardAccountId: number,
  at: SpendAt,
): RawBuilder<
  { lot_id: number; purse: string; remaining: number; free: number; valid_until: Date }
> {
  return sql`select l.id as lot_id, l.purse, l.remaining, l.remaining - l.held as free,
      l.valid_until
    from purse_lots l join purse_kinds pk on pk.code = l.purse
    where l.card_account_id = ${cardAccountId} and ${spendableSql(sql`${at}::text`)}
    order by pk.spend_order, l.valid_until, l.id`;
}

/** What lots gave to one transfer, per lot (`[lotId, fen]`, fen > 0), in draw order. */
export type LotParts = Array<{ lotId: number; amount: number }>;

/** Greedy draw of `amount` from free money in order: what each gives (the rule of `dr`). */
export function drawParts(
  lots: Array<{ lotId: number; free: number }>,
  amount: number,
): LotParts {
  const out: LotParts = [];
  let left = amount;
  for (const l of lots) {
    if (left <= 0) break;
    const take = Math.min(l.free, left);
    if (take > 0) out.push({ lotId: l.lotId, amount: take });
    left -= take;
  }
  return out;
}

/**
 * How a give-back of `amount` (a refund, a reversal) of a payment splits between its purses: the
 * cash part first, then its lots in the reverse of the order they were drawn, each at most what
 * it gave less what came back to it before. What stays paid is then what the purse rule would
 * have drawn for the smaller payment (lots first). `lots` is the payment's draw, in draw order;
 * `returned` what earlier give-backs returned per lot and to cash.
 */
export function giveBackParts(
  paid: { cash: number; lots: LotParts },
  returned: { cash: number; lots: Map<number, number> },
  amount: number,
): { cash: number; lots: LotParts } {
  let left = amount;
  const cash = Math.min(left, Math.max(0, paid.cash - returned.cash));
  left -= cash;
  const lots: LotParts = [];
  for (const p of [...paid.lots].reverse()) {
    if (left <= 0) break;
    const back = Math.min(left, Math.max(0, p.amount - (returned.lots.get(p.lotId) ?? 0)));
    if (back > 0) lots.push({ lotId: p.lotId, amount: back });
    left -= back;
  }
  if (left > 0) throw new Error(`Cannot give back ${amount} fen: ${left} fen more than was paid`);
  return { cash, lots };
}

/**
 * Locks the card's lots that hold money (in id order), as every path does after it locked the
 * card's wallet row. Inside a transaction.
 */
export function lockLotsSql(cardAccountId: number): RawBuilder<{ id: number }> {
  return sql`select id from purse_lots where card_account_id = ${cardAccountId} and remaining > 0
    order by id for update`;
}
