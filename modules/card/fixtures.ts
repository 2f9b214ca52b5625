/** Card accounts for seeding and for other modules' tests, built through the real rules. */
import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { ensureSchool, findAccountByPhone } from "../account/mod.ts";
import { CardError } from "./errors.ts";
import { type CardDeps, defaultPasswordCheck, idNumberHash } from "./passwords.ts";
import { insertCardEvents } from "./repository.ts";
import {
  defaultCardPassword,
  maskIdNumber,
  parseChipNumber,
  parseIdNumber,
  parseName,
  parseStudentNumber,
} from "./rules.ts";

/** The demo school (云南城市建设职业学院). */
export const DEMO_SCHOOL = { name: "云南城市建设职业学院", code: "YNCJ" };

/** What a new card account is made of. */
export interface NewCardAccount {
  /** Defaults to the demo school. */
  schoolId?: number;
  studentNumber: string;
  /** 18 characters with a valid check character. */
  idNumber: string;
  /** The first chip; omit for a card account without a chip yet. */
  chipNumber?: string | null;
  name?: string;
  kind?: "student" | "staff";
  /** Its 卡类别; by default the first type of its kind. */
  cardTypeId?: number;
}

/**
 * Creates a card account (default card password = last 6 of the 身份证) with its first chip.
 * For seeding and tests; the card office imports through the CSV import instead.
 */
export async function createCardAccountForTest(
  db: Db,
  deps: CardDeps,
  input: NewCardAccount,
): Promise<
  { cardAccountId: number; schoolId: number; chipNumber: string | null; defaultPassword: string }
> {
  const studentNumber = parseStudentNumber(input.studentNumber);
  const idNumber = parseIdNumber(input.idNumber);
  const name = parseName(input.name ?? "测试学生");
  const chipNumber = input.chipNumber ? parseChipNumber(input.chipNumber) : null;
  if (!studentNumber || !idNumber || !name || (input.chipNumber && !chipNumber)) {
    throw new CardError("Bad test card account", "测试一卡通数据格式不正确");
  }
  const schoolId = input.schoolId ??
    (await ensureSchool(db, DEMO_SCHOOL.name, DEMO_SCHOOL.code)).id;
  const idHash = await idNumberHash(deps, idNumber);
  const check = await defaultPasswordCheck(deps, idHash, defaultCardPassword(idNumber));
  const id = await db.transaction().execute(async (trx) => {
    const row = await trx.insertInto("card_accounts").values({
      school_id: schoolId,
      student_number: studentNumber,
      name,
      kind: input.kind ?? "student",
      card_type_id: input.cardTypeId ??
        sql<number>`(select min(id) from card_types where kind = ${input.kind ?? "student"})`,
      id_number_hash: idHash,
      id_number_masked: maskIdNumber(idNumber),
      default_password_check: check,
      password_hash: null,
      loss_reported_at: null,
      account_id: null,
      bound_at: null,
    }).returning("id").executeTakeFirstOrThrow();
    if (chipNumber) {
      await trx.insertInto("card_chips").values({
        card_account_id: row.id,
        chip_number: chipNumber,
        status: "active",
        lost_at: null,
        cancelled_at: null,
      }).execute();
    }
    await insertCardEvents(trx, [{
      cardAccountId: row.id,
      kind: "created",
      actor: "system",
      chipNumber,
    }]);
    return row.id;
  });
  return {
    cardAccountId: id,
    schoolId,
    chipNumber,
    defaultPassword: defaultCardPassword(idNumber),
  };
}

/** Binds a card account to a login account directly (tests and seeding; no password check). */
export async function bindCardForTest(
  db: Db,
  cardAccountId: number,
  accountId: number,
): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await trx.updateTable("card_accounts").set({ account_id: accountId, bound_at: new Date() })
      .where("id", "=", cardAccountId).execute();
    await insertCardEvents(trx, [{ cardAccountId, kind: "bound", actor: "system", accountId }]);
  });
}

/**
 * Demo cardholders at 云南城市建设职业学院. Their 身份证 numbers are made up but valid (check
 * character included); the default card password is the last 6 characters.
 */
export const DEMO_CARDHOLDERS = [
  {
    studentNumber: "2024010001",
    name: "张三",
    idNumber: "53010220050315123X",
    chipNumber: "3158642907",
  },
  {
    studentNumber: "2024010002",
    name: "李四",
    idNumber: "530102200601204526",
    chipNumber: "3158642908",
  },
  {
    studentNumber: "2024010003",
    name: "王芳",
    idNumber: "530111200511093021",
    chipNumber: "3158642909",
  },
  {
    studentNumber: "T2019008",
    name: "赵老师",
    idNumber: "530103198507216615",
    chipNumber: "3158600001",
    kind: "staff",
  },
] as const;

/** The demo login account the first demo cardholder is bound to, when the account module seeded it. */
export const DEMO_BOUND_PHONE = "13800000001";

/**
 * Seeds the demo cardholders once (skips when the first already exists) and binds 张三 to the
 * demo login account 13800000001 if that account exists. Returns how many it created.
 */
export async function seedDemoCards(db: Db, deps: CardDeps): Promise<number> {
  const school = await ensureSchool(db, DEMO_SCHOOL.name, DEMO_SCHOOL.code);
  const exists = await db.selectFrom("card_accounts").select("id")
    .where("school_id", "=", school.id).where(
      "student_number",
      "=",
      DEMO_CARDHOLDERS[0].studentNumber,
    )
    .executeTakeFirst();
  if (exists) return 0;
  const ids: number[] = [];
  for (const h of DEMO_CARDHOLDERS) {
    const kind = "kind" in h ? h.kind : "student";
    ids.push(
      (await createCardAccountForTest(db, deps, { ...h, kind, schoolId: school.id })).cardAccountId,
    );
  }
  const demo = await findAccountByPhone(db, DEMO_BOUND_PHONE);
  if (demo && demo.schoolId === school.id) {
    const taken = await db.selectFrom("card_accounts").select("id").where(
      "account_id",
      "=",
      demo.id,
    )
      .executeTakeFirst();
    if (!taken) await bindCardForTest(db, ids[0], demo.id);
  }
  return ids.length;
}
