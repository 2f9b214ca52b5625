/**
 * One table of cards and amounts, run through every path that debits or credits a card: each path
 * pays or refuses exactly as the debit rule (_rules.ts) says, for the same reason, and moves
 * nothing when it refuses; where a card has 补助 lots, each path takes from them exactly what the
 * purse rule (_purses.ts) says for its place. Runs on PGlite, and on PostgreSQL with DATABASE_URL.
 */
import assert from "node:assert/strict";
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { setup } from "./_test_support.ts";
import {
  adjustBalance,
  applyOfflinePayment,
  creditTopUp,
  expireHolds,
  getBalance,
  HoldBelowMinimumError,
  holdFunds,
  holdFundsRecorded,
  InsufficientFundsError,
  issuePaymentCode,
  LimitExceededError,
  MealPeriodCapError,
  NegativeBalanceError,
  payFromCard,
  payFromCardsRecorded,
  PaymentCodeOverLimitError,
  payUtility,
  redeemPaymentCode,
  redeemPaymentCodesRecorded,
  refundTopUp,
  refundTransfer,
  refundUtility,
  returnTopUpRefund,
  reverseByReference,
  settleHold,
  updatePaySettings,
  verifyLedger,
} from "./mod.ts";

type Outcome =
  | "paid"
  | "negative_balance"
  | "per_payment"
  | "daily"
  | "meal_count"
  | "meal_amount"
  | "insufficient_funds";

/**
 * Where a path spends: a canteen (card and code payments), a utility, a shower (holds), or
 * nowhere (cash only: money back to a gateway, a negative adjustment).
 */
type Place = "canteen" | "utilities" | "shower" | "cash";

const PLACE_AT: Record<Place, string | null> = {
  canteen: "canteen",
  utilities: "utilities",
  shower: "shower",
  cash: null,
};

/** A 补助 lot on the card: where (default everywhere) and from/until when (ms from now). */
interface Lot {
  amount: number;
  categories?: string[];
  from?: number;
  until?: number;
}

/** A card's state before the payment, and what paths with and without the holder's limits do. */
interface Case {
  name: string;
  /** What is on the card in cash (after today's earlier spending). */
  balance: number;
  /** 补助 lots on the card besides its cash. */
  lots?: Lot[];
  /** Where the outcome differs from `limited`/`unlimited` (the lots that may pay there). */
  at?: Partial<Record<Place, Outcome>>;
  /** What a paid payment takes from the lots, by place (default nothing). */
  fromLots?: Partial<Record<Place, number>>;
  held?: number;
  /** An offline upload takes this much beyond what is free. */
  overdraft?: number;
  payLimit?: number;
  dailyLimit?: number;
  /** Spent earlier today (counts against the daily limit). */
  spent?: number;
  /** The card's own 卡类别 with these ceilings and canteen rule (default: 学生). */
  type?: { payLimit?: number; dailyLimit?: number; percentOff?: number; fenOff?: number };
  /** A meal period at the canteen now with these caps, and the card's payments in it earlier. */
  meal?: { maxCount?: number; maxAmount?: number; paid: number[] };
  /** What a priced payment (card and code payments at the canteen) takes, if not `amount`. */
  charged?: number;
  amount: number;
  /** Card and code payments at a merchant. */
  limited: Outcome;
  /** Utilities, top-up refunds, adjustments, shower holds: no per-payment or daily limit. */
  unlimited: Outcome;
}

