import type { Db } from "../platform/database.ts";
import { describeWait, DomainError, TooManyAttemptsError } from "../platform/errors.ts";
import {
  destroySessionsOf,
  forgetSignIn,
  guardedGuess,
  hashPassword,
  loginPasswordProblem,
  proveSignIn,
  signInGuard,
  signInWaitMessage,
  temporaryPassword,
  verifyPassword,
} from "../security/mod.ts";
import { writeAudit } from "./audit.ts";
import type { CurrentStaff } from "../platform/http.ts";
import { ALL_ROLES, type Role, ROLES } from "./roles.ts";
import "./tables.ts";

/** Wrong old passwords on 修改密码: 5 per staff member in 15 minutes. */
const OLD_PASSWORD_BUDGET = { limit: 5, windowSeconds: 900, resetOnSuccess: true };

/** The sign-in budget key of a staff username. */
function staffLoginKey(username: string): string {
  return `staff-login:user:${username.toLowerCase()}`;
}

// A fixed Argon2id hash so unknown usernames cost the same time as known ones.
let dummyHash: Promise<string> | null = null;

/**
 * Checks a staff username and password under the sign-in rule (security's SIGN_IN_RULE): a
 * stranger's wrong guesses slow their own address, not the member signing in from theirs.
 */
export async function authenticateStaff(
  db: Db,
  username: string,
  password: string,
  from: { ip: string; device: string },
): Promise<CurrentStaff> {
  const { ip, device } = from;
  const source = { nameKey: staffLoginKey(username), ip, device };
  const guard = await signInGuard(db, { ...source, addressKey: `staff-login:ip:${ip}` });
  const row = await db.selectFrom("staff").selectAll().where("username", "=", username)
    .executeTakeFirst();
  dummyHash ??= hashPassword("dummy-password-1");
  const outcome = await guardedGuess(db, guard, async () => {
    const ok = await verifyPassword(row?.password_hash ?? (await dummyHash!), password);
    return ok && row !== undefined && !row.disabled;
  });
  if (!outcome.ok) {
    if (outcome.retryAfter > 0) {
      throw new TooManyAttemptsError(
        guard.budgetKey,
        outcome.retryAfter,
        signInWaitMessage(outcome.retryAfter),
      );
    }
    throw new DomainError("Wrong staff credentials", "用户名或密码错误", "password");
  }
  await proveSignIn(db, source);
  return toCurrent(row!);
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

/** Who these staff members are (those that exist), by id: names beside another module's list. */
export async function staffByIds(
  db: Db,
  ids: Iterable<number | null>,
): Promise<Map<number, { username: string; name: string }>> {
  const wanted = [...new Set([...ids].filter((id): id is number => typeof id === "number"))];
  if (wanted.length === 0) return new Map();
  const rows = await db.selectFrom("staff").select(["id", "username", "name"])
    .where("id", "in", wanted).execute();
  return new Map(rows.map((r) => [r.id, { username: r.username, name: r.name }]));
}

/** Whether any staff account exists yet (the demo seeds an empty database only). */
export async function hasStaff(db: Db): Promise<boolean> {
  return !!(await db.selectFrom("staff").select("id").limit(1).executeTakeFirst());
}

/**
 * Creates a staff account; the username must be new and the roles known: departments, or
 * 商户经营者 alone (whose merchant the caller records with it, in the same transaction).
 */
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
  const operator = input.roles.length === 1 && input.roles[0] === ROLES.merchantOperator;
  if (!operator && (input.roles.length === 0 || input.roles.some((r) => !ALL_ROLES.includes(r)))) {
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

/**
 * 员工账号 → 添加: a system administrator adds a member, who must change the initial password at
 * the first sign-in; audited with the actor. `roles` is the form's value (one role or several).
 */
export async function addStaffMember(
  db: Db,
  actor: { staffId: number; ip: string | null },
  input: { username: string; name: string; password: string; roles?: string | string[] },
): Promise<number> {
  const roles = [input.roles ?? []].flat() as Role[];
  // 商户经营者 is given on its merchant's page, with the merchant; never here.
  if (roles.some((r) => !ALL_ROLES.includes(r))) {
    throw new DomainError("Bad staff roles", "请至少选择一个有效角色", "roles");
  }
  return await db.transaction().execute(async (trx) => {
    const id = await createStaff(trx, { ...input, roles, mustChangePassword: true });
    await writeAudit(trx, {
      staffId: actor.staffId,
      action: "staff.created",
      targetType: "staff",
      targetId: id,
      after: { username: input.username, name: input.name, roles },
      ip: actor.ip,
    });
    return id;
  });
}

/**
 * Changes a staff member's own password: the old one must be right (5 wrong in 15 minutes wait),
 * the new one differ from it; every other session of the member ends.
 */
export async function changeStaffPassword(
  db: Db,
  input: {
    staffId: number;
    oldPassword: string;
    newPassword: string;
    keepSessionId: string | null;
    /** Where the change came from, for the audit log. */
    ip: string | null;
  },
): Promise<void> {
  const row = await db.selectFrom("staff").select("password_hash").where("id", "=", input.staffId)
    .executeTakeFirstOrThrow();
  const outcome = await guardedGuess(
    db,
    { budgets: [{ key: `staff-password-change:${input.staffId}`, ...OLD_PASSWORD_BUDGET }] },
    () => verifyPassword(row.password_hash, input.oldPassword),
  );
  if (!outcome.ok) {
    if (outcome.retryAfter > 0) {
      throw new TooManyAttemptsError(
        `staff-password-change:${input.staffId}`,
        outcome.retryAfter,
        `原密码错误次数过多，请${describeWait(outcome.retryAfter)}后再试`,
      );
    }
    throw new DomainError(
      "Wrong old staff password",
      `原密码错误，还可尝试${outcome.remaining}次`,
      "old_password",
    );
  }
  const problem = loginPasswordProblem(input.newPassword);
  if (problem) throw new DomainError("Weak staff password", problem, "new_password");
  if (input.newPassword === input.oldPassword) {
    throw new DomainError("Same staff password", "新密码不能与原密码相同", "new_password");
  }
  const hash = await hashPassword(input.newPassword);
  await db.transaction().execute(async (trx) => {
    await trx.updateTable("staff").set({ password_hash: hash, must_change_password: false })
      .where("id", "=", input.staffId).execute();
    await destroySessionsOf(trx, "staff", input.staffId, input.keepSessionId);
    await writeAudit(trx, {
      staffId: input.staffId,
      action: "staff.password_changed",
      targetType: "staff",
      targetId: input.staffId,
      after: { otherSessionsEnded: true },
      ip: input.ip,
    });
  });
}

/**
 * A system administrator resets another member's password: a temporary password (returned once,
 * stored only hashed) that must be changed at the next sign-in; every session of the member ends,
 * and the throttles and proofs of the username are forgotten; audited.
 */
export async function resetStaffPassword(
  db: Db,
  input: { staffId: number; actorId: number; ip: string },
): Promise<{ username: string; temp: string }> {
  if (input.staffId === input.actorId) {
    throw new DomainError("Cannot reset own password", "请在“修改密码”中修改自己的密码");
  }
  const temp = temporaryPassword();
  const hash = await hashPassword(temp);
  return await db.transaction().execute(async (trx) => {
    const before = await trx.selectFrom("staff").select(["username", "must_change_password"])
      .where("id", "=", input.staffId).forUpdate().executeTakeFirst();
    if (!before) throw new DomainError("No such staff", "员工不存在");
    await trx.updateTable("staff").set({ password_hash: hash, must_change_password: true })
      .where("id", "=", input.staffId).execute();
    await destroySessionsOf(trx, "staff", input.staffId);
    await forgetSignIn(trx, staffLoginKey(before.username));
    await writeAudit(trx, {
      staffId: input.actorId,
      action: "staff.password_reset",
      targetType: "staff",
      targetId: input.staffId,
      before: { username: before.username, mustChangePassword: before.must_change_password },
      after: { username: before.username, mustChangePassword: true, sessionsEnded: true },
      ip: input.ip,
    });
    return { username: before.username, temp };
  });
}
