import type { Db } from "../platform/database.ts";
import { logger } from "../platform/log.ts";
import { startLoop } from "../platform/loop.ts";
import { expireHolds } from "./holds.ts";
import { purgeOldPaymentCodes } from "./codes.ts";
import { expireLots, EXPIRY_ROUND } from "./lots.ts";

const log = logger("wallet");

/**
 * Releases timed-out shower holds and sends lots past their end back to their funding accounts
 * every `seconds` (and purges day-old unused payment codes about hourly). Safe on several
 * instances at once. Returns the stop function for `onShutdown`.
 */
export function startHoldExpiryLoop(deps: { db: Db }, seconds = 5): () => Promise<void> {
  let lastPurge = 0;
  const loop = startLoop({
    name: "hold expiry round",
    log,
    everyMs: seconds * 1000,
    // A full round of expired lots means more are due: the next round starts at once.
    round: async () => {
      const released = await expireHolds(deps.db, new Date());
      if (released) log.info("holds expired", { released });
      const expired = await expireLots(deps.db, new Date());
      if (expired.length) {
        log.info("lots expired", {
          lots: expired.length,
          amount: expired.reduce((s, r) => s + r.amount, 0),
        });
      }
      if (Date.now() - lastPurge > 3600_000) {
        lastPurge = Date.now();
        await purgeOldPaymentCodes(deps.db);
      }
      return expired.length >= EXPIRY_ROUND;
    },
  });
  return loop.stop;
}
