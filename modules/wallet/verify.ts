import { type RawBuilder, sql } from "kysely";
import type { Db } from "../platform/database.ts";

/** What the verifier found. */
export interface LedgerReport {
  ok: boolean;
  problems: string[];
  totals: {
    accounts: number;
    transfers: number;
    /** Sum of all transfer amounts: what moved between accounts. */
    moved: number;
    /** Signed sum of all card balances. */
    cardBalances: number;
    held: number;
    overdraft: number;
    /** Money that came in through gateways (what the gateway clearing accounts gave out). */
    externalIn: number;
    /** Money paid out in cash (销户退款: what the cash accounts took in). */
    externalOut: number;
    /** Of the card balances, the money of lots (补助 and other purses), held parts included. */
    lots: number;
    /** What the subsidy funding accounts granted, and what came back (expired, reversed, returned). */
    subsidyIssued: number;
    subsidyReturned: number;
  };
}

/** At most this many problems are listed per check: one is enough to stop, twenty to see a pattern. */
const LIMIT = 20;

/**
 * One rule of the books: a query for the rows that break it, and how to say each. Every rule
 * here can fail: each is broken by one corrupted row in verify_test.ts.
 *
 * A transfer is one amount from its debit account to its credit account, so its two legs are
 * equal by construction (the schema has no second amount to disagree). What can disagree are the
 * copies of that amount kept elsewhere: a card wallet's stored balance, held and overdraft, each
 * transfer's card side (`card_delta`, `balance_after`), a hold's charge, a refund's original.
 */
interface Check {
  name: string;
  query: RawBuilder<unknown>;
  say(row: Record<string, unknown>): string;
}

const n = (v: unknown) => Number(v);

