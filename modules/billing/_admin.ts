/** What the staff pages of billing share: the layout, the path id, the acting staff member. */
import type { Context } from "hono";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { clientIp } from "../security/mod.ts";
import type { Role } from "../staff/mod.ts";
import type { StaffActor } from "./admin_actions.ts";

/** What each staff sub-app of billing is built from. */
export interface AdminDeps {
  db: Db;
  config: Config;
}

export const ADMIN = { layout: "admin/layout" } as const;

/** The path's numeric id (1–12 digits); anything else is a page that does not exist. */
export function idOf(c: Context<AppEnv>, name = "id"): number {
  const raw = c.req.param(name) ?? "";
  const n = /^\d{1,12}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n <= 0) throw new NotFoundError(`${name} ${raw}`);
  return n;
}

/** The signed-in staff member, as the audit record names them. */
export function actorOf(c: Context<AppEnv>): StaffActor {
  return { staffId: c.get("staff")!.id, ip: clientIp(c) };
}

/** Whether the signed-in staff member holds one of these roles (to offer a button or not). */
export function mayDo(c: Context<AppEnv>, roles: readonly Role[]): boolean {
  const held = c.get("staff")!.roles;
  return roles.some((r) => held.includes(r));
}
