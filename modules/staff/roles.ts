/** Staff roles. Each admin route names the roles that may use it. */
export const ROLES = {
  /** 一卡通中心: loss, reissue, card passwords, imports. */
  cardOffice: "card_office",
  /** 图文信息中心: login password resets, the development outbox. */
  infoCentre: "info_centre",
  /** 财务处: refunds, adjustments, reports, reconciliation. */
  finance: "finance",
  /** 系统管理员: staff accounts, terminals, merchants, tariffs. */
  sysadmin: "sysadmin",
} as const;

export type Role = typeof ROLES[keyof typeof ROLES];

export const ROLE_LABELS: Record<Role, string> = {
  card_office: "一卡通中心",
  info_centre: "图文信息中心",
  finance: "财务处",
  sysadmin: "系统管理员",
};

export const ALL_ROLES = Object.values(ROLES) as Role[];