const CASES: Case[] = [
  { name: "within the balance", balance: 1000, amount: 500, limited: "paid", unlimited: "paid" },
  { name: "the whole balance", balance: 1000, amount: 1000, limited: "paid", unlimited: "paid" },
  {
    name: "a fen above the balance",
    balance: 1000,
    amount: 1001,
    limited: "insufficient_funds",
    unlimited: "insufficient_funds",
  },
  {
    name: "held money is not available",
    balance: 1000,
    held: 400,
    amount: 700,
    limited: "insufficient_funds",
    unlimited: "insufficient_funds",
  },
  {
    name: "all that is not held",
    balance: 1000,
    held: 400,
    amount: 600,
    limited: "paid",
    unlimited: "paid",
  },
  {
    name: "an offline overdraft refuses any amount",
    balance: 500,
    overdraft: 100,
    amount: 1,
    limited: "negative_balance",
    unlimited: "negative_balance",
  },
  {
    name: "an overdraft is told before a limit",
    balance: 500,
    overdraft: 100,
    payLimit: 300,
    amount: 301,
    limited: "negative_balance",
    unlimited: "negative_balance",
  },
  {
    name: "above the per-payment limit",
    balance: 1000,
    payLimit: 300,
    amount: 301,
    limited: "per_payment",
    unlimited: "paid",
  },
  {
    name: "a limit is told before the funds",
    balance: 100,
    payLimit: 300,
    amount: 301,
    limited: "per_payment",
    unlimited: "insufficient_funds",
  },
  {
    name: "today's spending reaches the daily limit",
    balance: 1000,
    dailyLimit: 1000,
    spent: 800,
    amount: 201,
    limited: "daily",
    unlimited: "paid",
  },
  {
    name: "today's spending up to the daily limit",
    balance: 1000,
    dailyLimit: 1000,
    spent: 800,
    amount: 200,
    limited: "paid",
    unlimited: "paid",
  },
  {
    name: "a card that never had money",
    balance: 0,
    amount: 1,
    limited: "insufficient_funds",
    unlimited: "insufficient_funds",
  },
  {
    name: "补助 pays first where it may",
    balance: 1000,
    lots: [{ amount: 500 }],
    amount: 300,
    limited: "paid",
    unlimited: "paid",
    fromLots: { canteen: 300, utilities: 300, shower: 300 },
  },
  {
    name: "a mixed payment: 补助, then cash",
    balance: 1000,
    lots: [{ amount: 500 }],
    amount: 800,
    limited: "paid",
    unlimited: "paid",
    fromLots: { canteen: 500, utilities: 500, shower: 500 },
  },
  {
    name: "补助 covers what cash cannot, but never money back to a gateway",
    balance: 100,
    lots: [{ amount: 500 }],
    amount: 550,
    limited: "paid",
    unlimited: "paid",
    at: { cash: "insufficient_funds" },
    fromLots: { canteen: 500, utilities: 500, shower: 500 },
  },
  {
    name: "补助 only where its batch allows",
    balance: 100,
    lots: [{ amount: 500, categories: ["supermarket"] }],
    amount: 300,
    limited: "insufficient_funds",
    unlimited: "insufficient_funds",
  },
  {
    name: "a shower-only 补助 pays at the shower alone",
    balance: 100,
    lots: [{ amount: 500, categories: ["shower"] }],
    amount: 300,
    limited: "insufficient_funds",
    unlimited: "insufficient_funds",
    at: { shower: "paid" },
    fromLots: { shower: 300 },
  },
  {
    name: "补助 past its end is not money any more",
    balance: 100,
    lots: [{ amount: 500, from: -7200_000, until: -1000 }],
    amount: 300,
    limited: "insufficient_funds",
    unlimited: "insufficient_funds",
  },
  {
    name: "补助 before its start is not money yet",
    balance: 100,
    lots: [{ amount: 500, from: 3600_000, until: 7200_000 }],
    amount: 300,
    limited: "insufficient_funds",
    unlimited: "insufficient_funds",
  },
  {
    name: "the limits count a mixed payment whole",
    balance: 1000,
    lots: [{ amount: 500 }],
    payLimit: 300,
    amount: 400,
    limited: "per_payment",
    unlimited: "paid",
    fromLots: { utilities: 400, shower: 400 },
  },
  {
    name: "an offline overdraft refuses even with 补助",
    balance: 500,
    lots: [{ amount: 500, categories: ["supermarket"] }],
    overdraft: 100,
    amount: 1,
    limited: "negative_balance",
    unlimited: "negative_balance",
  },
  {
    name: "held cash is not available, 补助 still is",
    balance: 400,
    held: 400,
    lots: [{ amount: 300, categories: ["canteen", "utilities"] }],
    amount: 300,
    limited: "paid",
    unlimited: "paid",
    at: { cash: "insufficient_funds", shower: "insufficient_funds" },
    fromLots: { canteen: 300, utilities: 300 },
  },
  {
    name: "the card type's limit bounds the holder's own",
    balance: 1000,
    type: { payLimit: 300, dailyLimit: 5000 },
    amount: 301,
    limited: "per_payment",
    unlimited: "paid",
  },
  {
    name: "the card type's daily limit counts today's spending",
    balance: 1000,
    type: { payLimit: 1000, dailyLimit: 1000 },
    spent: 800,
    amount: 201,
    limited: "daily",
    unlimited: "paid",
  },
  {
    name: "a meal period's count cap reached",
    balance: 1000,
    meal: { maxCount: 2, paid: [100, 100] },
    amount: 1,
    limited: "meal_count",
    unlimited: "paid",
  },
  {
    name: "a meal period's amount cap passed by a fen",
    balance: 2000,
    meal: { maxAmount: 1000, paid: [600] },
    amount: 401,
    limited: "meal_amount",
    unlimited: "paid",
  },
  {
    name: "up to a meal period's amount cap",
    balance: 2000,
    meal: { maxCount: 2, maxAmount: 1000, paid: [600] },
    amount: 400,
    limited: "paid",
    unlimited: "paid",
  },
  {
    name: "a limit is told before a meal period's cap, the cap before the funds",
    balance: 100,
    type: { payLimit: 300, dailyLimit: 5000 },
    meal: { maxCount: 1, paid: [] },
    amount: 301,
    limited: "per_payment",
    unlimited: "insufficient_funds",
  },
  {
    name: "a type's canteen discount: the price in force is what leaves the card",
    balance: 1000,
    type: { percentOff: 10, fenOff: 50 },
    amount: 1000,
    charged: 850,
    limited: "paid",
    unlimited: "paid",
  },
  {
    name: "the cap counts the price charged, not the list price",
    balance: 2000,
    type: { percentOff: 50 },
    meal: { maxAmount: 500, paid: [] },
    amount: 1000,
    charged: 500,
    limited: "paid",
    unlimited: "paid",
  },
];

