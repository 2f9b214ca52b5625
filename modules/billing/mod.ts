/**
 * Dorm utilities (电费充值, 冷水充值): buildings, rooms and residents, tariffs (including the
 * shower tariff readers apply), purchases paid from the card balance through the wallet, and
 * their delivery to the meter system by a background worker.
 */
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { logger } from "../platform/log.ts";
import { startDeliveryWorker } from "./delivery.ts";
import { meterAdapterFor } from "./meters.ts";
import { walletMoney } from "./wallet_link.ts";
import { readMeters } from "./readings.ts";
import { startLoop } from "../platform/loop.ts";

/**
 * The tariff in force: `currentShowerTariff(db)` → `{ tariffId, unit, fenPerUnit, preauthAmount }`;
 * `showerTariffSql()` the same row as SQL, for a reader's one-statement shower start.
 */
export {
  currentShowerTariff,
  currentTariff,
  type ShowerTariff,
  showerTariffSql,
  type Tariff,
} from "./tariffs.ts";
/** Utility ("electricity" | "water"), tariff kinds and units, and a purchase's states. */
export type { PurchaseStatus, TariffKind, TariffUnit, Utility } from "./tables.ts";
/** Student pages (/billing/room, /billing/electricity, /billing/water, /billing/orders/:no). */
export { billingRoutes } from "./routes.ts";
/** Staff pages under /admin/billing, and which roles may use them. */
export { billingAdminRoutes } from "./admin_routes.ts";
export { BILLING_ROLES } from "./roles.ts";
/**
 * How wallet transfers made by billing read in 交易记录, by transfer id: 电费/冷水 (or 电费退款),
 * the room, the purchase's state now. (Every utility transfer's `details` also carries
 * `label: "电费 · 1号楼 101"`, `room`, `orderNo`.)
 */
export { describeUtilityTransfers, type UtilityTransferLabel } from "./purchases.ts";
/**
 * 电量不足 / 水量不足: low-credit alerts committed after a feed position (platform/feed.ts), with
 * the room's residents, for the notifier.
 */
export { type FeedLowCredit, lowCreditAlertsAfter } from "./readings.ts";
/** Demo buildings and rooms for the embedded setup. */
export { seedDemoBilling } from "./seed.ts";

/**
 * Starts the delivery worker with the configured meter adapter (METER_ADAPTER), and the loop that
 * reads occupied rooms' credit every METER_READ_EVERY_S (default 900; 0 turns it off), and
 * returns the function that stops both (for `deps.onShutdown`). Several instances may run on one
 * database.
 */
export function startBillingWorker(deps: { db: Db; config: Config }): () => Promise<void> {
  const meter = meterAdapterFor(deps);
  const log = logger("billing");
  log.info("delivery worker started", { meter: meter.name });
  const worker = startDeliveryWorker({ db: deps.db, meter, money: walletMoney });
  const every = Number(deps.config.env.METER_READ_EVERY_S ?? "900");
  const reader = Number.isFinite(every) && every > 0
    ? startLoop({
      name: "meter reading",
      log,
      everyMs: every * 1000,
      round: async () => {
        await readMeters(deps.db, meter);
      },
    })
    : null;
  return async () => {
    await reader?.stop();
    await worker.stop();
  };
}
