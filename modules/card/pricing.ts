/**
 * The price in force: what a card pays for a reader's list price at a merchant now. The card's
 * type (卡类别) gives a rule per merchant category; a canteen's meal period (餐次) that holds the
 * China time of day may give the type its own rule instead, and may cap the card's payments in
 * the period. A rule takes `percent_off` % of the list price (rounded to the nearest fen) and then
 * `fen_off`; the price is never below one fen nor above the list price. A payment outside every
 * period, or of a card without a rule, pays the merchant's list price.
 *
 * Written once as SQL (`priceInForceSql`), which the wallet composes into the statement that
 * takes the money (one round trip, a listed hot-path door, modules/walls_sql_test.ts), and read
 * by `priceInForce` where a page or a refusal needs the same answer.
 */
import { type RawBuilder, sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { chinaDateTime } from "../platform/china_time.ts";

/** The rule a payment was priced by, recorded on it (`details.price`) so history keeps it. */
export interface AppliedPrice {
  /** The reader's list price, fen. */
  list: number;
  /** What the rule took off, fen (list − charged). */
  off: number;
  /** The card's type (卡类别) by name. */
  type: string;
  /** The meal period (餐次) it fell in, or null. */
  period: string | null;
  percentOff: number;
  fenOff: number;
}

/** The price in force of one payment, and its meal period's caps. */
export interface PriceInForce {
  amount: number;
  /** Recorded on the payment when a rule or a period applies; else null. */
  price: AppliedPrice | null;
  periodId: number | null;
  maxCount: number | null;
  maxAmount: number | null;
}

/** "HH:MM:SS" of `at` in China: what a meal period is matched against. */
export function chinaTimeOfDay(at: Date | number): string {
  return chinaDateTime(at).slice(11);
}

/**
 * A subquery (for `left join lateral (…) pr on true`) of the price in force of `list` fen paid
 * by card `card` to merchant `merchant` of category `category` at China time of day `time`:
 * columns `amount`, `price` (jsonb, `AppliedPrice`, or NULL), `period_id`, `max_count`,
 * `max_amount`. No row for an unknown card (the caller pays nothing).
 */
export function priceInForceSql(p: {
  card: RawBuilder<unknown>;
  merchant: RawBuilder<unknown>;
  category: RawBuilder<unknown>;
  list: RawBuilder<unknown>;
  time: string;
}): RawBuilder<unknown> {
  const list = sql`(${p.list})::bigint`;
  return sql`select x.amount, x.period_id, x.max_count, x.max_amount,
      case when x.period_id is not null or x.pct > 0 or x.fen > 0 then jsonb_build_object(
        'list', ${list}, 'off', ${list} - x.amount, 'type', x.type_name,
        'period', x.period_name, 'percentOff', x.pct, 'fenOff', x.fen) end as price
    from (
      select least(${list}, greatest(1, ${list} - (${list} * d.pct + 50) / 100 - d.fen))
          as amount,
        mp.id as period_id, mp.name as period_name, mp.max_count, mp.max_amount::bigint,
        ct.name as type_name, d.pct, d.fen
      from card_accounts ca
      join card_types ct on ct.id = ca.card_type_id
      left join lateral (
        select m.id, m.name, m.max_count, m.max_amount from meal_periods m
        where m.merchant_id = (${p.merchant})::bigint and m.starts <= ${p.time}::time
          and ${p.time}::time < m.ends
        order by m.starts limit 1
      ) mp on true
      left join meal_period_prices pp
        on pp.meal_period_id = mp.id and pp.card_type_id = ca.card_type_id
      left join card_type_prices cp
        on cp.card_type_id = ca.card_type_id and cp.category = (${p.category})::text
      cross join lateral (select
        case when pp.meal_period_id is not null then pp.percent_off
          else coalesce(cp.percent_off, 0) end as pct,
        case when pp.meal_period_id is not null then pp.fen_off
          else coalesce(cp.fen_off, 0) end::bigint as fen) d
      where ca.id = (${p.card})::bigint
    ) x`;
}

/** The price in force of `list` fen paid by a card to a merchant at `at` (`priceInForceSql`). */
export async function priceInForce(
  db: Db,
  p: { cardAccountId: number; merchantId: number; category: string | null; list: number },
  at: Date = new Date(),
): Promise<PriceInForce> {
  const { rows: [r] } = await sql<{
    amount: string | number;
    price: AppliedPrice | null;
    period_id: string | number | null;
    max_count: number | null;
    max_amount: string | number | null;
  }>`${
    priceInForceSql({
      card: sql`${p.cardAccountId}`,
      merchant: sql`${p.merchantId}`,
      category: sql`${p.category}`,
      list: sql`${p.list}`,
      time: chinaTimeOfDay(at),
    })
  }`.execute(db);
  if (!r) return { amount: p.list, price: null, periodId: null, maxCount: null, maxAmount: null };
  return {
    amount: Number(r.amount),
    price: r.price,
    periodId: r.period_id === null ? null : Number(r.period_id),
    maxCount: r.max_count,
    maxAmount: r.max_amount === null ? null : Number(r.max_amount),
  };
}
