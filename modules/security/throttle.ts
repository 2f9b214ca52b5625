import { sql } from "kysely";
import type { Db } from "../platform/database.ts";
import { describeWait, TooManyAttemptsError } from "../platform/errors.ts";
import { sha256Hex } from "../platform/crypto.ts";
import "./tables.ts";

/** How many events a key may have in a window, and how long it stays locked after that. */
export interface ThrottleRule {
  limit: number;
  windowSeconds: number;
  /** Lock time once the limit is reached; defaults to the rest of the window. */
  lockSeconds?: number;
}

/** Seconds until `key` may try again, or 0 when it is not locked. */
export async function lockedFor(db: Db, key: string): Promise<number> {
  const row = await db.selectFrom("throttles").select("locked_until").where("key", "=", key)
    .executeTakeFirst();
  if (!row?.locked_until) return 0;
  const ms = row.locked_until.getTime() - Date.now();
  return ms > 0 ? Math.ceil(ms / 1000) : 0;
}

/** Throws TooManyAttemptsError (with the wait in its message) while `key` is locked. */
export async function assertNotLocked(db: Db, key: string, userMessage?: (wait: number) => string) {
  const wait = await lockedFor(db, key);
  if (wait > 0) throw new TooManyAttemptsError(key, wait, userMessage?.(wait));
}

/**
 * Counts one event (a failure, a send) against `key` atomically. Returns how many remain in the
 * window and, when this event reached the limit, how long the key is now locked.
 */
export async function recordEvent(
  db: Db,
  key: string,
  rule: ThrottleRule,
): Promise<{ count: number; remaining: number; lockedFor: number }> {
  const window = `${rule.windowSeconds} seconds`;
  const lock = `${rule.lockSeconds ?? rule.windowSeconds} seconds`;
  const row = await sql<{ count: number; locked_until: Date | null }>`
    insert into throttles (key, count, window_started_at, locked_until)
    values (${key}, 1, now(), case when 1 >= ${rule.limit}::int then now() + ${lock}::interval end)
    on conflict (key) do update set
      count = case when throttles.window_started_at < now() - ${window}::interval
                     and (throttles.locked_until is null or throttles.locked_until < now())
                   then 1 else throttles.count + 1 end,
      window_started_at = case when throttles.window_started_at < now() - ${window}::interval
                     and (throttles.locked_until is null or throttles.locked_until < now())
                   then now() else throttles.window_started_at end,
      locked_until = case
        when (case when throttles.window_started_at < now() - ${window}::interval
                     and (throttles.locked_until is null or throttles.locked_until < now())
                   then 1 else throttles.count + 1 end) >= ${rule.limit}::int
          then greatest(coalesce(throttles.locked_until, now()), now() + ${lock}::interval)
        else throttles.locked_until end
    returning count, locked_until`.execute(db);
  const r = row.rows[0];
  const locked = r.locked_until
    ? Math.max(0, Math.ceil((r.locked_until.getTime() - Date.now()) / 1000))
    : 0;
  return { count: r.count, remaining: Math.max(0, rule.limit - r.count), lockedFor: locked };
}

/** Forgets the events of `key` (after a success, or when staff unlock it). */
export async function clearThrottle(db: Db, key: string): Promise<void> {
  await db.deleteFrom("throttles").where("key", "=", key).execute();
}

// ---- Guessing a secret: the lockout rule (README "Security") ----
//
// A secret (a phone's login password, a card password, a staff member's password) has a budget of
// wrong guesses per window from all sources together; once it is spent, further guesses are
// refused unchecked until the window ends. A source where the owner proved themselves (the browser
// they signed in with lately, the 身份证 at a bind) has a larger budget that strangers cannot spend
// for them; an address the owner signed in from lately (which strangers behind the same NAT share)
// has one in between. The sources of guesses (an address, a name+address, the login account
// trying) are slowed, never locked for long: past `free` failures each failure makes the source
// wait, doubling up to a cap; a proven source is not slowed.

/** At most `limit` wrong guesses at one secret per window, from all sources together. */
export interface GuessBudget {
  key: string;
  limit: number;
  windowSeconds: number;
  /** The budget of a proven source (it counts the same guesses); defaults to `limit`. */
  provenLimit?: number;
  /** The budget of a source proven by its address only; defaults to `limit`. */
  addressLimit?: number;
  /** A right guess forgets the count (a holder's card checks: so many wrong in a row). */
  resetOnSuccess?: boolean;
}

