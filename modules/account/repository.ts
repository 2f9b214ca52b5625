import type { Db } from "../platform/database.ts";
import "./tables.ts";

/** A login account as other modules see it. */
export interface Account {
  id: number;
  phone: string;
  schoolId: number;
  schoolName: string;
  email: string | null;
  mustChangePassword: boolean;
}

/** A school accounts can belong to. */
export interface School {
  id: number;
  name: string;
  code: string;
}

function accountQuery(db: Db) {
  return db.selectFrom("accounts")
    .innerJoin("schools", "schools.id", "accounts.school_id")
    .select([
      "accounts.id",
      "accounts.phone",
      "accounts.school_id as schoolId",
      "schools.name as schoolName",
      "accounts.email",
      "accounts.must_change_password as mustChangePassword",
    ]);
}

/** One account by id, or null. */
export async function findAccount(db: Db, id: number): Promise<Account | null> {
  if (!Number.isSafeInteger(id) || id <= 0) return null;
  return (await accountQuery(db).where("accounts.id", "=", id).executeTakeFirst()) ?? null;
}

/** One account by its phone number (exact, 11 digits), or null. */
export async function findAccountByPhone(db: Db, phone: string): Promise<Account | null> {
  return (await accountQuery(db).where("accounts.phone", "=", phone).executeTakeFirst()) ?? null;
}

/** Every school, by name. */
export async function listSchools(db: Db): Promise<School[]> {
  return await db.selectFrom("schools").select(["id", "name", "code"]).orderBy("name").execute();
}

/** One school by id, or null. */
export async function findSchool(db: Db, id: number): Promise<School | null> {
  if (!Number.isSafeInteger(id) || id <= 0) return null;
  return (await db.selectFrom("schools").select(["id", "name", "code"]).where("id", "=", id)
    .executeTakeFirst()) ?? null;
}

/** The school of that name, created with `code` when missing (seeding, imports). */
export async function ensureSchool(db: Db, name: string, code: string): Promise<School> {
  await db.insertInto("schools").values({ name, code })
    .onConflict((oc) => oc.column("name").doNothing()).execute();
  return await db.selectFrom("schools").select(["id", "name", "code"]).where("name", "=", name)
    .executeTakeFirstOrThrow();
}

/** An account as staff see it on its detail page. */
export interface AccountDetail extends Account {
  emailVerifiedAt: Date | null;
  createdAt: Date;
  passwordChangedAt: Date;
}

/**
 * Accounts whose phone contains `digits`, by phone: the page `page` picks from their count (the
 * last when past the end), and how many there are.
 */
export async function searchAccounts(
  db: Db,
  digits: string,
  page: (total: number) => { offset: number; perPage: number },
): Promise<
  {
    rows: Array<Account & { createdAt: Date }>;
    total: number;
    page: { offset: number; perPage: number };
  }
> {
  const like = `%${digits}%`;
  const { n } = await db.selectFrom("accounts").where("phone", "like", like)
    .select((eb) => eb.fn.countAll<number>().as("n")).executeTakeFirstOrThrow();
  const total = Number(n);
  const p = page(total);
  const rows = await accountQuery(db).select("accounts.created_at as createdAt")
    .where("accounts.phone", "like", like)
    .orderBy("accounts.phone").limit(p.perPage).offset(p.offset).execute();
  return { rows, total, page: p };
}

/** One account with its timestamps, or null. */
export async function findAccountDetail(db: Db, id: number): Promise<AccountDetail | null> {
  if (!Number.isSafeInteger(id) || id <= 0) return null;
  return (await accountQuery(db).select([
    "accounts.email_verified_at as emailVerifiedAt",
    "accounts.created_at as createdAt",
    "accounts.password_changed_at as passwordChangedAt",
  ]).where("accounts.id", "=", id).executeTakeFirst()) ?? null;
}