/** The reason a path's refusal gives, in the rule's words. */
function outcomeOf(err: unknown): Outcome {
  if (err instanceof NegativeBalanceError) return "negative_balance";
  if (err instanceof MealPeriodCapError) return `meal_${err.cap}`;
  if (err instanceof LimitExceededError || err instanceof PaymentCodeOverLimitError) {
    return err.limit;
  }
  if (err instanceof InsufficientFundsError || err instanceof HoldBelowMinimumError) {
    return "insufficient_funds";
  }
  throw err;
}

type World = Awaited<ReturnType<typeof setup>>;

/** What a card's lots hold free (remaining less held): all of them, or those valid now at `at`. */
async function lotsFree(db: Db, card: number, at?: string): Promise<number> {
  const where = at
    ? sql`and ${at} = any(categories) and valid_from <= now() and now() < valid_until`
    : sql``;
  const { rows: [r] } = await sql<{ free: number }>`
    select coalesce(sum(remaining - held), 0) as free from purse_lots
    where card_account_id = ${card} ${where}`.execute(db);
  return Number(r.free);
}
let seq = 0;
const ref = (what: string) => `rules-${what}-${++seq}`;

/** The case's 卡类别 on `card` and its meal period at the canteen (only this case's). */
async function pricesIn(t: World, c: Case, card: number): Promise<void> {
  await t.db.deleteFrom("meal_periods").where("merchant_id", "=", t.merchant.id).execute();
  if (c.type) {
    const { id } = await t.db.insertInto("card_types").values({
      name: ref("type"),
      kind: "student",
      pay_limit: c.type.payLimit ?? 20_000,
      daily_limit: c.type.dailyLimit ?? 50_000,
      subsidies: true,
    }).returning("id").executeTakeFirstOrThrow();
    if (c.type.percentOff || c.type.fenOff) {
      await t.db.insertInto("card_type_prices").values({
        card_type_id: id,
        category: "canteen",
        percent_off: c.type.percentOff ?? 0,
        fen_off: c.type.fenOff ?? 0,
      }).execute();
    }
    await t.db.updateTable("card_accounts").set({ card_type_id: id }).where("id", "=", card)
      .execute();
  }
  if (c.meal) {
    await t.db.insertInto("meal_periods").values({
      merchant_id: t.merchant.id,
      name: "午餐",
      starts: "00:00",
      ends: "23:59:59.999999",
      max_count: c.meal.maxCount ?? null,
      max_amount: c.meal.maxAmount ?? null,
    }).execute();
  }
}

