import type { MiddlewareHandler } from "hono";
import type { Db } from "../platform/database.ts";
import { ForbiddenError } from "../platform/errors.ts";
import type { AdminNavItem, AppEnv } from "../platform/http.ts";
import { ADMIN_NAV_GROUPS, type AdminNavGroup } from "../platform/app_env.ts";
import type { Role } from "./roles.ts";
import { findActiveStaff } from "./service.ts";

const nav: Array<AdminNavItem & { group: AdminNavGroup }> = [];

/** The department of a page whose module named none: 水电 for billing's, else 系统. */
function groupByPath(href: string): AdminNavGroup {
  return href.startsWith("/admin/billing/") ? "水电" : "系统";
}

/**
 * Adds an entry to the admin console's navigation, shown to the given roles, under its department
 * (`group`) in the sidebar.
 */
export function registerAdminNav(item: AdminNavItem): void {
  if (nav.some((n) => n.href === item.href)) return;
  nav.push({ ...item, group: item.group ?? groupByPath(item.href) });
  const rank = (n: AdminNavItem & { group: AdminNavGroup }) =>
    ADMIN_NAV_GROUPS.indexOf(n.group) * 1000 + (n.order ?? 50);
  // A stable sort: registration order inside equal ranks.
  nav.sort((a, b) => rank(a) - rank(b));
}

/** What a member whose password must change may still reach. */
const BEFORE_NEW_PASSWORD = new Set(["/admin/password", "/admin/logout", "/admin/login"]);

/**
 * Loads the signed-in staff member (for /admin paths) and the navigation they may see. A member
 * with a seeded or reset password is sent to 修改密码 before anything else.
 */
export function loadStaff(db: Db): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const id = c.get("staffId");
    if (id !== null) {
      const staff = await findActiveStaff(db, id);
      c.set("staff", staff);
      if (staff) c.set("adminNav", nav.filter((n) => n.roles.some((r) => staff.roles.includes(r))));
      if (staff?.mustChangePassword && !BEFORE_NEW_PASSWORD.has(c.req.path)) {
        if (c.req.header("hx-request") === "true") {
          return c.body(null, 204, { "hx-redirect": "/admin/password" });
        }
        return c.redirect("/admin/password", 303);
      }
    }
    await next();
  };
}

/**
 * Only staff holding one of `roles` pass; anyone else signed out is sent to the staff sign-in,
 * and a signed-in member without the role gets 403.
 */
export function requireRole(...roles: Role[]): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const staff = c.get("staff");
    if (!staff) {
      const target = `/admin/login?next=${
        encodeURIComponent(c.req.method === "GET" ? c.req.path : "/admin")
      }`;
      if (c.req.header("hx-request") === "true") {
        return c.body(null, 204, { "hx-redirect": target });
      }
      return c.redirect(target, 303);
    }
    if (roles.length > 0 && !roles.some((r) => staff.roles.includes(r))) {
      throw new ForbiddenError(`Staff ${staff.username} lacks role ${roles.join("|")}`);
    }
    await next();
  };
}
