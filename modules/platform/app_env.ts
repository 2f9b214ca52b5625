/**
 * The per-request values of the HTTP app, in a file of their own so that http.ts and views.ts
 * both read them without importing each other.
 */

/** The signed-in staff member, set by the staff module's middleware. */
export interface CurrentStaff {
  id: number;
  username: string;
  name: string;
  roles: string[];
  mustChangePassword: boolean;
}

/** The departments the console's sidebar groups its pages under, in this order. */
export const ADMIN_NAV_GROUPS = ["一卡通中心", "财务处", "水电", "系统", "商户"] as const;
export type AdminNavGroup = typeof ADMIN_NAV_GROUPS[number];

/** An entry of the admin console's navigation; modules register theirs. */
export interface AdminNavItem {
  href: string;
  label: string;
  roles: string[];
  /** Its department in the sidebar; staff's `registerAdminNav` names one by path when not given. */
  group?: AdminNavGroup;
  /** Order inside the department (smaller first; default 50, then the order of registration). */
  order?: number;
}

/** Per-request values shared by middleware and handlers. */
export interface AppEnv {
  Variables: {
    requestId: string;
    /** Hash of the student session token, when signed in. */
    sessionId: string | null;
    /** The signed-in login account (一信通账号), when signed in. */
    accountId: number | null;
    staff: CurrentStaff | null;
    staffSessionId: string | null;
    /** The signed-in staff member's id; the staff module loads the rest into `staff`. */
    staffId: number | null;
    /** CSRF token to put into forms (`_csrf`) and the htmx header. */
    csrf: string;
    adminNav: AdminNavItem[];
    /** Pages carry the 演示环境 mark (platform/config.ts: showsDemoMark). */
    demo: boolean;
  };
}