/** A card in the case's state. */
async function cardIn(t: World, c: Case): Promise<number> {
  const spent = c.spent ?? 0;
  const overdraft = c.overdraft ?? 0;
  const earlier = (c.meal?.paid ?? []).reduce((a, b) => a + b, 0);
  const card = await t.card(c.balance + spent + earlier);
  await pricesIn(t, c, card);
  for (const amount of c.meal?.paid ?? []) {
    await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount,
      reference: ref("meal"),
    });
  }
  // A hold before the lots are granted: it holds cash only.
  if (c.held && c.lots) {
    await holdFunds(t.db, {
      cardAccountId: card,
      amount: c.held,
      minimum: c.held,
      merchantId: t.shower.id,
      reference: ref("held"),
      expiresAt: new Date(Date.now() + 3600_000),
    });
  }
  for (const lot of c.lots ?? []) await t.lot(card, lot.amount, lot);
  if (c.payLimit || c.dailyLimit) {
    await updatePaySettings(t.db, card, {
      payLimit: c.payLimit ?? Math.min(20_000, c.dailyLimit ?? 20_000),
      dailyLimit: c.dailyLimit ?? 50_000,
      codeFrozen: false,
    });
  }
  if (spent) {
    await payFromCard(t.db, {
      cardAccountId: card,
      merchantId: t.merchant.id,
      amount: spent,
      reference: ref("spent"),
    });
  }
  if (c.held && !c.lots) {
    await holdFunds(t.db, {
      cardAccountId: card,
      amount: c.held,
      minimum: c.held,
      merchantId: t.shower.id,
      reference: ref("held"),
      expiresAt: new Date(Date.now() + 3600_000),
    });
  }
  if (overdraft) {
    // At a merchant where the lots may not pay: the cash free and the overdraft.
    await applyOfflinePayment(t.db, {
      cardAccountId: card,
      merchantId: t.shower.id,
      terminalId: 1,
      amount: c.balance - (c.held ?? 0) + overdraft,
      reference: ref("offline"),
      occurredAt: new Date(),
    });
  }
  return card;
}

/** One debit path: pays `amount` from `card` or throws its refusal. */
interface Path {
  name: string;
  limits: boolean;
  place: Place;
  pay(t: World, card: number, amount: number): Promise<unknown>;
}

const batch = (db: Db, card: number, amount: number, merchantId: number) =>
  payFromCardsRecorded(db, {
    payments: [{
      payer: String(card),
      merchantId,
      amount,
      reference: ref("batch"),
      terminalId: null,
    }],
    cardAccountOf: (payer) => sql<number | null>`${payer}::bigint`,
    record: (paid) => sql`select ord from ${paid}`,
  });

const PATHS: Path[] = [
  {
    name: "card payment",
    limits: true,
    place: "canteen",
    pay: (t, card, amount) =>
      payFromCard(t.db, {
        cardAccountId: card,
        merchantId: t.merchant.id,
        amount,
        reference: ref("pay"),
      }),
  },
  {
    name: "group-committed card payment (ordinary path says why)",
    limits: true,
    place: "canteen",
    async pay(t, card, amount) {
      const [paid] = await batch(t.db, card, amount, t.merchant.id);
      if (paid) return paid;
      return await payFromCard(t.db, {
        cardAccountId: card,
        merchantId: t.merchant.id,
        amount,
        reference: ref("pay"),
      });
    },
  },
  {
    name: "payment code",
    limits: true,
    place: "canteen",
    async pay(t, card, amount) {
      const { code } = await issuePaymentCode(t.db, card);
      return await redeemPaymentCode(t.db, {
        code,
        amount,
        merchantId: t.merchant.id,
        reference: ref("qr"),
      });
    },
  },
  {
    name: "group-committed payment code with the reader's record (ordinary path says why)",
    limits: true,
    place: "canteen",
    async pay(t, card, amount) {
      const { code } = await issuePaymentCode(t.db, card);
      const input = {
        code,
        amount,
        merchantId: t.merchant.id,
        terminalId: 1,
        reference: ref("qr"),
      };
      const [paid] = await redeemPaymentCodesRecorded(t.db, {
        redemptions: [input],
        record: (p) => sql`select id from ${p}`,
      });
      return paid ?? await redeemPaymentCode(t.db, input);
    },
  },
  {
    name: "utility payment",
    limits: false,
    place: "utilities",
    pay: (t, card, amount) =>
      payUtility(t.db, {
        cardAccountId: card,
        amount,
        utility: "electricity",
        reference: ref("util"),
      }),
  },
  {
    name: "top-up paid back to its gateway",
    limits: false,
    place: "cash",
    pay: (t, card, amount) =>
      refundTopUp(t.db, { cardAccountId: card, amount, method: "sandbox", reference: ref("back") }),
  },
  {
    name: "negative adjustment",
    limits: false,
    place: "cash",
    pay: (t, card, amount) =>
      adjustBalance(t.db, {
        cardAccountId: card,
        amount: -amount,
        reference: ref("adj"),
        reason: "test",
        staffId: null,
      }),
  },
  {
    name: "shower hold of the whole amount",
    limits: false,
    place: "shower",
    pay: (t, card, amount) =>
      holdFunds(t.db, {
        cardAccountId: card,
        amount,
        minimum: amount,
        merchantId: t.shower.id,
        reference: ref("hold"),
        expiresAt: new Date(Date.now() + 3600_000),
      }),
  },
  {
    name: "group-committed shower hold with the controller's record (ordinary path says why)",
    limits: false,
    place: "shower",
    async pay(t, card, amount) {
      const input = {
        cardAccountId: card,
        amount,
        minimum: amount,
        merchantId: t.shower.id,
        reference: ref("hold"),
        expiresAt: new Date(Date.now() + 3600_000),
      };
      const [held] = await holdFundsRecorded(t.db, {
        holds: [{ ...input, payer: String(card), terminalId: 1 }],
        cardAccountOf: (payer) => sql<number | null>`${payer}::bigint`,
        amount: sql<number>`${amount}::bigint`,
        record: (h) => [sql`select id from ${h}`],
      });
      return held ?? await holdFunds(t.db, input);
    },
  },
];

