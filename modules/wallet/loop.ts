import type { Db } from "../platform/database.ts";
import { logger } from "../platform/log.ts";
import { startLoop } from "../platform/loop.ts";
import { expireHolds } from "./holds.ts";
import { purgeOldPaymentCodes } from "./codes.ts";

const log = logger("wallet");

/**
 * Releases timed-out shower holds every `seconds` (and purges day-old unused payment codes about
 * hourly). Safe on several instances at once. Returns the stop function for `onShutdown`.
 */
export function startHoldExpiryLoop(deps: { db: Db }, seconds = 5): () => Promise<void> {
  let lastPurge = 0;
  const loop = startLoop({
    name: "hold expiry round",
    log,
    everyMs: seconds * 1000,
    round: async () => {
      const released = await expireHolds(deps.db, new Date());
      if (released) log.info("holds expired", { released });
      if (Date.now() - lastPurge > 3600_000) {
        lastPurge = Date.now();
        await purgeOldPaymentCodes(deps.db);
      }
    },
  });
  return loop.stop;
}
