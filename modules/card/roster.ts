/**
 * Cards named by 学号 in one school, closed ones too, for lists that refuse a row with the reason
 * (补助发放: "no such 学号" is not "closed already"). Reads only.
 */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import type { CardKind, CardStatus } from "./tables.ts";
import "./tables.ts";

/** A card found by its 学号. */
export interface RosterCard {
  id: number;
  studentNumber: string;
  name: string;
  kind: CardKind;
  status: CardStatus;
  /** Its 卡类别 (card_types). */
  cardTypeId: number;
}

/** The cards of `schoolId` with these 学号 (upper case), by 学号; 5,000 a statement. */
export async function cardsByStudentNumbers(
  db: Db,
  schoolId: number,
  studentNumbers: string[],
): Promise<Map<string, RosterCard>> {
  const out = new Map<string, RosterCard>();
  const wanted = [...new Set(studentNumbers.map((n) => n.trim().toUpperCase()))];
  for (let i = 0; i < wanted.length; i += 5000) {
    const rows = await db.selectFrom("card_accounts")
      .select(["id", "student_number", "name", "kind", "status", "card_type_id"])
      .where("school_id", "=", schoolId)
      .where(sql<boolean>`student_number = any(${wanted.slice(i, i + 5000)}::text[])`)
      .execute();
    for (const r of rows) {
      out.set(r.student_number, {
        id: r.id,
        studentNumber: r.student_number,
        name: r.name,
        kind: r.kind,
        status: r.status,
        cardTypeId: Number(r.card_type_id),
      });
    }
  }
  return out;
}
