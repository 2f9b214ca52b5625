/**
 * The listener's limits on connections and on balance inquiries (PROTOCOL.md §2.2, §4.5), read
 * from the environment (README) with overrides for tests.
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
  /** Balance inquiries one terminal may send per minute (and at once, after a quiet minute). */
  inquiriesPerMinute: number;
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
    inquiriesPerMinute: envInt(env, "TERMINAL_INQUIRIES_PER_MINUTE", 10),
    ...overrides,
  };
}

/**
 * A token bucket per terminal: `perMinute` tokens, one back every 60/perMinute seconds. Kept in
 * memory by each server instance (a reader holds one connection, to one instance); buckets that
 * are full again are forgotten, so the map holds only terminals that asked in the last minute.
 */
export class InquiryLimiter {
  readonly #buckets = new Map<number, { tokens: number; at: number }>();

  constructor(readonly perMinute: number, readonly now: () => number = Date.now) {}

  /** Takes one inquiry for `terminalId`; false when its bucket is empty. */
  take(terminalId: number): boolean {
    if (this.perMinute <= 0) return false;
    const now = this.now();
    const refillMs = 60_000 / this.perMinute;
    const b = this.#buckets.get(terminalId) ?? { tokens: this.perMinute, at: now };
    b.tokens = Math.min(this.perMinute, b.tokens + (now - b.at) / refillMs);
    b.at = now;
    if (this.#buckets.size > 10_000) this.#forgetFull(now, refillMs);
    if (b.tokens < 1) {
      this.#buckets.set(terminalId, b);
      return false;
    }
    b.tokens -= 1;
    this.#buckets.set(terminalId, b);
    return true;
  }

  #forgetFull(now: number, refillMs: number): void {
    for (const [id, b] of this.#buckets) {
      if (b.tokens + (now - b.at) / refillMs >= this.perMinute) this.#buckets.delete(id);
    }
  }
}
