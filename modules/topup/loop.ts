/**
 * The top-up module's background work: pending orders asked about, expired ones closed, the
 * sandbox's notifies delivered, refunds followed. (Its own file, as wallet/loop.ts, so that the
 * order lifecycle in orders.ts and refunds.ts do not import each other.)
 */
import { sql } from "kysely";
import { logger } from "../platform/log.ts";
import { startLoop } from "../platform/loop.ts";
import { checkRefunds } from "./refunds.ts";
import { buildGateways, type Gateways, sandboxOf, type TopupDeps } from "./deployment.ts";
import { checkOrder } from "./orders.ts";

const log = logger("topup");

/**
 * One round of background work: deliver the sandbox's due notifies, ask the gateways about
 * orders that stay pending, close expired ones, and follow refunds still on their way.
 */
export async function runTopupTick(
  deps: TopupDeps,
  gateways: Gateways,
  app: { fetch(req: Request): Response | Promise<Response> },
  now = new Date(),
): Promise<void> {
  const { db } = deps;
  const sandbox = sandboxOf(gateways);
  if (sandbox) await sandbox.deliverDue(app, deps.config.baseUrl, now);
  // A literal 'pending': the pending orders' index is partial, and a plan made without the values
  // (platform/database.ts) can use it only so.
  const stale = await db.selectFrom("topup_orders").selectAll()
    .where("state", "=", sql.lit("pending"))
    .where((eb) =>
      eb.or([
        eb("expires_at", "<=", now),
        eb.and([
          eb("created_at", "<=", new Date(now.getTime() - 60_000)),
          eb.or([
            eb("last_checked_at", "is", null),
            eb("last_checked_at", "<=", new Date(now.getTime() - 60_000)),
          ]),
        ]),
      ])
    )
    .orderBy("id").limit(100).execute();
  for (const order of stale) await checkOrder(deps, gateways, order, now);
  await checkRefunds(deps, gateways, now);
}

/**
 * Runs `runTopupTick` every `seconds` until the returned stop function is called (which waits
 * for the round in progress).
 */
export function startTopupLoop(
  deps: TopupDeps,
  app: { fetch(req: Request): Response | Promise<Response> },
  seconds = 2,
): () => Promise<void> {
  const gateways = buildGateways(deps);
  const loop = startLoop({
    name: "top-up round",
    log,
    everyMs: seconds * 1000,
    round: () => runTopupTick(deps, gateways, app),
  });
  return loop.stop;
}
