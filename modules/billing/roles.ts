import { type Role, ROLES } from "../staff/mod.ts";

/**
 * Who may do what on the staff pages of billing (documented in README):
 * - 一卡通中心 (card office): buildings, rooms, CSV import, residents; sees room balances.
 * - 系统管理员 (sysadmin): tariffs, the simulated meter's fault switches; buildings and rooms too.
 * - 财务处 (finance): revenue reports and CSV, the delivery queue with retry and refund.
 * Sysadmin sees the delivery queue and may retry (an operational fix); only finance refunds.
 * The card office sets 低余量提醒 (电量不足 / 水量不足 per room size); sysadmin sees it.
 */
export const BILLING_ROLES = {
  rooms: [ROLES.cardOffice, ROLES.sysadmin],
  residents: [ROLES.cardOffice],
  balances: [ROLES.cardOffice, ROLES.finance, ROLES.sysadmin],
  tariffsView: [ROLES.sysadmin, ROLES.finance],
  tariffsEdit: [ROLES.sysadmin],
  queueView: [ROLES.finance, ROLES.sysadmin],
  queueRetry: [ROLES.finance, ROLES.sysadmin],
  queueRefund: [ROLES.finance],
  reports: [ROLES.finance],
  simulator: [ROLES.sysadmin],
  alertsView: [ROLES.cardOffice, ROLES.sysadmin],
  alertsEdit: [ROLES.cardOffice],
} satisfies Record<string, Role[]>;
