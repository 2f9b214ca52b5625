/**
 * The soak's 补助: before the load, every soak card gets two lots from the school's 补助资金 — one
 * that may be spent anywhere and ends in the middle of the run (while the server is being SIGKILLed
 * and PostgreSQL restarted), one for the canteen that lasts past it. Readers then pay with them
 * (a payment takes the lots first), and the server's expiry worker sends the first lot's rest back.
 *
 * At the end (after the worker's round that follows the last refund): every lot that ended holds
 * nothing, and what went back by 到期 transfers (none before its end; a refund into an ended lot
 * goes back again) is exactly what payments left of it; the lasting lots never expired; payments
 * did draw on the lots; and each card's expected balance loses what expired (the caller subtracts
 * `expiredByCard`).
 */
import { sql } from "kysely";
import type { Db } from "../modules/platform/mod.ts";
import { grantSubsidy } from "./_world.ts";

/** What each soak card is granted, in fen. */
export const ENDING_LOT = 3_000;
export const LASTING_LOT = 2_000;

/** The soak's grants: when the ending lots end. */
export interface SoakSubsidies {
  cards: number[];
  endsAt: Date;
}

/** Grants every card its two lots (idempotent on their references); the first ends at `endsAt`. */
export async function grantSoakSubsidies(
  db: Db,
  cards: number[],
  endsAt: Date,
): Promise<SoakSubsidies> {
  await grantSubsidy(db, cards, {
    amount: ENDING_LOT,
    until: endsAt,
    categories: ["canteen", "supermarket", "shower", "utilities"],
    tag: "soak-ending",
  });
  await grantSubsidy(db, cards, {
    amount: LASTING_LOT,
    until: new Date(Date.now() + 30 * 86400_000),
    categories: ["canteen"],
    tag: "soak-lasting",
  });
  return { cards, endsAt };
}

/**
 * Waits (at most `ms`) until no soak lot past its end holds money: a refund into an ended lot (a
 * utility purchase refunded after failing, finance's refund of a payment that drew on it), or the
 * part a shower held across the end once the shower ends, goes back at the expiry worker's next
 * round, every 5 s, so the check waits for that round instead of racing it. True when none is
 * left (false: the check says which lots still hold money).
 */
export async function awaitEndedLotsReturned(
  db: Db,
  plan: SoakSubsidies,
  ms: number,
): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    const { rows: [r] } = await sql<{ n: number }>`
      select count(*)::int as n from purse_lots
      where card_account_id = any(${plan.cards}::bigint[]) and reference like 'bench-subsidy-soak-%'
        and valid_until <= now() and remaining > 0`.execute(db);
    if (Number(r.n) === 0) return true;
    if (Date.now() > until) return false;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

interface LotRow {
  id: string;
  card_account_id: string;
  reference: string;
  granted: string;
  remaining: string;
  held: string;
  valid_until: Date;
  spent: string;
  expiries: string;
  expired: string;
  first_expiry_at: Date | null;
}

/**
 * Checks the soak's lots (pushing what is wrong onto `failures`) and returns what expired per card
 * and in all, and what payments took from lots.
 */
export async function checkSoakSubsidies(
  db: Db,
  plan: SoakSubsidies,
  failures: string[],
): Promise<{ expiredByCard: Map<number, number>; expired: number; spentFromLots: number }> {
  const { rows } = await sql<LotRow>`
    select l.id, l.card_account_id, l.reference, l.granted, l.remaining, l.held, l.valid_until,
      coalesce(-sum(g.amount) filter (where t.kind not like 'subsidy%'), 0) as spent,
      count(*) filter (where t.kind = 'subsidy_expiry') as expiries,
      coalesce(-sum(g.amount) filter (where t.kind = 'subsidy_expiry'), 0) as expired,
      min(t.created_at) filter (where t.kind = 'subsidy_expiry') as first_expiry_at
    from purse_lots l
    left join purse_legs g on g.lot_id = l.id
    left join ledger_transfers t on t.id = g.transfer_id
    where l.card_account_id = any(${plan.cards}::bigint[]) and l.reference like 'bench-subsidy-soak-%'
    group by l.id order by l.id`.execute(db);
  if (rows.length !== plan.cards.length * 2) {
    failures.push(`补助: ${rows.length} soak lots, granted ${plan.cards.length * 2}`);
  }
  const expiredByCard = new Map<number, number>();
  let expired = 0;
  let spentFromLots = 0;
  for (const r of rows) {
    const lot = `补助 lot ${r.reference}`;
    const [granted, remaining, spent, expiries, gone] = [
      Number(r.granted),
      Number(r.remaining),
      Number(r.spent),
      Number(r.expiries),
      Number(r.expired),
    ];
    spentFromLots += spent;
    if (Number(r.held) !== 0) failures.push(`${lot}: ${r.held} still held after every shower`);
    if (r.reference.startsWith("bench-subsidy-soak-ending-")) {
      if (remaining !== 0) {
        failures.push(`${lot}: ended at ${r.valid_until.toISOString()}, still holds ${remaining}`);
      }
      if (gone !== granted - spent) {
        failures.push(
          `${lot}: ${gone} went back, but payments left ${granted - spent} of ${granted}`,
        );
      }
      if (r.first_expiry_at && r.first_expiry_at.getTime() < r.valid_until.getTime()) {
        failures.push(`${lot}: went back at ${r.first_expiry_at.toISOString()}, before its end`);
      }
      const card = Number(r.card_account_id);
      expiredByCard.set(card, (expiredByCard.get(card) ?? 0) + gone);
      expired += gone;
    } else if (expiries > 0 || remaining !== granted - spent) {
      failures.push(
        `${lot}: lasts a month, yet ${gone} went back and ${remaining} remains of ${granted} (spent ${spent})`,
      );
    }
  }
  if (spentFromLots === 0) failures.push("补助: no payment drew on the soak's lots");
  return { expiredByCard, expired, spentFromLots };
}
