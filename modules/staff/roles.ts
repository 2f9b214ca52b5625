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
  /**
   * 商户经营者: an outside operator's read-only sign-in to its own merchant's statements and
   * takings. No department: given only with its merchant, alone (modules/merchant, operators.ts).
   */
  merchantOperator: "merchant_operator",
} as const;

export type Role = typeof ROLES[keyof typeof ROLES];

export const ROLE_LABELS: Record<Role, string> = {
  card_office: "一卡通中心",
  info_centre: "图文信息中心",
  finance: "财务处",
  sysadmin: "系统管理员",
  merchant_operator: "商户经营者",
};

/** The school's departments: what a staff account is given on 员工账号 (not 商户经营者). */
export const ALL_ROLES: Role[] = [
  ROLES.cardOffice,
  ROLES.infoCentre,
  ROLES.finance,
  ROLES.sysadmin,
];
