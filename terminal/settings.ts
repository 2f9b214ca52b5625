/**
 * The parameters the server gives readers at SignOn (PROTOCOL.md §4.1) and holds them to, read
 * from the environment (README) with overrides for tests.
 */
import type { Config } from "../modules/platform/config.ts";
import { envInt } from "./limits.ts";

/** Parameters given to readers at sign-on and the server's own limits. */
export interface ProtocolSettings {
  /** A frame's timestamp may differ from server time by at most this many seconds. */
  timestampWindowSeconds: number;
  /** Card payments above this amount (fen) need the card password. */
  passwordThreshold: number;
  /** Offline: most a reader may accept for one payment (fen). */
  offlinePaymentLimit: number;
  /** Offline: most a reader may accept in total before it must upload (fen). */
  offlineTotalLimit: number;
  /** Offline: most records a reader may hold. */
  offlineMaxRecords: number;
  /** Offline: a record paid longer ago than this (seconds before its upload) is not charged. */
  offlineMaxAgeSeconds: number;
  heartbeatSeconds: number;
  /** A shower hold whose end never arrives is released after this many seconds. */
  showerHoldSeconds: number;
}

/** The settings from the environment (see README), with overrides (tests). */
export function protocolSettings(
  config: Config,
  overrides: Partial<ProtocolSettings> = {},
): ProtocolSettings {
  const env = config.env ?? {};
  return {
    timestampWindowSeconds: envInt(env, "TERMINAL_TIMESTAMP_WINDOW", 300),
    passwordThreshold: envInt(env, "TERMINAL_PASSWORD_THRESHOLD", 2000),
    offlinePaymentLimit: envInt(env, "TERMINAL_OFFLINE_PAYMENT_LIMIT", 1500),
    offlineTotalLimit: envInt(env, "TERMINAL_OFFLINE_TOTAL_LIMIT", 10000),
    offlineMaxRecords: envInt(env, "TERMINAL_OFFLINE_MAX_RECORDS", 200),
    offlineMaxAgeSeconds: envInt(env, "TERMINAL_OFFLINE_MAX_AGE", 7 * 86_400),
    heartbeatSeconds: envInt(env, "TERMINAL_HEARTBEAT_SECONDS", 30),
    showerHoldSeconds: envInt(env, "SHOWER_HOLD_TIMEOUT", 3600),
    ...overrides,
  };
}