const CHECKS: Check[] = [
  {
    name: "accounts exist",
    query: sql`
      select t.id from ledger_transfers t
      where not exists (select 1 from ledger_accounts a where a.id = t.debit_account_id)
         or not exists (select 1 from ledger_accounts a where a.id = t.credit_account_id)
      order by t.id limit ${LIMIT}`,
    say: (r) => `transfer ${r.id} names an account that does not exist`,
  },
  {
    // For every card account, balance = sum of its entries, at all times (DOMAIN.md).
    name: "balance is the sum of entries",
    query: sql`
      with flows as (
        select credit_account_id as account_id, amount as delta from ledger_transfers
        union all
        select debit_account_id, -amount from ledger_transfers
      ), per_account as (select account_id, sum(delta) as net from flows group by account_id)
      select a.card_account_id, a.balance - a.overdraft as stored, coalesce(p.net, 0) as net
      from ledger_accounts a left join per_account p on p.account_id = a.id
      where a.kind = 'card' and a.balance - a.overdraft <> coalesce(p.net, 0)
      order by a.card_account_id limit ${LIMIT}`,
    say: (r) =>
      `card account ${r.card_account_id}: stored balance ${n(r.stored)} fen, transfers sum to ${
        n(r.net)
      } fen`,
  },
  {
    // The card side of a transfer (history, balance-after) must be the wallet leg it moved.
    name: "card side matches its leg",
    query: sql`
      select t.id from ledger_transfers t
      left join ledger_accounts w on w.kind = 'card' and w.card_account_id = t.card_account_id
      where t.card_account_id is not null and not coalesce(
        (t.debit_account_id = w.id and t.credit_account_id <> w.id and t.card_delta = -t.amount) or
        (t.credit_account_id = w.id and t.debit_account_id <> w.id and t.card_delta = t.amount),
        false)
      order by t.id limit ${LIMIT}`,
    say: (r) => `transfer ${r.id}: its card side does not match its accounts and amount`,
  },
  {
    // Money into or out of a wallet that names no card (or another) would be missing from the
    // card's history and balance-after chain.
    name: "wallet legs name their card",
    query: sql`
      select t.id, w.card_account_id from ledger_transfers t
      join ledger_accounts w on w.id in (t.debit_account_id, t.credit_account_id) and w.kind = 'card'
      where t.card_account_id is distinct from w.card_account_id
      order by t.id limit ${LIMIT}`,
    say: (r) =>
      `transfer ${r.id} moves money of card account ${r.card_account_id} without naming it`,
  },
  {
    // Each card's balance-after, in transfer id order, follows from the one before (from 0).
    name: "balance-after chain",
    query: sql`
      select id, card_account_id from (
        select id, card_account_id, balance_after, card_delta,
          lag(balance_after) over (partition by card_account_id order by id) as before
        from ledger_transfers where card_account_id is not null
      ) x where (balance_after - card_delta) is distinct from coalesce(before, 0)
      order by id limit ${LIMIT}`,
    say: (r) =>
      `card account ${r.card_account_id}: balance after transfer ${r.id} does not follow from the one before`,
  },
  {
    name: "balance-after chain ends at the balance",
    query: sql`
      select a.card_account_id, a.balance - a.overdraft as stored, last.balance_after
      from ledger_accounts a
      join lateral (
        select balance_after from ledger_transfers t
        where t.card_account_id = a.card_account_id order by t.id desc limit 1
      ) last on true
      where a.kind = 'card' and last.balance_after is distinct from a.balance - a.overdraft
      order by a.card_account_id limit ${LIMIT}`,
    say: (r) =>
      `card account ${r.card_account_id}: last balance-after ${
        r.balance_after === null ? "missing" : `${n(r.balance_after)} fen`
      }, stored balance ${n(r.stored)} fen`,
  },
  {
    name: "held is the active holds",
    query: sql`
      select a.card_account_id, a.held, coalesce(h.total, 0) as active
      from ledger_accounts a
      left join (select card_account_id, sum(amount) as total from ledger_holds
        where state = 'active' group by card_account_id) h on h.card_account_id = a.card_account_id
      where a.kind = 'card' and a.held <> coalesce(h.total, 0)
      order by a.card_account_id limit ${LIMIT}`,
    say: (r) =>
      `card account ${r.card_account_id}: held ${n(r.held)} fen, active holds sum to ${
        n(r.active)
      } fen`,
  },
  {
    // A shower charges at most what it held, once, through one transfer of exactly that charge.
    name: "a settled hold's charge is its transfer",
    query: sql`
      select h.id, h.charged, t.amount from ledger_holds h
      left join ledger_transfers t on t.id = h.settle_transfer_id
      where coalesce(h.charged, 0) > h.amount
        or (coalesce(h.charged, 0) > 0) <> (h.settle_transfer_id is not null)
        or (h.settle_transfer_id is not null and not coalesce(
          t.kind = 'shower' and t.amount = h.charged and t.card_account_id = h.card_account_id,
          false))
      order by h.id limit ${LIMIT}`,
    say: (r) =>
      `hold ${r.id}: charged ${r.charged === null ? "nothing" : `${n(r.charged)} fen`}, ${
        r.amount === null ? "no matching transfer" : `its transfer moved ${n(r.amount)} fen`
      }`,
  },
  {
    // A refund, reversal or utility refund goes back the way its original came, to the same
    // card, and all of them together never exceed the original.
    name: "give-backs follow their original",
    query: sql`
      select r.id, r.related_transfer_id as original from ledger_transfers r
      left join ledger_transfers o on o.id = r.related_transfer_id
      where r.related_transfer_id is not null and not coalesce(
        r.debit_account_id = o.credit_account_id and r.credit_account_id = o.debit_account_id and
        r.card_account_id is not distinct from o.card_account_id, false)
      order by r.id limit ${LIMIT}`,
    say: (r) => `transfer ${r.id} does not reverse its original transfer ${r.original}`,
  },
  {
    name: "give-backs within their original",
    query: sql`
      select o.id, o.amount, sum(r.amount) as returned from ledger_transfers o
      join ledger_transfers r on r.related_transfer_id = o.id
      group by o.id, o.amount having sum(r.amount) > o.amount
      order by o.id limit ${LIMIT}`,
    say: (r) => `transfer ${r.id}: ${n(r.returned)} fen given back of ${n(r.amount)} fen`,
  },
  {
    // Each purse's balance is its entries: a lot's remaining is the sum of its legs.
    name: "a lot is its legs",
    query: sql`
      select l.id, l.remaining, coalesce(g.net, 0) as net from purse_lots l
      left join (select lot_id, sum(amount) as net from purse_legs group by lot_id) g
        on g.lot_id = l.id
      where l.remaining <> coalesce(g.net, 0)
      order by l.id limit ${LIMIT}`,
    say: (r) => `lot ${r.id}: remaining ${n(r.remaining)} fen, its legs sum to ${n(r.net)} fen`,
  },
  {
    // The cash purse is the card's entries less its lots' legs (balance - overdraft - lots).
    name: "the cash purse is its entries",
    query: sql`
      with card_net as (
        select card_account_id, sum(card_delta) as net from ledger_transfers
        where card_account_id is not null group by card_account_id
      ), lot_net as (
        select l.card_account_id, sum(g.amount) as net from purse_legs g
        join purse_lots l on l.id = g.lot_id group by l.card_account_id
      )
      select a.card_account_id, a.balance - a.overdraft - a.lots as cash,
        coalesce(c.net, 0) - coalesce(ln.net, 0) as entries
      from ledger_accounts a
      left join card_net c on c.card_account_id = a.card_account_id
      left join lot_net ln on ln.card_account_id = a.card_account_id
      where a.kind = 'card'
        and a.balance - a.overdraft - a.lots <> coalesce(c.net, 0) - coalesce(ln.net, 0)
      order by a.card_account_id limit ${LIMIT}`,
    say: (r) =>
      `card account ${r.card_account_id}: cash purse ${n(r.cash)} fen, its entries sum to ${
        n(r.entries)
      } fen`,
  },
  {
    name: "the wallet row's lots are its lots",
    query: sql`
      select a.card_account_id, a.lots, a.lots_held, coalesce(l.remaining, 0) as remaining,
        coalesce(l.held, 0) as held
      from ledger_accounts a
      left join (select card_account_id, sum(remaining) as remaining, sum(held) as held
        from purse_lots group by card_account_id) l on l.card_account_id = a.card_account_id
      where a.kind = 'card' and (a.lots <> coalesce(l.remaining, 0)
        or a.lots_held <> coalesce(l.held, 0))
      order by a.card_account_id limit ${LIMIT}`,
    say: (r) =>
      `card account ${r.card_account_id}: lots ${n(r.lots)} (held ${
        n(r.lots_held)
      }) fen on its row, its lots hold ${n(r.remaining)} (held ${n(r.held)}) fen`,
  },
  {
    name: "a lot's held is its active holds",
    query: sql`
      select l.id, l.held, coalesce(h.total, 0) as active from purse_lots l
      left join (
        select x.lot, sum(x.amount) as total from ledger_holds h
        cross join lateral jsonb_to_recordset(h.lots) as x(lot bigint, amount bigint)
        where h.state = 'active' and h.lots is not null group by x.lot
      ) h on h.lot = l.id
      where l.held <> coalesce(h.total, 0)
      order by l.id limit ${LIMIT}`,
    say: (r) => `lot ${r.id}: held ${n(r.held)} fen, active holds set aside ${n(r.active)} fen`,
  },
  {
    // A leg moves money of its transfer's card, on its card side, never more than the transfer.
    name: "legs follow their transfer",
    query: sql`
      select g.transfer_id as id from purse_legs g
      left join purse_lots l on l.id = g.lot_id
      left join ledger_transfers t on t.id = g.transfer_id
      group by g.transfer_id, t.card_account_id, t.card_delta, t.kind, t.amount
      having bool_or(l.id is null) or bool_or(t.id is null)
        or bool_or(l.card_account_id is distinct from t.card_account_id)
        or sum(g.amount) * sign(coalesce(t.card_delta, 0)) < 0
        or abs(sum(g.amount)) > coalesce(t.amount, 0)
        or (t.kind in ('subsidy', 'subsidy_reversal', 'subsidy_expiry', 'subsidy_return')
          and abs(sum(g.amount)) <> t.amount)
      order by g.transfer_id limit ${LIMIT}`,
    say: (r) => `transfer ${r.id}: its legs do not follow its card side`,
  },
  {
    // issued - spent - expired - returned = what its lots still hold, per funding account; and
    // nothing but grants and their give-backs moves its money.
    name: "a subsidy funding account is its grants",
    query: sql`
      with f as (
        select a.id, a.code,
          coalesce((select sum(amount) from ledger_transfers where debit_account_id = a.id
            and kind = 'subsidy'), 0) as issued,
          coalesce((select sum(amount) from ledger_transfers where credit_account_id = a.id
            and kind in ('subsidy_expiry', 'subsidy_reversal', 'subsidy_return')), 0) as back,
          coalesce((select sum(amount) from ledger_transfers where credit_account_id = a.id), 0)
            - coalesce((select sum(amount) from ledger_transfers where debit_account_id = a.id), 0)
            as net,
          coalesce((select -sum(g.amount) from purse_legs g
            join purse_lots l on l.id = g.lot_id
            join ledger_transfers t on t.id = g.transfer_id
            where l.funding_account_id = a.id and t.kind not in
              ('subsidy', 'subsidy_expiry', 'subsidy_reversal', 'subsidy_return')), 0) as spent,
          coalesce((select sum(remaining) from purse_lots where funding_account_id = a.id), 0)
            as remaining
        from ledger_accounts a where a.kind = 'subsidy'
      )
      select * from f
      where issued - spent - back <> remaining or -net <> issued - back
      order by id limit ${LIMIT}`,
    say: (r) =>
      `${r.code}: issued ${n(r.issued)} - spent ${n(r.spent)} - expired and returned ${
        n(r.back)
      } fen, its lots hold ${n(r.remaining)} fen; the account moved ${-n(r.net)} fen out`,
  },
  {
    name: "a used payment code is its transfer",
    query: sql`
      select pc.code, pc.transfer_id from payment_codes pc
      left join ledger_transfers t on t.id = pc.transfer_id
      where pc.transfer_id is not null and not coalesce(
        t.payment_code = pc.code and t.card_account_id = pc.card_account_id, false)
      limit ${LIMIT}`,
    say: (r) => `payment code transfer ${r.transfer_id} is not the code's payment`,
  },
];

