/** Staff accounts, roles, the staff sign-in and the audit log. */
export { staffRoutes } from "./routes.ts";
export { loadStaff, registerAdminNav, requireRole } from "./middleware.ts";
export { ALL_ROLES, type Role, ROLE_LABELS, ROLES } from "./roles.ts";
export { type AuditEntry, escapeLike, listAudit, writeAudit } from "./audit.ts";
/** Staff accounts; `staffByIds` names staff members beside another module's list. */
export { createStaff, findActiveStaff, hasStaff, staffByIds } from "./service.ts";
