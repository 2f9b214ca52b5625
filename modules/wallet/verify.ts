import { sql } from "kysely";
import type { Db } from "../platform/database.ts";

/** What the verifier found. */
export interface LedgerReport {
  ok: boolean;
  problems: string[];
  totals: {
    accounts: number;
    transfers: number;
    /** Sum of all transfer amounts (each is one debit and one credit of the same amount). */
    debits: number;
    credits: number;
    /** Signed sum of all card balances. */
    cardBalances: number;
    held: number;
    overdraft: number;
    /** Money that came in through gateways (what the gateway clearing accounts gave out). */
    externalIn: number;
    /** Money paid out in cash (销户退款: what the cash accounts took in). */
    externalOut: number;
  };
}

/**
 * Proves the ledger: every card wallet's stored balance equals the sum of its transfers, its held
 * amount equals its active holds, its history's balance-after chain is unbroken, every transfer
 * names existing accounts, and total debits equal total credits (all accounts sum to zero).
 */
export async function verifyLedger(db: Db): Promise<LedgerReport> {
  const problems: string[] = [];
  const sums = await sql<{ debits: number; credits: number; transfers: number }>`
    select coalesce(sum(amount), 0) as debits, coalesce(sum(amount), 0) as credits, count(*)::int as transfers
    from ledger_transfers`.execute(db);
  const { transfers } = sums.rows[0];

  const nets = await sql<
    {
      id: number;
      kind: string;
      card_account_id: number | null;
      stored: number;
      held: number;
      overdraft: number;
      net: number;
    }
  >`
    with flows as (
      select credit_account_id as account_id, amount as delta from ledger_transfers
      union all
      select debit_account_id, -amount from ledger_transfers
    ), per_account as (
      select account_id, sum(delta) as net from flows group by account_id
    )
    select a.id, a.kind, a.card_account_id, a.balance - a.overdraft as stored, a.held, a.overdraft,
      coalesce(p.net, 0) as net
    from ledger_accounts a left join per_account p on p.account_id = a.id`.execute(db);
  let debitTotal = 0;
  let creditTotal = 0;
  let cardBalances = 0;
  let held = 0;
  let overdraft = 0;
  let externalIn = 0;
  let externalOut = 0;
  let sumOfNets = 0;
  for (const a of nets.rows) {
    const net = Number(a.net);
    sumOfNets += net;
    if (a.kind === "card") {
      cardBalances += a.stored;
      held += a.held;
      overdraft += a.overdraft;
      if (a.stored !== net) {
        problems.push(
          `card account ${a.card_account_id}: stored balance ${a.stored} fen, transfers sum to ${net} fen`,
        );
      }
    } else if (a.kind === "gateway") {
      externalIn -= net;
    } else if (a.kind === "cash") {
      externalOut += net;
    }
  }
  const legs = await sql<{ debits: number; credits: number }>`
    select (select coalesce(sum(amount), 0) from ledger_transfers t join ledger_accounts a on a.id = t.debit_account_id) as debits,
      (select coalesce(sum(amount), 0) from ledger_transfers t join ledger_accounts a on a.id = t.credit_account_id) as credits`
    .execute(db);
  debitTotal = Number(legs.rows[0].debits);
  creditTotal = Number(legs.rows[0].credits);
  if (debitTotal !== creditTotal) {
    problems.push(`total debits ${debitTotal} fen differ from total credits ${creditTotal} fen`);
  }
  if (sumOfNets !== 0) problems.push(`all accounts together sum to ${sumOfNets} fen, not 0`);

  const orphans = await sql<{ id: number }>`
    select t.id from ledger_transfers t
    where not exists (select 1 from ledger_accounts a where a.id = t.debit_account_id)
       or not exists (select 1 from ledger_accounts a where a.id = t.credit_account_id)
    limit 20`.execute(db);
  for (const o of orphans.rows) {
    problems.push(`transfer ${o.id} names an account that does not exist`);
  }

  const badSides = await sql<{ id: number }>`
    select t.id from ledger_transfers t left join ledger_accounts a on a.card_account_id = t.card_account_id
    where t.card_account_id is not null and not (
      (t.card_delta = -t.amount and t.debit_account_id = a.id) or (t.card_delta = t.amount and t.credit_account_id = a.id))
    limit 20`.execute(db);
  for (const b of badSides.rows) {
    problems.push(`transfer ${b.id}: its card side does not match its accounts`);
  }

  const chain = await sql<{ id: number; card_account_id: number }>`
    select id, card_account_id from (
      select id, card_account_id, balance_after, card_delta,
        lag(balance_after) over (partition by card_account_id order by id) as before
      from ledger_transfers where card_account_id is not null
    ) x where balance_after - card_delta <> coalesce(before, 0)
    limit 20`.execute(db);
  for (const c of chain.rows) {
    problems.push(
      `card account ${c.card_account_id}: balance after transfer ${c.id} does not follow from the one before`,
    );
  }

  const holds = await sql<{ card_account_id: number; held: number; active: number }>`
    select a.card_account_id, a.held, coalesce(h.total, 0) as active
    from ledger_accounts a
    left join (select card_account_id, sum(amount) as total from ledger_holds where state = 'active' group by card_account_id) h
      on h.card_account_id = a.card_account_id
    where a.kind = 'card' and a.held <> coalesce(h.total, 0)
    limit 20`.execute(db);
  for (const h of holds.rows) {
    problems.push(
      `card account ${h.card_account_id}: held ${h.held} fen, active holds sum to ${
        Number(h.active)
      } fen`,
    );
  }

  return {
    ok: problems.length === 0,
    problems,
    totals: {
      accounts: nets.rows.length,
      transfers: Number(transfers),
      debits: debitTotal,
      credits: creditTotal,
      cardBalances,
      held,
      overdraft,
      externalIn,
      externalOut,
    },
  };
}
