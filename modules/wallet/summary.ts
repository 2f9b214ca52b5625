import { type RawBuilder, sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { type BoundCard, boundCardSql, findBoundCardWith, readBoundCard } from "../card/mod.ts";
import { available, type Balance, balanceOf } from "./_rules.ts";
import { lotLinesJsonSql, type PurseLine, purseLinesOf, readLotLinesJson } from "./purses.ts";
import "./tables.ts";

/**
 * What the 余额 page shows: the bound card, its committed balance, its purses (cash, and 补助
 * with when it expires) and its open shower holds.
 */
export interface WalletSummary {
  card: BoundCard;
  balance: Balance;
  purses: PurseLine[];
  activeHolds: number;
}

interface MoneyColumns extends Record<string, unknown> {
  balance: number;
  held: number;
  overdraft: number;
  lots: number;
  lots_held: number;
  /** The card's lots and the purse kinds, only when it has lots (`lotLinesJsonSql`). */
  purses: unknown;
  active_holds: number;
}

type MoneyRow = { [K in keyof MoneyColumns]: MoneyColumns[K] | null };

/** The card's ledger row (if any) and how many of its holds are open: always exactly one row. */
function moneyOf(cardAccountId: RawBuilder<number>): RawBuilder<MoneyColumns> {
  return sql<MoneyColumns>`select la.balance, la.held, la.overdraft, la.lots, la.lots_held,
      case when la.lots > 0 then ${lotLinesJsonSql(cardAccountId)} end as purses,
      (select count(*) from ledger_holds h
        where h.card_account_id = ${cardAccountId} and h.state = 'active')::int as active_holds
    from (select 1) one
    left join ledger_accounts la on la.card_account_id = ${cardAccountId}`;
}

function toSummary(card: BoundCard, m: MoneyRow): WalletSummary {
  const { kinds, lots } = readLotLinesJson(m.purses);
  const purses = purseLinesOf(
    {
      cash: (m.balance ?? 0) - (m.overdraft ?? 0) - (m.lots ?? 0),
      cashHeld: (m.held ?? 0) - (m.lots_held ?? 0),
    },
    lots,
    kinds,
  );
  // 可用余额 here is what may be spent somewhere: cash and every lot valid now.
  const now = new Date();
  const free = lots.filter((l) => l.validFrom <= now && now < l.validUntil)
    .reduce((s, l) => s + l.remaining - l.held, 0);
  const balance = { ...balanceOf(m), available: available(m, { free, remaining: 0 }) };
  return { card, balance, purses, activeHolds: m.active_holds ?? 0 };
}

/** The 余额 page's data in one round trip (card, balance, holds), or null without a bound card. */
export async function walletSummary(db: Db, accountId: number): Promise<WalletSummary | null> {
  const found = await findBoundCardWith(db, accountId, moneyOf);
  return found && toSummary(found.card, found.extra);
}

/** `walletSummary` as SQL of the login account (for a statement that also checks the session). */
export function walletSummarySql(accountId: RawBuilder<number>) {
  return boundCardSql(accountId, moneyOf);
}

/** The summary of a `walletSummarySql` row; null when the account has no bound card. */
export function readWalletSummary(
  row: Parameters<typeof readBoundCard<MoneyRow>>[0],
): WalletSummary | null {
  const found = readBoundCard<MoneyRow>(row);
  return found && toSummary(found.card, found.extra);
}