/**
 * A rule of the books whose records another module owns (商户结算's statements against the payouts
 * booked for them): what breaks it, one line each. The composing code hands these in.
 */
export interface LedgerCheck {
  name: string;
  problems(db: Db): Promise<string[]>;
}

/**
 * Proves the ledger against the rules above and the `more` checks handed in (each listed with the
 * rows that break it) and sums what the books hold: card balances, held, overdrafts, money in
 * through gateways, out in cash.
 */
export async function verifyLedger(db: Db, more: LedgerCheck[] = []): Promise<LedgerReport> {
  const problems: string[] = [];
  for (const check of CHECKS) {
    const { rows } = await check.query.execute(db);
    for (const row of rows as Record<string, unknown>[]) {
      problems.push(`${check.name}: ${check.say(row)}`);
    }
  }
  for (const check of more) {
    for (const p of await check.problems(db)) problems.push(`${check.name}: ${p}`);
  }
  const sums = await sql<
    {
      accounts: number;
      transfers: number;
      moved: number;
      card_balances: number;
      held: number;
      overdraft: number;
      external_in: number;
      external_out: number;
      lots: number;
      subsidy_issued: number;
      subsidy_returned: number;
    }
  >`
    with nets as (
      select a.kind, coalesce((select sum(amount) from ledger_transfers where credit_account_id = a.id), 0)
        - coalesce((select sum(amount) from ledger_transfers where debit_account_id = a.id), 0) as net
      from ledger_accounts a where a.kind in ('gateway', 'cash')
    )
    select
      (select count(*) from ledger_accounts) as accounts,
      (select count(*) from ledger_transfers) as transfers,
      (select coalesce(sum(amount), 0) from ledger_transfers) as moved,
      (select coalesce(sum(balance - overdraft), 0) from ledger_accounts where kind = 'card') as card_balances,
      (select coalesce(sum(held), 0) from ledger_accounts where kind = 'card') as held,
      (select coalesce(sum(overdraft), 0) from ledger_accounts where kind = 'card') as overdraft,
      (select coalesce(-sum(net), 0) from nets where kind = 'gateway') as external_in,
      (select coalesce(sum(net), 0) from nets where kind = 'cash') as external_out,
      (select coalesce(sum(lots), 0) from ledger_accounts where kind = 'card') as lots,
      (select coalesce(sum(amount), 0) from ledger_transfers where kind = 'subsidy')
        as subsidy_issued,
      (select coalesce(sum(amount), 0) from ledger_transfers
        where kind in ('subsidy_expiry', 'subsidy_reversal', 'subsidy_return')) as subsidy_returned`
    .execute(db);
  const s = sums.rows[0];
  return {
    ok: problems.length === 0,
    problems,
    totals: {
      accounts: n(s.accounts),
      transfers: n(s.transfers),
      moved: n(s.moved),
      cardBalances: n(s.card_balances),
      held: n(s.held),
      overdraft: n(s.overdraft),
      externalIn: n(s.external_in),
      externalOut: n(s.external_out),
      lots: n(s.lots),
      subsidyIssued: n(s.subsidy_issued),
      subsidyReturned: n(s.subsidy_returned),
    },
  };
}