/** After `free` failures in the window, each failure makes the source wait, doubling to a cap. */
export interface Slowdown {
  key: string;
  free: number;
  windowSeconds: number;
  firstDelaySeconds: number;
  maxDelaySeconds: number;
  /** A right guess forgets the count (a phone+address pair; not an address shared by many). */
  resetOnSuccess?: boolean;
}

/** The throttles one guess passes. */
export interface GuessGuard {
  budgets: GuessBudget[];
  slowdowns?: Slowdown[];
  /** The owner proved themselves from this source: not slowed, and the proven budgets apply. */
  proven?: boolean;
  /** The owner signed in from this address lately: still slowed, the address budgets apply. */
  provenAddress?: boolean;
}

/** How many guesses at this budget the guard's source may reach. */
function tierLimit(guard: GuessGuard, b: GuessBudget): number {
  if (guard.proven) return b.provenLimit ?? b.limit;
  if (guard.provenAddress) return b.addressLimit ?? b.limit;
  return b.limit;
}

/**
 * The outcome of a guarded guess. `evaluated: false`: refused unchecked, by the throttle `by`.
 * A wrong guess tells the tries left before a wait and, when it started one, the wait and `by`.
 */
export type GuessOutcome =
  | { ok: true }
  | { ok: false; evaluated: boolean; remaining: number; retryAfter: number; by: string | null };

function secondsUntil(date: Date | null): number {
  if (!date) return 0;
  const ms = date.getTime() - Date.now();
  return ms > 0 ? Math.ceil(ms / 1000) : 0;
}

/** Takes a place in the budget; null when the budget (at this tier) is spent. */
async function reserve(db: Db, b: GuessBudget, tierLimit: number): Promise<number | null> {
  const window = `${b.windowSeconds} seconds`;
  // locked_until marks "spent for unproven sources", so lockedFor() and staff pages read it.
  const r = await sql<{ count: number }>`
    insert into throttles as t (key, count, window_started_at, locked_until)
    values (${b.key}, 1, now(),
      case when 1 >= ${b.limit}::int then now() + ${window}::interval end)
    on conflict (key) do update set
      count = case when t.window_started_at <= now() - ${window}::interval then 1
                   else t.count + 1 end,
      window_started_at = case when t.window_started_at <= now() - ${window}::interval then now()
                   else t.window_started_at end,
      locked_until = case
        when t.window_started_at <= now() - ${window}::interval
          then case when 1 >= ${b.limit}::int then now() + ${window}::interval end
        when t.count + 1 >= ${b.limit}::int then t.window_started_at + ${window}::interval
        else null end
    where t.window_started_at <= now() - ${window}::interval or t.count < ${tierLimit}::int
    returning count`.execute(db);
  return r.rows[0]?.count ?? null;
}

async function windowLeft(db: Db, b: GuessBudget): Promise<number> {
  const row = await db.selectFrom("throttles").select("window_started_at")
    .where("key", "=", b.key).executeTakeFirst();
  if (!row) return 1;
  return Math.max(
    1,
    secondsUntil(new Date(row.window_started_at.getTime() + b.windowSeconds * 1000)),
  );
}

/** Gives back the place a right guess took. */
async function release(db: Db, b: GuessBudget): Promise<void> {
  if (b.resetOnSuccess) return await clearThrottle(db, b.key);
  await sql`update throttles set count = greatest(count - 1, 0),
      locked_until = case when count - 1 >= ${b.limit}::int then locked_until end
    where key = ${b.key}`.execute(db);
}

/** Counts a failure against a source; returns its count and the wait it now has. */
async function slowDown(db: Db, s: Slowdown): Promise<{ count: number; wait: number }> {
  const window = `${s.windowSeconds} seconds`;
  const expired = sql`(t.window_started_at <= now() - ${window}::interval
    and (t.locked_until is null or t.locked_until <= now()))`;
  const next = sql`(case when ${expired} then 1 else t.count + 1 end)`;
  const delay = (n: typeof next | number) =>
    sql`least(${s.maxDelaySeconds}::int,
      ${s.firstDelaySeconds}::int * power(2, least(${n} - ${s.free}::int, 30)))
      * interval '1 second'`;
  const r = await sql<{ count: number; locked_until: Date | null }>`
    insert into throttles as t (key, count, window_started_at, locked_until)
    values (${s.key}, 1, now(), case when 1 >= ${s.free}::int then now() + ${delay(1)} end)
    on conflict (key) do update set
      count = ${next},
      window_started_at = case when ${expired} then now() else t.window_started_at end,
      locked_until = case when ${next} >= ${s.free}::int then now() + ${delay(next)}
                     else t.locked_until end
    returning count, locked_until`.execute(db);
  return { count: r.rows[0].count, wait: secondsUntil(r.rows[0].locked_until) };
}

