/**
 * What pages read of purses: a card's purses with what each holds and when its money expires
 * (余额, the counter screen), which purse paid each transfer (交易记录), and a batch's lots in sum
 * and per card (补助发放's reports). Reads only.
 */
import { type RawBuilder, sql } from "kysely";
import type { Db } from "../platform/database.ts";
import "./tables.ts";

/** A card's lot as the pages read it. */
export interface LotLine {
  purse: string;
  remaining: number;
  held: number;
  validFrom: Date;
  validUntil: Date;
  categories: string[];
}

/** One purse of a card: what it holds, what of it is held, and what expires first. */
export interface PurseLine {
  code: string;
  name: string;
  /** Signed for cash (an offline overdraft); held parts included. */
  amount: number;
  held: number;
  /** Of a purse with lots: money not yet spendable (its period has not begun). */
  notYet: number;
  /** Of a purse with lots: money past its end, not yet sent back. */
  ended: number;
  /** The soonest end among its spendable money, with how much ends then. */
  expires: { at: Date; amount: number } | null;
  /** Where its money may be spent (the union of its lots'); null: anywhere. */
  categories: string[] | null;
}

/** The purse kinds' names and order (few rows; read with the lots). */
interface KindRow {
  code: string;
  name: string;
  spend_order: number;
  lots: boolean;
}

/**
 * A card's purses from its wallet row's money and its lots: cash first (what the holder tops
 * up), then each purse with money in spend order. `now` decides what is spendable.
 */
export function purseLinesOf(
  money: { cash: number; cashHeld: number },
  lots: LotLine[],
  kinds: KindRow[],
  now: Date = new Date(),
): PurseLine[] {
  const cashKind = kinds.find((k) => !k.lots);
  const out: PurseLine[] = [{
    code: cashKind?.code ?? "cash",
    name: cashKind?.name ?? "现金",
    amount: money.cash,
    held: money.cashHeld,
    notYet: 0,
    ended: 0,
    expires: null,
    categories: null,
  }];
  for (const k of kinds.filter((k) => k.lots).sort((a, b) => a.spend_order - b.spend_order)) {
    const mine = lots.filter((l) => l.purse === k.code && l.remaining > 0);
    if (!mine.length) continue;
    const live = mine.filter((l) => l.validFrom <= now && now < l.validUntil);
    const first = live.reduce<Date | null>(
      (m, l) => (m === null || l.validUntil < m ? l.validUntil : m),
      null,
    );
    out.push({
      code: k.code,
      name: k.name,
      amount: sum(mine, (l) => l.remaining),
      held: sum(mine, (l) => l.held),
      notYet: sum(mine.filter((l) => now < l.validFrom), (l) => l.remaining),
      ended: sum(mine.filter((l) => l.validUntil <= now), (l) => l.remaining),
      expires: first && {
        at: first,
        amount: sum(
          live.filter((l) => l.validUntil.getTime() === first.getTime()),
          (l) => l.remaining,
        ),
      },
      categories: [...new Set(live.flatMap((l) => l.categories))],
    });
  }
  return out;
}

function sum<T>(rows: T[], f: (r: T) => number): number {
  return rows.reduce((s, r) => s + f(r), 0);
}

/** A card's purses (cash first), as 余额 and the counter screen show them. */
export async function purseLines(db: Db, cardAccountId: number): Promise<PurseLine[]> {
  const w = await db.selectFrom("ledger_accounts")
    .select(["balance", "held", "overdraft", "lots", "lots_held"])
    .where("card_account_id", "=", cardAccountId).executeTakeFirst();
  const lots = w && w.lots > 0 ? await lotLines(db, cardAccountId) : [];
  return purseLinesOf(
    {
      cash: w ? w.balance - w.overdraft - w.lots : 0,
      cashHeld: w ? w.held - w.lots_held : 0,
    },
    lots,
    await purseKindRows(db),
  );
}

async function purseKindRows(db: Db): Promise<KindRow[]> {
  return await db.selectFrom("purse_kinds").select(["code", "name", "spend_order", "lots"])
    .execute();
}

async function lotLines(db: Db, cardAccountId: number): Promise<LotLine[]> {
  const rows = await db.selectFrom("purse_lots")
    .select(["purse", "remaining", "held", "valid_from", "valid_until", "categories"])
    // A literal 0: the cards' lot index is partial (where remaining > 0; see lots.ts).
    .where("card_account_id", "=", cardAccountId).where("remaining", ">", sql.lit(0))
    .orderBy("valid_until").orderBy("id").execute();
  return rows.map((r) => ({
    purse: r.purse,
    remaining: r.remaining,
    held: r.held,
    validFrom: r.valid_from,
    validUntil: r.valid_until,
    categories: r.categories,
  }));
}

/** The lots and purse kinds of a card as JSON for a statement that reads the page in one. */
export function lotLinesJsonSql(cardAccountId: RawBuilder<number>): RawBuilder<unknown> {
  return sql<unknown>`(select json_build_object(
      'kinds', (select json_agg(json_build_object('code', code, 'name', name,
        'spend_order', spend_order, 'lots', lots)) from purse_kinds),
      'lots', (select json_agg(json_build_object('purse', purse, 'remaining', remaining,
        'held', held, 'valid_from', valid_from, 'valid_until', valid_until,
        'categories', categories) order by valid_until, id)
        from purse_lots where card_account_id = ${cardAccountId} and remaining > 0)))`;
}

