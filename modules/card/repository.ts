import { type RawBuilder, sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { escapeLike, staffByIds } from "../staff/mod.ts";
import { listSchools } from "../account/mod.ts";
import type { CardEventActor, CardStatus, ChipStatus } from "./tables.ts";
import "./tables.ts";

/** The bound card of a login account, as other modules see it. */
export interface BoundCard {
  cardAccountId: number;
  schoolId: number;
  studentNumber: string;
  name: string;
  status: CardStatus;
  /** The chip readers accept (or would, once the loss is lifted); null when none is issued. */
  activeChipNumber: string | null;
  /** True while the default card password (last 6 of the 身份证) is in effect. */
  passwordIsDefault: boolean;
  /** The holder chose to freeze the payment code along with the loss report. */
  paymentCodeFrozen: boolean;
}

/** A chip as a reader sees it. */
export interface ChipCard {
  cardAccountId: number;
  chipStatus: ChipStatus;
  cardStatus: CardStatus;
  name: string;
  studentNumber: string;
}

/** The card account bound to a login account, or null. */
export async function findBoundCard(db: Db, accountId: number): Promise<BoundCard | null> {
  if (!Number.isSafeInteger(accountId) || accountId <= 0) return null;
  const row = await db.selectFrom("card_accounts")
    .leftJoin("card_chips", (j) =>
      j.onRef("card_chips.card_account_id", "=", "card_accounts.id")
        .on("card_chips.status", "<>", "cancelled"))
    .select([
      "card_accounts.id",
      "card_accounts.school_id",
      "card_accounts.student_number",
      "card_accounts.name",
      "card_accounts.status",
      "card_accounts.password_hash",
      "card_accounts.payment_code_frozen",
      "card_chips.chip_number",
    ])
    .where("card_accounts.account_id", "=", accountId).executeTakeFirst();
  if (!row) return null;
  return {
    cardAccountId: row.id,
    schoolId: row.school_id,
    studentNumber: row.student_number,
    name: row.name,
    status: row.status,
    activeChipNumber: row.chip_number ?? null,
    passwordIsDefault: row.password_hash === null,
    paymentCodeFrozen: row.payment_code_frozen,
  };
}

/** The card account a chip number belongs to, with both statuses, or null. */
export async function findCardByChip(db: Db, chipNumber: string): Promise<ChipCard | null> {
  if (typeof chipNumber !== "string" || chipNumber.length === 0 || chipNumber.length > 20) {
    return null;
  }
  const row = await db.selectFrom("card_chips")
    .innerJoin("card_accounts", "card_accounts.id", "card_chips.card_account_id")
    .select([
      "card_accounts.id",
      "card_chips.status as chip_status",
      "card_accounts.status as card_status",
      "card_accounts.name",
      "card_accounts.student_number",
    ])
    .where("card_chips.chip_number", "=", chipNumber.toUpperCase()).executeTakeFirst();
  if (!row) return null;
  return {
    cardAccountId: row.id,
    chipStatus: row.chip_status,
    cardStatus: row.card_status,
    name: row.name,
    studentNumber: row.student_number,
  };
}

/**
 * SQL for the card account id of a chip that may pay now (chip active, card account normal), or
 * NULL: for a statement that looks the chip up and moves money in one round trip. A NULL says
 * nothing about why; `findCardByChip` tells the reader.
 */
export function payableChipSql(chipNumber: string): RawBuilder<number | null> {
  return payableChipOfSql(sql<string>`${payableChipKey(chipNumber)}`);
}

/**
 * `payableChipSql` for a chip number that is itself SQL (a column of many payments in one
 * statement), already normalised by `payableChipKey`.
 */
export function payableChipOfSql(chip: RawBuilder<string>): RawBuilder<number | null> {
  return sql<number | null>`(select ca.id from card_chips cc
    join card_accounts ca on ca.id = cc.card_account_id
    where cc.chip_number = ${chip} and cc.status = 'active' and ca.status = 'normal')`;
}

/**
 * SQL, true when the card account froze its payment code together with a loss report (挂失): for
 * the wallet's statement that redeems a code, so a frozen code is refused in the statement that
 * would move the money (a hot-path exception, modules/walls_sql_test.ts).
 */
export function paymentCodeFrozenSql(cardAccountId: RawBuilder<number>): RawBuilder<boolean> {
  return sql<boolean>`exists (select 1 from card_accounts fz
    where fz.id = ${cardAccountId} and fz.payment_code_frozen)`;
}

/** A chip number as stored (upper case); "" (no chip) for anything that cannot be one. */
export function payableChipKey(chipNumber: string): string {
  return typeof chipNumber === "string" && chipNumber.length > 0 && chipNumber.length <= 20
    ? chipNumber.toUpperCase()
    : "";
}

/** Every column of a card account, locked for update when `lock` (inside a transaction). */
export async function loadCardAccount(db: Db, id: number, lock = false) {
  let q = db.selectFrom("card_accounts").selectAll().where("id", "=", id);
  if (lock) q = q.forUpdate();
  return await q.executeTakeFirst() ?? null;
}

/** A card account by school and 学号. */
export async function loadCardByStudentNumber(db: Db, schoolId: number, studentNumber: string) {
  return await db.selectFrom("card_accounts").selectAll()
    .where("school_id", "=", schoolId).where("student_number", "=", studentNumber)
    .executeTakeFirst() ?? null;
}

/** The chips of a card account, newest first. */
export async function listChips(db: Db, cardAccountId: number) {
  return await db.selectFrom("card_chips").selectAll().where("card_account_id", "=", cardAccountId)
    .orderBy("id", "desc").execute();
}

/** The card account's events, newest first. */
export async function listCardEvents(db: Db, cardAccountId: number, limit = 200) {
  const rows = await db.selectFrom("card_events")
    .select(["id", "at", "kind", "actor", "chip_number", "details", "account_id", "staff_id"])
    .where("card_account_id", "=", cardAccountId)
    .orderBy("id", "desc").limit(limit).execute();
  const staff = await staffByIds(db, rows.map((r) => r.staff_id));
  return rows.map(({ staff_id, ...r }) => ({
    ...r,
    staff_username: staff_id === null ? null : staff.get(staff_id)?.username ?? null,
  }));
}

/** One entry of a card account's history. */
export interface CardEventInput {
  cardAccountId: number;
  kind: string;
  actor: CardEventActor;
  staffId?: number | null;
  accountId?: number | null;
  chipNumber?: string | null;
  details?: unknown;
}

/** Appends entries to card accounts' histories. */
export async function insertCardEvents(db: Db, events: CardEventInput[]): Promise<void> {
  for (let i = 0; i < events.length; i += 1000) {
    await db.insertInto("card_events").values(
      events.slice(i, i + 1000).map((e) => ({
        card_account_id: e.cardAccountId,
        kind: e.kind,
        actor: e.actor,
        staff_id: e.staffId ?? null,
        account_id: e.accountId ?? null,
        chip_number: e.chipNumber ?? null,
        details: e.details === undefined ? null : JSON.stringify(e.details),
      })),
    ).execute();
  }
}

/** A row of the card office's search results. */
export interface CardSearchRow {
  id: number;
  school_name: string;
  student_number: string;
  name: string;
  kind: string;
  /** Its 卡类别's name. */
  card_type: string;
  status: CardStatus;
  account_id: number | null;
  chip_number: string | null;
}

/**
 * Card accounts matching a 学号 (exact or prefix), a name (substring), a chip number (any chip,
 * current or old), or the given card account ids (found by phone): a page of them in 学号 order
 * (all of them up to `limit` without a page), and how many match.
 */
export async function searchCards(
  db: Db,
  text: string,
  ids: number[] = [],
  page: { offset: number; perPage: number } = { offset: 0, perPage: 50 },
): Promise<{ rows: CardSearchRow[]; total: number }> {
  const upper = text.toUpperCase();
  const like = `%${escapeLike(text)}%`;
  const prefix = `${escapeLike(upper)}%`;
  const matching = db.selectFrom("card_accounts")
    .where((eb) =>
      eb.or([
        eb("card_accounts.student_number", "like", prefix),
        eb("card_accounts.name", "like", like),
        eb(
          "card_accounts.id",
          "in",
          sql<number>`(select card_account_id from card_chips where chip_number = ${upper})`,
        ),
        ...(ids.length ? [eb("card_accounts.id", "in", ids)] : []),
      ])
    );
  const [{ n }, rows] = await Promise.all([
    matching.select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow(),
    matching
      .leftJoin("card_chips", (j) =>
        j.onRef("card_chips.card_account_id", "=", "card_accounts.id")
          .on("card_chips.status", "<>", "cancelled"))
      .innerJoin("card_types", "card_types.id", "card_accounts.card_type_id")
      .select([
        "card_accounts.id",
        "card_accounts.school_id",
        "card_accounts.student_number",
        "card_accounts.name",
        "card_accounts.kind",
        "card_types.name as card_type",
        "card_accounts.status",
        "card_accounts.account_id",
        "card_chips.chip_number",
      ])
      .orderBy("card_accounts.student_number").orderBy("card_accounts.id")
      .limit(page.perPage).offset(page.offset).execute(),
  ]);
  const schools = new Map((await listSchools(db)).map((school) => [school.id, school.name]));
  return {
    rows: rows.flatMap(({ school_id, ...r }) =>
      schools.has(school_id) ? [{ ...r, school_name: schools.get(school_id)! }] : []
    ),
    total: Number(n),
  };
}

/** The holders of these card accounts (those that exist), by id: 学号 and name beside a list. */
export async function cardHoldersByIds(
  db: Db,
  ids: Iterable<number | null>,
): Promise<Map<number, { studentNumber: string; name: string }>> {
  const wanted = [...new Set([...ids].filter((id): id is number => typeof id === "number"))];
  if (wanted.length === 0) return new Map();
  const rows = await db.selectFrom("card_accounts").select(["id", "student_number", "name"])
    .where("id", "in", wanted).execute();
  return new Map(rows.map((r) => [r.id, { studentNumber: r.student_number, name: r.name }]));
}

/** Card accounts with a 学号, in any school (several schools may share one deployment). */
export async function findCardsByStudentNumber(
  db: Db,
  studentNumber: string,
): Promise<Array<{ id: number; student_number: string; name: string; school_id: number }>> {
  const s = studentNumber.trim().toUpperCase();
  if (!/^[0-9A-Z]{4,20}$/.test(s)) return [];
  return await db.selectFrom("card_accounts").select(["id", "student_number", "name", "school_id"])
    .where("student_number", "=", s).execute();
}

/** Card events after which no phone that paid for the card before may pay again. */
const PHONES_UNTRUSTED_BY = ["loss_reported", "unbound"];

/**
 * A card account as other modules' staff pages show it, or null. `lastLossOrUnbindAt` is the
 * latest 挂失 or 解绑 of the card (its events, so 解挂 does not undo it): the wallet's offline
 * payment devices added before it never pay again.
 */
export async function findCardAccount(db: Db, id: number) {
  if (!Number.isSafeInteger(id) || id <= 0) return null;
  const row = await db.selectFrom("card_accounts")
    .select(["id", "student_number", "name", "status", "account_id", "payment_code_frozen"])
    .select((eb) =>
      eb.selectFrom("card_events").select((e) => e.fn.max("at").as("at"))
        .whereRef("card_events.card_account_id", "=", "card_accounts.id")
        .where("kind", "in", PHONES_UNTRUSTED_BY).as("last_loss_or_unbind_at")
    )
    .where("id", "=", id).executeTakeFirst();
  return row
    ? {
      id: row.id,
      studentNumber: row.student_number,
      name: row.name,
      status: row.status,
      bound: row.account_id !== null,
      paymentCodeFrozen: row.payment_code_frozen,
      lastLossOrUnbindAt: row.last_loss_or_unbind_at ?? null,
    }
    : null;
}