/**
 * Checks one guess at a secret under `guard`: refuses it unchecked while a source must wait or a
 * budget is spent; otherwise runs `check` and counts a wrong guess against every budget and
 * source (a right one gives its budget places back and forgets the sources marked so).
 */
export async function guardedGuess(
  db: Db,
  guard: GuessGuard,
  check: () => Promise<boolean>,
): Promise<GuessOutcome> {
  const slowdowns = guard.proven ? [] : guard.slowdowns ?? [];
  for (const s of slowdowns) {
    const wait = await lockedFor(db, s.key);
    if (wait > 0) return { ok: false, evaluated: false, remaining: 0, retryAfter: wait, by: s.key };
  }
  const counts: number[] = [];
  const taken: GuessBudget[] = [];
  for (const b of guard.budgets) {
    const tier = tierLimit(guard, b);
    const count = await reserve(db, b, tier);
    if (count === null) {
      for (const t of taken) await release(db, { ...t, resetOnSuccess: false });
      return {
        ok: false,
        evaluated: false,
        remaining: 0,
        retryAfter: await windowLeft(db, b),
        by: b.key,
      };
    }
    counts.push(tier - count);
    taken.push(b);
  }
  if (await check()) {
    for (const b of taken) await release(db, b);
    for (const s of guard.slowdowns ?? []) if (s.resetOnSuccess) await clearThrottle(db, s.key);
    return { ok: true };
  }
  let retryAfter = 0;
  let by: string | null = null;
  for (const [i, b] of taken.entries()) {
    if (counts[i] <= 0) {
      const left = await windowLeft(db, b);
      if (left > retryAfter) [retryAfter, by] = [left, b.key];
    }
  }
  for (const s of slowdowns) {
    const r = await slowDown(db, s);
    counts.push(s.free - r.count);
    if (r.wait > retryAfter) [retryAfter, by] = [r.wait, s.key];
  }
  const remaining = counts.length ? Math.max(0, Math.min(...counts)) : 0;
  return { ok: false, evaluated: true, remaining, retryAfter, by };
}

/**
 * Counts one event (a code sent) against a tiered budget: refused, with the seconds until the
 * window ends, once the source's tier is spent; 0 when counted.
 */
export async function takeFromBudget(
  db: Db,
  budget: GuessBudget,
  source: Pick<GuessGuard, "proven" | "provenAddress">,
): Promise<number> {
  const guard = { ...source, budgets: [budget] };
  if (await reserve(db, budget, tierLimit(guard, budget)) !== null) return 0;
  return await windowLeft(db, budget);
}

/** How long an owner's proof from a source lasts. */
const PROVEN_DAYS = 30;

/** Records that the owner proved themselves from the source `key` (now). */
export async function rememberProven(db: Db, key: string): Promise<void> {
  await db.insertInto("proven_sources").values({ key })
    .onConflict((oc) => oc.column("key").doUpdateSet({ proven_at: sql`now()` })).execute();
}

/** True when the owner proved themselves from the source `key` within the last 30 days. */
export async function isProven(db: Db, key: string): Promise<boolean> {
  const row = await db.selectFrom("proven_sources").select("key").where("key", "=", key)
    .where("proven_at", ">", sql<Date>`now() - ${`${PROVEN_DAYS} days`}::interval`)
    .executeTakeFirst();
  return row !== undefined;
}