/** `lotLinesJsonSql`'s value read back. */
export function readLotLinesJson(
  json: unknown,
): { kinds: KindRow[]; lots: LotLine[] } {
  const j = (typeof json === "string" ? JSON.parse(json) : json) as {
    kinds: KindRow[] | null;
    lots:
      | Array<
        Omit<LotLine, "validFrom" | "validUntil"> & {
          valid_from: string;
          valid_until: string;
        }
      >
      | null;
  } | null;
  return {
    kinds: j?.kinds ?? [],
    lots: (j?.lots ?? []).map((l) => ({
      purse: l.purse,
      remaining: Number(l.remaining),
      held: Number(l.held),
      validFrom: new Date(l.valid_from),
      validUntil: new Date(l.valid_until),
      categories: l.categories,
    })),
  };
}

/** Which purses paid (or took back) a transfer: its lots' parts by purse, and the rest as cash. */
export interface TransferSplit {
  cash: number;
  purses: Array<{ code: string; name: string; amount: number }>;
}

/**
 * The split of each of these transfers that moved a lot's money (amounts unsigned), by transfer
 * id; a transfer of cash only has none.
 */
export async function splitsOf(
  db: Db,
  transfers: Array<{ id: number; amount: number }>,
): Promise<Map<number, TransferSplit>> {
  const out = new Map<number, TransferSplit>();
  if (transfers.length === 0) return out;
  const { rows } = await sql<{ transfer_id: number; code: string; name: string; amount: number }>`
    select g.transfer_id, pk.code, pk.name, sum(abs(g.amount)) as amount
    from purse_legs g join purse_lots l on l.id = g.lot_id
    join purse_kinds pk on pk.code = l.purse
    where g.transfer_id = any(${transfers.map((t) => t.id)}::bigint[])
    group by g.transfer_id, pk.code, pk.name, pk.spend_order
    order by g.transfer_id, pk.spend_order`.execute(db);
  const amounts = new Map(transfers.map((t) => [t.id, t.amount]));
  for (const r of rows) {
    const id = Number(r.transfer_id);
    const s = out.get(id) ?? { cash: amounts.get(id) ?? 0, purses: [] };
    s.purses.push({ code: r.code, name: r.name, amount: Number(r.amount) });
    s.cash -= Number(r.amount);
    out.set(id, s);
  }
  return out;
}

/** A batch's lots in sum: what was issued, spent, expired, sent back otherwise, and remains. */
export interface LotTotals {
  cards: number;
  issued: number;
  /** Spent at merchants and utilities, less what refunds gave back. */
  spent: number;
  expired: number;
  /** Reversed by finance or returned at 销户. */
  returned: number;
  remaining: number;
}

const NO_TOTALS: LotTotals = {
  cards: 0,
  issued: 0,
  spent: 0,
  expired: 0,
  returned: 0,
  remaining: 0,
};

/** `LotTotals` of each batch (by the batch ids lots carry). */
export async function lotTotalsByBatch(
  db: Db,
  batchIds: number[],
): Promise<Map<number, LotTotals>> {
  const out = new Map<number, LotTotals>(batchIds.map((id) => [id, { ...NO_TOTALS }]));
  if (batchIds.length === 0) return out;
  const { rows } = await sql<{ batch_id: number; kind: string; amount: number; cards: number }>`
    select l.batch_id, t.kind, sum(g.amount) as amount, count(distinct l.id) as cards
    from purse_lots l join purse_legs g on g.lot_id = l.id
    join ledger_transfers t on t.id = g.transfer_id
    where l.batch_id = any(${batchIds}::bigint[])
    group by l.batch_id, t.kind`.execute(db);
  for (const r of rows) {
    const t = out.get(Number(r.batch_id))!;
    const amount = Number(r.amount);
    if (r.kind === "subsidy") {
      t.issued += amount;
      t.cards += Number(r.cards);
    } else if (r.kind === "subsidy_expiry") t.expired -= amount;
    else if (r.kind === "subsidy_reversal" || r.kind === "subsidy_return") t.returned -= amount;
    else t.spent -= amount;
    t.remaining += amount;
  }
  return out;
}

/** One card's lot of a batch, for the batch's page and CSV. */
export interface BatchLot {
  cardAccountId: number;
  reference: string;
  granted: number;
  remaining: number;
  spent: number;
  expired: number;
  returned: number;
}

/** The lots of a batch, one per card. */
export async function lotsOfBatch(db: Db, batchId: number): Promise<BatchLot[]> {
  const { rows } = await sql<{
    card_account_id: number;
    reference: string;
    granted: number;
    remaining: number;
    expired: number;
    returned: number;
  }>`
    select l.card_account_id, l.reference, l.granted, l.remaining,
      coalesce(-sum(g.amount) filter (where t.kind = 'subsidy_expiry'), 0) as expired,
      coalesce(-sum(g.amount) filter (where t.kind in ('subsidy_reversal', 'subsidy_return')), 0)
        as returned
    from purse_lots l join purse_legs g on g.lot_id = l.id
    join ledger_transfers t on t.id = g.transfer_id
    where l.batch_id = ${batchId}
    group by l.id order by l.id`.execute(db);
  return rows.map((r) => {
    const granted = Number(r.granted);
    const remaining = Number(r.remaining);
    const expired = Number(r.expired);
    const returned = Number(r.returned);
    return {
      cardAccountId: Number(r.card_account_id),
      reference: r.reference,
      granted,
      remaining,
      expired,
      returned,
      spent: granted - remaining - expired - returned,
    };
  });
}