Deno.test("every debit path pays or refuses each case as the debit rule says, for the same reason", async () => {
  const t = await setup();
  try {
    const failures: string[] = [];
    for (const path of PATHS) {
      for (const c of CASES) {
        const card = await cardIn(t, c);
        const at = PLACE_AT[path.place];
        const before = await getBalance(t.db, card, at);
        const lotsBefore = await lotsFree(t.db, card);
        const expected = c.at?.[path.place] ?? (path.limits ? c.limited : c.unlimited);
        let got: Outcome;
        try {
          await path.pay(t, card, c.amount);
          got = "paid";
        } catch (err) {
          got = outcomeOf(err);
        }
        const after = await getBalance(t.db, card, at);
        const moved = before.available - after.available;
        const fromLots = lotsBefore - await lotsFree(t.db, card);
        const expectLots = got === "paid" ? c.fromLots?.[path.place] ?? 0 : 0;
        if (got !== expected) {
          failures.push(`${path.name}, ${c.name}: ${got}, expected ${expected}`);
        } else if (
          moved !== (got === "paid" ? (path.limits ? c.charged ?? c.amount : c.amount) : 0)
        ) {
          failures.push(`${path.name}, ${c.name}: ${got} but ${moved} fen left what is available`);
        } else if (fromLots !== expectLots) {
          failures.push(
            `${path.name}, ${c.name}: ${fromLots} fen from 补助, expected ${expectLots}`,
          );
        }
      }
    }
    assert.deepEqual(failures, []);
    assert.deepEqual((await verifyLedger(t.db)).problems, []);
  } finally {
    await t.h.close();
  }
});

Deno.test("the debits that cannot be refused take what the rule leaves free", async () => {
  const t = await setup();
  try {
    for (const c of CASES) {
      // An offline record is a fact: it always pays, taking what is free and owing the rest.
      // At the canteen: its lots first, then free cash, then an overdraft.
      const card = await cardIn(t, c);
      const before = await getBalance(t.db, card, "canteen");
      const lotsBefore = await lotsFree(t.db, card);
      const canteenLots = await lotsFree(t.db, card, "canteen");
      await applyOfflinePayment(t.db, {
        cardAccountId: card,
        merchantId: t.merchant.id,
        terminalId: 1,
        amount: c.amount,
        reference: ref("offline"),
        occurredAt: new Date(),
      });
      const after = await getBalance(t.db, card, "canteen");
      assert.equal(after.balance, before.balance - c.amount, c.name);
      assert.equal(after.available, Math.max(0, before.available - c.amount), c.name);
      const fromLots = lotsBefore - await lotsFree(t.db, card);
      assert.equal(fromLots, Math.min(c.amount, canteenLots), c.name);

      // A shower's late end, after its hold timed out, charges only what is available then.
      const shower = await cardIn(t, { ...c, balance: c.balance + 100 });
      const hold = await holdFunds(t.db, {
        cardAccountId: shower,
        amount: 100,
        minimum: 1,
        merchantId: t.shower.id,
        reference: ref("late"),
        expiresAt: new Date(Date.now() - 1000),
      }).catch(() => null);
      if (!hold) continue;
      await expireHolds(t.db, new Date());
      const free = (await getBalance(t.db, shower, "shower")).available;
      const settled = await settleHold(t.db, {
        holdId: hold.holdId,
        amount: hold.authorised,
        reference: ref("late-end"),
      });
      assert.equal(settled.charged, Math.min(hold.authorised, free), c.name);
      assert.equal(
        (await getBalance(t.db, shower, "shower")).available,
        free - settled.charged,
        c.name,
      );
    }
    assert.deepEqual((await verifyLedger(t.db)).problems, []);
  } finally {
    await t.h.close();
  }
});