/** Forgets the proofs and throttles whose keys start with `prefix` (a password was reset). */
export async function forgetByPrefix(db: Db, prefix: string): Promise<void> {
  const like = `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
  await db.deleteFrom("proven_sources").where("key", "like", like).execute();
  await db.deleteFrom("throttles").where("key", "like", like).execute();
}

/**
 * The sign-in rule, shared by students (a phone) and staff (a username). Per login name: 10 wrong
 * passwords an hour from all sources; then only an address the name signed in from in the last
 * 30 days may try, up to 15 in all, and a browser the owner signed in with, up to 20 in all (so
 * the owner's browser keeps 5 that strangers behind the owner's NAT cannot spend). Per
 * name+address: 5 free, then waits of 5, 10, 20, 40, 60 minutes. Per address: 50 free in 15
 * minutes over every name, then waits of 2 s doubling to 60 s; an address the name signed in from
 * lately skips this one. The owner's browser is slowed by none.
 */
export const SIGN_IN_RULE = {
  budget: { limit: 10, addressLimit: 15, provenLimit: 20, windowSeconds: 3600 },
  pair: { free: 5, windowSeconds: 86_400, firstDelaySeconds: 300, maxDelaySeconds: 3600 },
  address: { free: 50, windowSeconds: 900, firstDelaySeconds: 2, maxDelaySeconds: 60 },
} as const;

/** Who is signing in: the name's budget key, the address, this browser's device token. */
export interface SignInSource {
  /** The name's budget key, e.g. `login:phone:138…`; its proofs and pairs extend it. */
  nameKey: string;
  ip: string;
  /** The browser's sign-in device token (security's middleware keeps it in a cookie). */
  device: string;
}

/** The throttles of one sign-in. */
export interface SignInGuard extends GuessGuard {
  budgetKey: string;
}

/** The key of a login name from one address (its slowdown, and its proof once signed in). */
function pairKey(nameKey: string, ip: string): string {
  return `${nameKey}:ip:${ip}`;
}

async function deviceKey(nameKey: string, device: string): Promise<string> {
  return `${nameKey}:device:${await sha256Hex(device)}`;
}

/**
 * The guard for signing in as a name from a source; `addressKey` counts the address's failures
 * over every name of its kind.
 */
export async function signInGuard(
  db: Db,
  source: SignInSource & { addressKey: string },
): Promise<SignInGuard> {
  const proof = await signInProof(db, source);
  return {
    budgetKey: source.nameKey,
    proven: proof.device,
    provenAddress: proof.address,
    budgets: [{ key: source.nameKey, ...SIGN_IN_RULE.budget }],
    slowdowns: [
      { key: pairKey(source.nameKey, source.ip), ...SIGN_IN_RULE.pair, resetOnSuccess: true },
      ...(proof.address ? [] : [{ key: source.addressKey, ...SIGN_IN_RULE.address }]),
    ],
  };
}

/**
 * Whether the name's owner signed in within the last 30 days with this browser (`device`) and
 * from this address (`address`).
 */
export async function signInProof(
  db: Db,
  source: SignInSource,
): Promise<{ device: boolean; address: boolean }> {
  return {
    device: await isProven(db, await deviceKey(source.nameKey, source.device)),
    address: await isProven(db, pairKey(source.nameKey, source.ip)),
  };
}

/** Remembers that the owner proved themselves from this address and browser. */
export async function proveSignIn(db: Db, source: SignInSource): Promise<void> {
  await rememberProven(db, pairKey(source.nameKey, source.ip));
  await rememberProven(db, await deviceKey(source.nameKey, source.device));
}

/** The Chinese sentence for a refused or throttled sign-in. */
export function signInWaitMessage(retryAfter: number): string {
  return `登录尝试过于频繁，请${describeWait(retryAfter)}后再试`;
}

/** Forgets a login name's failures and proofs (after a password reset, or staff unlocking it). */
export async function forgetSignIn(db: Db, nameKey: string): Promise<void> {
  await clearThrottle(db, nameKey);
  await forgetByPrefix(db, `${nameKey}:`);
}

/**
 * Card passwords (6 characters). The holder's checks (readers with the card in hand, the bound
 * account's pages): 5 wrong in a row close them for the rest of 30 minutes. Binding a card: per
 * card 10 wrong an hour from all accounts, then only with the 身份证 as well (5 more); per login
 * account trying 5 in 30 minutes; per address 20 free in 15 minutes, then waits of 2 s doubling
 * to 60 s.
 */
export const CARD_PASSWORD_RULES = {
  holder: { limit: 5, windowSeconds: 1800, resetOnSuccess: true },
  bindCard: { limit: 10, provenLimit: 15, windowSeconds: 3600 },
  bindAccount: { limit: 5, windowSeconds: 1800, resetOnSuccess: true },
  bindAddress: { free: 20, windowSeconds: 900, firstDelaySeconds: 2, maxDelaySeconds: 60 },
} as const;
