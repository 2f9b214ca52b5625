/**
 * 销户: the card office closes a card account and pays its cash purse out in cash. The cash
 * leaves through a `cash_out` transfer to the cash account "柜台现金" (money out of the system, as a
 * gateway top-up is money in), a debit under the debit rule (cash only); the money of its lots
 * (补助) goes back to their funding accounts, never paid out. Money that reaches a closed account
 * later (a refund of a failed utility delivery, a reader's late reversal) is paid out the same way.
 */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { formatFen } from "../platform/money.ts";
import { writeAudit } from "../staff/mod.ts";
import { closeCardAccount, findCardAccount, type StaffActor } from "../card/mod.ts";
import { chinaDay, type Trx } from "./_common.ts";
import { readWallet } from "./_refusals.ts";
import { NO_LIMITS } from "./_rules.ts";
import { debitCard } from "./ledger.ts";
import { returnLotsOfCard } from "./lots.ts";
import { WalletError } from "./errors.ts";
import "./tables.ts";

/** The card account still has money on hold (a shower in progress) or owes money. */
export class CannotCloseError extends WalletError {
  readonly code = "cannot_close";
  override status = 422 as const;
  /** Why, for callers that wait rather than refuse: "money on hold", "overdraft", … */
  readonly why: string;
  constructor(why: string, userMessage: string) {
    super(`Cannot close card account: ${why}`, userMessage, "_form");
    this.why = why;
  }
}

function onHold(held: number): CannotCloseError {
  return new CannotCloseError(
    "money on hold",
    `有进行中的热水预授权（${formatFen(held)}），请待结算后再办理`,
  );
}

/** What a card account holds now, as the 销户 page shows it. */
export interface ClosingState {
  card: NonNullable<Awaited<ReturnType<typeof findCardAccount>>>;
  /** Money there (never negative), all purses. */
  balance: number;
  /** Of it, the cash purse (paid out) and the lots (back to their funding accounts). */
  cash: number;
  lots: number;
  held: number;
  /** What offline payments took beyond the balance: owed by the holder. */
  overdraft: number;
  /** Earlier cash payouts of this card account, newest first. */
  payouts: Array<{ id: number; amount: number; createdAt: Date }>;
}

export async function closingState(db: Db, cardAccountId: number): Promise<ClosingState | null> {
  const card = await findCardAccount(db, cardAccountId);
  if (!card) return null;
  const wallet = await db.selectFrom("ledger_accounts")
    .select(["balance", "held", "overdraft", "lots"])
    .where("card_account_id", "=", card.id).executeTakeFirst();
  const payouts = await db.selectFrom("ledger_transfers")
    .select(["id", "amount", "created_at"])
    .where("card_account_id", "=", card.id).where("kind", "=", "cash_out")
    .orderBy("id", "desc").limit(20).execute();
  return {
    card,
    balance: wallet?.balance ?? 0,
    cash: (wallet?.balance ?? 0) - (wallet?.lots ?? 0),
    lots: wallet?.lots ?? 0,
    held: wallet?.held ?? 0,
    overdraft: wallet?.overdraft ?? 0,
    payouts: payouts.map((p) => ({ id: p.id, amount: p.amount, createdAt: p.created_at })),
  };
}

/**
 * Pays the cash purse of a card account out in cash inside `trx` and sends its lots back to their
 * funding accounts; refused while money is on hold or owed. Returns the cash paid and the lots'
 * money sent back (0 when there was none). The reference names the card's last transfer, so a second submit of the same state
 * is the same payout, never two.
 */
async function payOutInTrx(
  trx: Trx,
  cardAccountId: number,
  details: { staffId: number; reason: string; ip: string | null },
): Promise<{ cash: number; lots: number }> {
  // The card's lots, then its row, locked: the purse rule's order.
  const { wallet: w } = await readWallet(trx, cardAccountId, 1, { ...NO_LIMITS, at: null }, {
    lock: true,
  });
  if (!w) return { cash: 0, lots: 0 };
  if (w.held > 0) throw onHold(w.held);
  if (w.overdraft > 0) {
    throw new CannotCloseError(
      "overdraft",
      `账户余额为负（欠款 ${formatFen(w.overdraft)}），请先补足欠款再办理`,
    );
  }
  const returned = await returnLotsOfCard(trx, cardAccountId, {
    staffId: details.staffId,
    reason: details.reason,
  });
  const cash = w.balance - w.lots;
  if (cash > 0) {
    const last = await sql<{ id: number | null }>`
      select max(id) as id from ledger_transfers where card_account_id = ${cardAccountId}`
      .execute(trx);
    await debitCard(trx, {
      cardAccountId,
      amount: cash,
      reference: `cash-out:${cardAccountId}:after:${last.rows[0]?.id ?? 0}`,
      kind: "cash_out",
      channel: null,
      at: sql`null`,
      counterAccount: sql<number>`select id from ledger_accounts where code = 'cash:counter'`,
      merchantId: null,
      terminalId: null,
      details: { staffId: details.staffId, reason: details.reason },
      rule: { ...NO_LIMITS, today: chinaDay() },
    }, () => Promise.resolve());
  }
  if (cash === 0 && returned === 0) return { cash, lots: returned };
  await writeAudit(trx, {
    staffId: details.staffId,
    action: "wallet.cash_out",
    targetType: "card_account",
    targetId: cardAccountId,
    before: { balance: w.balance, cash, lots: w.lots },
    after: { balance: 0, paidOut: cash, lotsReturned: returned, reason: details.reason },
    ip: details.ip,
  });
  return { cash, lots: returned };
}