Deno.test("every credit path pays off an offline overdraft before the balance grows", async () => {
  const t = await setup();
  try {
    const m = t.merchant.id;
    /** A path's own first step on a card with 300 fen (a payment to give back), then its credit. */
    const paths: Array<{
      name: string;
      before?: (card: number) => Promise<{ transferId: number; reference: string }>;
      credit: (card: number, first: { transferId: number; reference: string }) => Promise<unknown>;
    }> = [
      {
        name: "top-up",
        credit: (card) =>
          creditTopUp(t.db, {
            cardAccountId: card,
            amount: 300,
            method: "sandbox",
            reference: ref("in"),
          }),
      },
      {
        name: "positive adjustment",
        credit: (card) =>
          adjustBalance(t.db, {
            cardAccountId: card,
            amount: 300,
            reference: ref("adj"),
            reason: "test",
            staffId: null,
          }),
      },
      {
        name: "top-up refund the gateway closed unpaid",
        before: async (card) => {
          const reference = ref("out");
          const r = await refundTopUp(t.db, {
            cardAccountId: card,
            amount: 300,
            method: "sandbox",
            reference,
          });
          return { transferId: r.transferId, reference };
        },
        credit: (card, first) =>
          returnTopUpRefund(t.db, {
            cardAccountId: card,
            amount: 300,
            method: "sandbox",
            reference: ref("back"),
            refundTransferId: first.transferId,
          }),
      },
      {
        name: "refund of a payment",
        before: async (card) => {
          const reference = ref("p");
          const r = await payFromCard(t.db, {
            cardAccountId: card,
            merchantId: m,
            amount: 300,
            reference,
          });
          return { transferId: r.transferId, reference };
        },
        credit: (_card, first) =>
          refundTransfer(t.db, {
            transferId: first.transferId,
            amount: 300,
            reference: ref("r"),
            reason: "test",
            staffId: null,
          }),
      },
      {
        name: "refund of a utility payment",
        before: async (card) => {
          const reference = ref("u");
          const r = await payUtility(t.db, {
            cardAccountId: card,
            amount: 300,
            utility: "water",
            reference,
          });
          return { transferId: r.transferId, reference };
        },
        credit: (_card, first) =>
          refundUtility(t.db, { originalReference: first.reference, reference: ref("ur") }),
      },
      {
        name: "a reader's reversal",
        before: async (card) => {
          const reference = ref("v");
          const r = await payFromCard(t.db, {
            cardAccountId: card,
            merchantId: m,
            amount: 300,
            reference,
          });
          return { transferId: r.transferId, reference };
        },
        credit: (_card, first) =>
          reverseByReference(t.db, { originalReference: first.reference, reference: ref("vr") }),
      },
    ];
    for (const path of paths) {
      const card = await t.card(300);
      const first = path.before ? await path.before(card) : { transferId: 0, reference: "" };
      // Then an offline upload leaves the card owing 200 fen.
      const free = (await getBalance(t.db, card)).available;
      await applyOfflinePayment(t.db, {
        cardAccountId: card,
        merchantId: m,
        terminalId: 1,
        amount: free + 200,
        reference: ref("offline"),
        occurredAt: new Date(),
      });
      assert.deepEqual(
        await getBalance(t.db, card),
        { balance: -200, held: 0, available: 0 },
        path.name,
      );
      await path.credit(card, first);
      assert.deepEqual(
        await getBalance(t.db, card),
        { balance: 100, held: 0, available: 100 },
        path.name,
      );
    }
    assert.deepEqual((await verifyLedger(t.db)).problems, []);
  } finally {
    await t.h.close();
  }
});
