/**
 * Dorm utilities (电费充值, 冷水充值): buildings, rooms and residents, tariffs (including the
 * shower tariff readers apply), purchases paid from the card balance through the wallet, and
 * their delivery to the meter system.
 */
export { currentShowerTariff, currentTariff, type ShowerTariff, type Tariff } from "./tariffs.ts";
export type { TariffKind, TariffUnit, Utility } from "./tables.ts";