/**
 * 销户 at the counter: pays the balance out in cash and closes the card account (card's
 * `closeCardAccount`: chips cancelled and blocklisted, login account unbound), all or nothing.
 * Returns the cash paid out in fen.
 */
export async function closeCardWithPayout(
  db: Db,
  actor: StaffActor,
  cardAccountId: number,
  reason: string,
): Promise<number> {
  return await closeCardAccount(
    db,
    actor,
    cardAccountId,
    reason,
    async (trx, id) =>
      (await payOutInTrx(trx as Trx, id, {
        staffId: actor.staffId,
        reason,
        ip: actor.ip ?? null,
      })).cash,
  );
}

/** A card's money as it closes, read with its wallet row locked (never negative; owed apart). */
export interface ClosedMoney {
  balance: number;
  cash: number;
  lots: number;
  overdraft: number;
}

/**
 * Closes a card account (card's `closeCardAccount`) deciding what its money does from the wallet
 * row locked in the same transaction, so a payment, a shower start or an offline upload cannot
 * change it between the decision and the close: `choose(money)` says "payout" (the cash paid out
 * and the lots sent back, as `closeCardWithPayout`) or "keep" (the cash stays: a small balance on
 * the closed account, a debt owed; the lots go back all the same). Refused while money is on
 * hold. Returns the money as the card closed, the choice, and the cash paid out.
 */
export async function closeCardDeciding(
  db: Db,
  actor: StaffActor,
  options: {
    cardAccountId: number;
    reason: string;
    choose: (money: ClosedMoney) => "payout" | "keep";
  },
): Promise<{ money: ClosedMoney; choice: "payout" | "keep"; paid: number }> {
  const { reason } = options;
  return await closeCardAccount(db, actor, options.cardAccountId, reason, async (trx, id) => {
    const { wallet: w } = await readWallet(trx, id, 1, { ...NO_LIMITS, at: null }, { lock: true });
    if (w && w.held > 0) throw onHold(w.held);
    const money = {
      balance: w?.balance ?? 0,
      cash: (w?.balance ?? 0) - (w?.lots ?? 0),
      lots: w?.lots ?? 0,
      overdraft: w?.overdraft ?? 0,
    };
    const choice = options.choose(money);
    if (choice === "keep") {
      await returnLotsOnClose(trx as Trx, id, money, { ...actor, reason });
      return { money, choice, paid: 0 };
    }
    const paid = (await payOutInTrx(trx as Trx, id, {
      staffId: actor.staffId,
      reason,
      ip: actor.ip ?? null,
    })).cash;
    return { money, choice, paid };
  });
}

/**
 * A card closing with its cash kept (a small balance, or a debt owed): its lots still go back to
 * their funding accounts, as in every close — the school's 补助 never stays on a closed card.
 * Audited when anything went back.
 */
async function returnLotsOnClose(
  trx: Trx,
  cardAccountId: number,
  money: ClosedMoney,
  actor: StaffActor & { reason: string },
): Promise<void> {
  const returned = await returnLotsOfCard(trx, cardAccountId, {
    staffId: actor.staffId,
    reason: actor.reason,
  });
  if (returned === 0) return;
  await writeAudit(trx, {
    staffId: actor.staffId,
    action: "wallet.close_lots_returned",
    targetType: "card_account",
    targetId: cardAccountId,
    before: { balance: money.balance, cash: money.cash, lots: money.lots },
    after: {
      lotsReturned: returned,
      keptCash: money.cash,
      owed: money.overdraft,
      reason: actor.reason,
    },
    ip: actor.ip ?? null,
  });
}

/** Pays out money that reached an already closed card account (退还余额). */
export async function payOutClosedCard(
  db: Db,
  actor: StaffActor,
  cardAccountId: number,
  reason: string,
): Promise<number> {
  return await db.transaction().execute(async (trx) => {
    const card = await findCardAccount(trx, cardAccountId);
    if (!card || card.status !== "cancelled") {
      throw new CannotCloseError("not closed", "该一卡通账户尚未销户");
    }
    const paid = await payOutInTrx(trx, card.id, {
      staffId: actor.staffId,
      reason,
      ip: actor.ip ?? null,
    });
    if (paid.cash === 0 && paid.lots === 0) {
      throw new CannotCloseError("nothing to pay", "该账户没有余额可退");
    }
    return paid.cash;
  });
}
