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
