/**
 * Who a batch pays: the rows of an uploaded list (学号 and amount in yuan) or every open card of a
 * type, each checked on its own and refused with its reason in Chinese (a malformed 学号, a 学号
 * listed twice, no such card in the school, a closed card, an amount that is not one, zero or
 * below, or above the per-card bound). Nothing here changes any money.
 */
import { DomainError } from "../platform/errors.ts";
import { formatFen, parseYuan } from "../platform/money.ts";
import { readTable } from "../platform/sheets.ts";
import {
  cardsByStudentNumbers,
  cardsOfType,
  listCardTypes,
  parseStudentNumber,
} from "../card/mod.ts";
import type { Db } from "../platform/database.ts";

export class SubsidyError extends DomainError {
  override status = 422 as const;
}

/** One grant's bound: a subsidy of more than ¥10,000.00 to one card is a typing mistake. */
export const MAX_GRANT = 1_000_000;
/** At most this many rows in one batch (a whole university's students). */
export const MAX_ROWS = 50_000;

/** A checked row: a card and its amount, or why it is refused. */
export interface RecipientRow {
  line: number;
  studentNumber: string;
  name: string | null;
  cardAccountId: number | null;
  amount: number | null;
  error: string | null;
}

/** The template's columns and instructions (the upload reads the same). */
export const TEMPLATE_COLUMNS = ["学号", "金额（元）"];
export const TEMPLATE_NOTES = [
  "补助发放名单说明",
  "1. 第一行为表头：学号、金额（元）；从第二行起每行一名持卡人。",
  "2. 学号：本校一卡通账户的学号（字母和数字）；同一学号只能出现一次，重复的各行都不发放。",
  `3. 金额：单位为元，最多两位小数，须大于 0、不超过 ${
    formatFen(MAX_GRANT)
  }；留空则按批次的“每人金额”。`,
  "4. 已注销或不存在的学号、金额不正确的行不会发放，预览中逐行列出原因；审核通过前不会入账。",
];

/** An amount cell checked: fen, or why not. */
export function amountOf(text: string, fallback: number | null): number | string {
  const t = text.trim().replace(/^¥/, "").replaceAll(",", "");
  if (t === "") return fallback ?? "金额为空（且未填写每人金额）";
  if (/^-\s*\d/.test(t)) return "金额须大于0";
  const fen = parseYuan(t);
  if (fen === null) return `金额“${t.slice(0, 20)}”格式不正确（单位元，最多两位小数）`;
  if (fen <= 0) return "金额须大于0";
  if (fen > MAX_GRANT) return `金额超过单人上限 ${formatFen(MAX_GRANT)}`;
  return fen;
}

/** The rows of an uploaded list: 学号 and amount columns by their header, else the first two. */
export async function rowsOfList(
  bytes: Uint8Array,
  fallback: number | null,
): Promise<Array<Omit<RecipientRow, "name" | "cardAccountId">>> {
  const records = await readTable(bytes, { field: "file" });
  let [col, amountCol] = [0, 1];
  const head = records[0]?.cells.map((c) => c.trim()) ?? [];
  const numberHead = head.findIndex((c) => /学号|工号/.test(c));
  if (numberHead >= 0) {
    col = numberHead;
    const a = head.findIndex((c) => /金额/.test(c));
    amountCol = a >= 0 ? a : -1;
    records.shift();
  }
  if (records.length === 0) throw new SubsidyError("Empty list", "名单中没有持卡人", "file");
  if (records.length > MAX_ROWS) {
    throw new SubsidyError("Too many rows", `一个批次最多 ${MAX_ROWS} 行，请分批发放`, "file");
  }
  return records.map((r) => {
    const raw = (r.cells[col] ?? "").trim();
    const studentNumber = parseStudentNumber(raw);
    const amount = amountOf(amountCol >= 0 ? r.cells[amountCol] ?? "" : "", fallback);
    const error = studentNumber === null
      ? (raw ? `学号“${raw.slice(0, 20)}”格式不正确` : "学号为空")
      : typeof amount === "string"
      ? amount
      : null;
    return {
      line: r.line,
      studentNumber: studentNumber ?? raw.slice(0, 20),
      amount: typeof amount === "number" ? amount : null,
      error,
    };
  });
}

/** Refuses every row of a 学号 listed more than once, naming the lines. */
export function refuseDuplicates<
  T extends { line: number; studentNumber: string; error: string | null },
>(
  rows: T[],
): T[] {
  const lines = new Map<string, number[]>();
  for (const r of rows) {
    if (!r.studentNumber) continue;
    lines.set(r.studentNumber, [...(lines.get(r.studentNumber) ?? []), r.line]);
  }
  return rows.map((r) => {
    const same = lines.get(r.studentNumber) ?? [];
    return same.length > 1 && !r.error
      ? { ...r, error: `学号重复（第 ${same.join("、")} 行），均不发放` }
      : r;
  });
}

/** The list's rows with their cards: a 学号 of no card of the school, a closed card, or a card of
 * a type that takes no 补助, refused. */
export async function checkList(
  db: Db,
  schoolId: number,
  bytes: Uint8Array,
  fallback: number | null,
): Promise<RecipientRow[]> {
  const rows = refuseDuplicates(await rowsOfList(bytes, fallback));
  const cards = await cardsByStudentNumbers(db, schoolId, rows.map((r) => r.studentNumber));
  const types = new Map((await listCardTypes(db)).map((t) => [t.id, t]));
  return rows.map((r) => {
    const card = cards.get(r.studentNumber);
    const type = card && types.get(card.cardTypeId);
    const error = r.error ??
      (!card
        ? "本校没有此学号的一卡通账户"
        : card.status === "cancelled"
        ? "一卡通账户已注销"
        : !type?.subsidies
        ? `卡类别“${type?.name ?? card.cardTypeId}”不发放补助`
        : null);
    return { ...r, name: card?.name ?? null, cardAccountId: card?.id ?? null, error };
  });
}

/** Every open card of a 卡类别 in the school, each with the one amount. */
export async function everyCardOf(
  db: Db,
  schoolId: number,
  cardTypeId: number,
  amount: number,
): Promise<RecipientRow[]> {
  const type = (await listCardTypes(db)).find((t) => t.id === cardTypeId);
  if (!type) throw new SubsidyError("No card type", "请选择卡类别", "card_type");
  if (!type.subsidies) {
    throw new SubsidyError("Type takes none", `卡类别“${type.name}”不发放补助`, "card_type");
  }
  const cards = await cardsOfType(db, schoolId, cardTypeId);
  if (cards.length === 0) {
    throw new SubsidyError("No cards", "本校没有该类别的未注销一卡通账户", "card_type");
  }
  if (cards.length > MAX_ROWS) {
    throw new SubsidyError("Too many cards", `一个批次最多 ${MAX_ROWS} 张卡`, "card_type");
  }
  return cards.map((c) => ({
    line: 0,
    studentNumber: c.studentNumber,
    name: c.name,
    cardAccountId: c.id,
    amount,
    error: null,
  }));
}
