import type { Db } from "../platform/database.ts";
import { DomainError, TooManyAttemptsError } from "../platform/errors.ts";
import {
  assertNotLocked,
  clearThrottle,
  hashPassword,
  loginPasswordProblem,
  recordEvent,
  verifyPassword,
} from "../security/mod.ts";
import type { CurrentStaff } from "../platform/http.ts";
import { ALL_ROLES, type Role } from "./roles.ts";
import "./tables.ts";

/** Staff sign-in locks a username after 5 wrong passwords for 15 minutes, and an address after 20. */
const STAFF_USER_RULE = { limit: 5, windowSeconds: 900, lockSeconds: 900 };
const STAFF_IP_RULE = { limit: 20, windowSeconds: 900, lockSeconds: 900 };

// A fixed Argon2id hash so unknown usernames cost the same time as known ones.
let dummyHash: Promise<string> | null = null;

/** Checks a staff username and password; throttled per username and per address. */
export async function authenticateStaff(
  db: Db,
  username: string,
  password: string,
  ip: string,
): Promise<CurrentStaff> {
  const userKey = `staff-login:user:${username.toLowerCase()}`;
  const ipKey = `staff-login:ip:${ip}`;
  const lockMessage = (w: number) => `登录失败次数过多，请${Math.ceil(w / 60)}分钟后再试`;
  await assertNotLocked(db, userKey, lockMessage);
  await assertNotLocked(db, ipKey, lockMessage);
  const row = await db.selectFrom("staff").selectAll().where("username", "=", username)
    .executeTakeFirst();
  dummyHash ??= hashPassword("dummy-password-1");
  const ok = await verifyPassword(row?.password_hash ?? (await dummyHash), password);
  if (!row || !ok || row.disabled) {
    const u = await recordEvent(db, userKey, STAFF_USER_RULE);
    const i = await recordEvent(db, ipKey, STAFF_IP_RULE);
    const wait = Math.max(u.lockedFor, i.lockedFor);
    if (wait > 0) throw new TooManyAttemptsError(userKey, wait, lockMessage(wait));
    throw new DomainError("Wrong staff credentials", "用户名或密码错误", "password");
  }
  await clearThrottle(db, userKey);
  return toCurrent(row);
}

function toCurrent(
  row: {
    id: number;
    username: string;
    name: string;
    roles: string[];
    must_change_password: boolean;
  },
): CurrentStaff {
  return {
    id: row.id,
    username: row.username,
    name: row.name,
    roles: row.roles,
    mustChangePassword: row.must_change_password,
  };
}

/** The staff member behind a session, or null when missing or disabled. */
export async function findActiveStaff(db: Db, id: number): Promise<CurrentStaff | null> {
  const row = await db.selectFrom("staff")
    .select(["id", "username", "name", "roles", "must_change_password"])
    .where("id", "=", id).where("disabled", "=", false).executeTakeFirst();
  return row ? toCurrent(row) : null;
}

/** Creates a staff account; the username must be new and the roles known. */
export async function createStaff(
  db: Db,
  input: {
    username: string;
    name: string;
    password: string;
    roles: Role[];
    mustChangePassword?: boolean;
  },
): Promise<number> {
  if (!/^[a-z][a-z0-9_.-]{2,31}$/.test(input.username)) {
    throw new DomainError(
      "Bad staff username",
      "用户名需为3-32位小写字母、数字或 _ . -，以字母开头",
      "username",
    );
  }
  const problem = loginPasswordProblem(input.password);
  if (problem) throw new DomainError("Weak staff password", problem, "password");
  if (input.roles.length === 0 || input.roles.some((r) => !ALL_ROLES.includes(r))) {
    throw new DomainError("Bad staff roles", "请至少选择一个有效角色", "roles");
  }
  const exists = await db.selectFrom("staff").select("id").where("username", "=", input.username)
    .executeTakeFirst();
  if (exists) throw new DomainError("Staff username taken", "该用户名已存在", "username");
  const row = await db.insertInto("staff").values({
    username: input.username,
    name: input.name,
    password_hash: await hashPassword(input.password),
    roles: input.roles,
    must_change_password: input.mustChangePassword ?? false,
  }).returning("id").executeTakeFirstOrThrow();
  return row.id;
}

/** Changes a staff member's own password. */
export async function changeStaffPassword(
  db: Db,
  staffId: number,
  oldPassword: string,
  newPassword: string,
): Promise<void> {
  const row = await db.selectFrom("staff").select("password_hash").where("id", "=", staffId)
    .executeTakeFirstOrThrow();
  if (!(await verifyPassword(row.password_hash, oldPassword))) {
    throw new DomainError("Wrong old staff password", "原密码错误", "old_password");
  }
  const problem = loginPasswordProblem(newPassword);
  if (problem) throw new DomainError("Weak staff password", problem, "new_password");
  await db.updateTable("staff").set({
    password_hash: await hashPassword(newPassword),
    must_change_password: false,
  }).where("id", "=", staffId).execute();
}
