/**
 * The listener's limits on connections and on chip lookups (PROTOCOL.md §2.2, §4.5), read from
 * the environment (README) with overrides for tests.
 */
import type { Config } from "../modules/platform/config.ts";

/** A whole number from the environment, or `fallback` when unset; start-up fails on anything else. */
export function envInt(
  env: Record<string, string | undefined>,
  name: string,
  fallback: number,
): number {
  const raw = env[name];
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffff_ffff) {
    throw new Error(`Cannot read configuration: ${name} must be a whole number, got "${raw}"`);
  }
  return n;
}

export interface ConnectionLimits {
  /** A connection that has not sent an accepted frame this long after it opened is closed (ms). */
  authTimeoutMs: number;
  /**
   * Most connections from one address that have not yet sent an accepted frame; 0 = no limit per
   * address (behind a TCP proxy every reader has the proxy's address: limit per source there).
   */
  maxUnauthenticatedPerAddress: number;
  /** Most connections that have not yet sent an accepted frame, all addresses together. */
  maxUnauthenticated: number;
  /** Most connections in all. */
  maxConnections: number;
  /**
   * Chip lookups one terminal may have answered per minute (and at once, after a quiet minute):
   * balance inquiries, and refusals that say whether a chip exists (PROTOCOL.md §4.5).
   */
  lookupsPerMinute: number;
  /**
   * Offline payment codes one terminal may have refused as no device's (unknown, wrong, a clock
   * off) per minute, and at once after a quiet minute: a reader guessing codes runs out here
   * (PROTOCOL.md §4.4).
   */
  offlineCodeGuessesPerMinute: number;
}

/** The limits from the environment (see README), with overrides (tests). */
export function connectionLimits(
  config: Config,
  overrides: Partial<ConnectionLimits> = {},
): ConnectionLimits {
  const env = config.env ?? {};
  return {
    authTimeoutMs: envInt(env, "TERMINAL_AUTH_TIMEOUT_MS", 10_000),
    maxUnauthenticatedPerAddress: envInt(env, "TERMINAL_MAX_UNAUTH_PER_HOST", 50),
    maxUnauthenticated: envInt(env, "TERMINAL_MAX_UNAUTHENTICATED", 2_000),
    maxConnections: envInt(env, "TERMINAL_MAX_CONNECTIONS", 20_000),
    lookupsPerMinute: envInt(env, "TERMINAL_INQUIRIES_PER_MINUTE", 10),
    offlineCodeGuessesPerMinute: envInt(env, "TERMINAL_OFFLINE_CODE_GUESSES_PER_MINUTE", 10),
    ...overrides,
  };
}

/**
 * A terminal's allowance of answers that tell whether a chip exists (PROTOCOL.md §4.5): a token
 * bucket of `perMinute` tokens, one back every 60/perMinute seconds. Kept in memory by each server
 * instance: a reader holds one connection, to one instance, but a key held by several readers at
 * once, connected to k instances, gets k allowances (README, PROTOCOL.md §4.5). Buckets that are
 * full again are forgotten, so the map holds only terminals that drew on theirs in the last minute.
 */
export class LookupAllowance {
  readonly #buckets = new Map<number, { tokens: number; at: number }>();

  constructor(readonly perMinute: number, readonly now: () => number = Date.now) {}

  /** Whether `terminalId` has a lookup left (takes nothing). */
  has(terminalId: number): boolean {
    return this.#refilled(terminalId).tokens >= 1;
  }

  /** Takes one lookup for `terminalId`; false when its bucket is empty. */
  take(terminalId: number): boolean {
    const b = this.#refilled(terminalId);
    const taken = b.tokens >= 1;
    if (taken) b.tokens -= 1;
    this.#buckets.set(terminalId, b);
    if (this.#buckets.size > 10_000) this.#forgetFull();
    return taken;
  }

  #refilled(terminalId: number): { tokens: number; at: number } {
    const now = this.now();
    const b = this.#buckets.get(terminalId) ?? { tokens: this.perMinute, at: now };
    if (this.perMinute <= 0) return { tokens: 0, at: now };
    // A clock set back gives nothing back (and takes nothing).
    const elapsed = Math.max(0, now - b.at);
    b.tokens = Math.min(this.perMinute, b.tokens + elapsed * this.perMinute / 60_000);
    b.at = Math.max(b.at, now);
    return b;
  }

  #forgetFull(): void {
    for (const [id] of this.#buckets) {
      if (this.#refilled(id).tokens >= this.perMinute) this.#buckets.delete(id);
    }
  }
}
