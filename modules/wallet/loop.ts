import type { Db } from "../platform/database.ts";
import { logger } from "../platform/log.ts";
import { expireHolds } from "./holds.ts";
import { purgeOldPaymentCodes } from "./codes.ts";

const log = logger("wallet");

/**
 * Releases timed-out shower holds every `seconds` (and purges day-old unused payment codes about
 * hourly). Safe on several instances at once. Returns the stop function for `onShutdown`.
 */
export function startHoldExpiryLoop(deps: { db: Db }, seconds = 5): () => Promise<void> {
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running: Promise<void> = Promise.resolve();
  let lastPurge = 0;
  const round = () => {
    running = (async () => {
      const released = await expireHolds(deps.db, new Date());
      if (released) log.info("holds expired", { released });
      if (Date.now() - lastPurge > 3600_000) {
        lastPurge = Date.now();
        await purgeOldPaymentCodes(deps.db);
      }
    })().catch((err) => {
      log.error("hold expiry round failed", { err: (err as Error).message });
    }).finally(() => {
      if (!stopped) timer = setTimeout(round, seconds * 1000);
    });
  };
  timer = setTimeout(round, seconds * 1000);
  return async () => {
    stopped = true;
    clearTimeout(timer);
    await running;
  };
}
