/**
 * 毕业离校 on the card's side: the open cards of a graduating class (by school, card type,
 * 学号 prefix or a list of 学号), and the notice each holder is sent beforehand (a card event the
 * notifier turns into a message). Each card is closed by `closeCardAccount` (counter.ts), from
 * the close-out module's worker.
 */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { insertCardEvents } from "./repository.ts";
import { parseStudentNumber } from "./rules.ts";
import type { CardKind, CardStatus } from "./tables.ts";
import "./tables.ts";

/**
 * Which cards a batch takes: one school's, optionally of one kind (学生/教职工), one 卡类别, a 学号
 * prefix, a list.
 */
export interface CloseoutCriteria {
  schoolId: number;
  kind?: CardKind;
  /** Of this 卡类别 (card_types) only. */
  cardTypeId?: number;
  /** 学号 starting with this (a class year: "2022"). */
  prefix?: string;
  /** Exactly these 学号 (a list from the 教务系统). */
  studentNumbers?: string[];
}

/** A card a batch takes. */
export interface CloseoutCard {
  id: number;
  studentNumber: string;
  name: string;
  kind: CardKind;
  status: CardStatus;
  accountId: number | null;
}

/** At most this many cards in one batch. */
export const MAX_CLOSEOUT_CARDS = 50_000;

/**
 * The open cards (not closed already) matching the criteria, in 学号 order, and the listed 学号
 * that name no open card of the school (not found, or closed already).
 */
export async function cardsForCloseout(
  db: Db,
  criteria: CloseoutCriteria,
): Promise<{ cards: CloseoutCard[]; missing: string[] }> {
  let q = db.selectFrom("card_accounts")
    .select(["id", "student_number", "name", "kind", "status", "account_id"])
    .where("school_id", "=", criteria.schoolId).where("status", "<>", "cancelled");
  if (criteria.kind) q = q.where("kind", "=", criteria.kind);
  if (criteria.cardTypeId) q = q.where("card_type_id", "=", criteria.cardTypeId);
  if (criteria.prefix) {
    q = q.where(sql<boolean>`starts_with(student_number, ${criteria.prefix.toUpperCase()})`);
  }
  const listed = criteria.studentNumbers?.map((n) =>
    parseStudentNumber(n) ?? n.trim().toUpperCase()
  );
  if (listed) {
    q = q.where(sql<boolean>`student_number = any(${listed}::text[])`);
  }
  const rows = await q.orderBy("student_number").limit(MAX_CLOSEOUT_CARDS + 1).execute();
  const found = new Set(rows.map((r) => r.student_number));
  return {
    cards: rows.map((r) => ({
      id: r.id,
      studentNumber: r.student_number,
      name: r.name,
      kind: r.kind,
      status: r.status,
      accountId: r.account_id,
    })),
    missing: listed ? [...new Set(listed.filter((n) => !found.has(n)))] : [],
  };
}

/**
 * The notice of a coming close-out, as a card event of each card (the notifier sends it to the
 * bound account): when, and what happens to the balance.
 */
export async function noticeCloseout(
  db: Db,
  input: { cardIds: number[]; staffId: number; closeOn: string; refund: string },
): Promise<void> {
  for (let i = 0; i < input.cardIds.length; i += 1000) {
    const ids = input.cardIds.slice(i, i + 1000);
    const rows = await db.selectFrom("card_accounts").select(["id", "account_id"])
      .where("id", "in", ids).where("status", "<>", "cancelled").execute();
    await insertCardEvents(
      db,
      rows.map((r) => ({
        cardAccountId: r.id,
        kind: "closeout_notice",
        actor: "staff" as const,
        staffId: input.staffId,
        accountId: r.account_id,
        details: { closeOn: input.closeOn, refund: input.refund },
      })),
    );
  }
}
