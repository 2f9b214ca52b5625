import { Eta } from "eta";
import { fileURLToPath as fromFileUrl } from "node:url";
import type { Context } from "hono";
import { assetUrl } from "./assets.ts";
import { fenToYuanText, formatFen } from "./money.ts";
import { ADMIN_NAV_GROUPS, type AdminNavItem, type AppEnv } from "./app_env.ts";

const eta = new Eta({
  views: fromFileUrl(new URL("../../views", import.meta.url)),
  cache: Deno.env.get("VIEW_CACHE") !== "0",
  autoEscape: true,
  autoTrim: false,
});

const dateFmt = new Intl.DateTimeFormat("zh-CN", {
  timeZone: "Asia/Shanghai",
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hour12: false,
});

/** Helpers every template can call as `it.h.fen(x)` and so on. */
export const helpers = {
  fen: formatFen,
  yuan: fenToYuanText,
  asset: assetUrl,
  /** "2026-11-25 19:55:54" in China time. */
  time(d: Date | string | null | undefined): string {
    if (!d) return "";
    const parts = dateFmt.formatToParts(typeof d === "string" ? new Date(d) : d);
    const get = (t: string) => parts.find((p) => p.type === t)?.value ?? "";
    return `${get("year")}-${get("month")}-${get("day")} ${get("hour")}:${get("minute")}:${
      get("second")
    }`;
  },
  /**
   * The console's navigation as the sidebar shows it: its departments in order, each with its
   * entries, and the entry the page belongs to (the longest href the path starts with, at a "/"
   * boundary, so /admin/finance/refunds is 退款 rather than 财务处's 概览).
   */
  adminNav(items: AdminNavItem[], path: string) {
    let active: string | null = null;
    for (const n of items) {
      if (path === n.href || path.startsWith(`${n.href}/`)) {
        if (active === null || n.href.length > active.length) active = n.href;
      }
    }
    const groups = ADMIN_NAV_GROUPS.map((label) => ({
      label,
      items: items.filter((n) => (n.group ?? "系统") === label),
    })).filter((g) => g.items.length > 0);
    return { groups, active };
  },
  /** Masks a phone number as 138****5678. */
  maskPhone(phone: string): string {
    return phone.length === 11 ? `${phone.slice(0, 3)}****${phone.slice(7)}` : phone;
  },
};

/** Field errors of a form, keyed by field name, plus an optional form-wide one under "_form". */
export type FieldErrors = Record<string, string>;

/** Renders a template to a string (no layout). */
export function renderTemplate(template: string, data: Record<string, unknown>): string {
  return eta.render(template, { h: helpers, ...data });
}

export interface RenderOptions {
  status?: number;
  /** Layout to wrap the page in: "layout" (students, default), "admin/layout", or null. */
  layout?: string | null;
  /** Page title shown in the WeChat title bar. */
  title?: string;
  /**
   * Which tab of the bottom bar is active: "home" (智校园), "me" (我的), or null for none (a
   * one-off step such as a payment page). Default: a signed-in student's page shows the bar, 我的
   * for /me and /security pages, else 智校园.
   */
  tab?: "home" | "me" | null;
  headers?: Record<string, string>;
}

function defaultTab(c: Context<AppEnv>): "home" | "me" | null {
  if (!c.get("accountId")) return null;
  return /^\/(me|security)(\/|$)/.test(c.req.path) ? "me" : "home";
}

/**
 * Renders a page inside its layout, or without the layout when htmx asks (HX-Request) and the
 * request is not a boosted full navigation.
 */
export function render(
  c: Context<AppEnv>,
  template: string,
  data: Record<string, unknown> = {},
  options: RenderOptions = {},
): Response {
  const common = {
    h: helpers,
    csrf: c.get("csrf"),
    path: c.req.path,
    staff: c.get("staff"),
    accountId: c.get("accountId"),
    adminNav: c.get("adminNav"),
    demo: c.get("demo"),
  };
  const body = eta.render(template, { ...common, ...data });
  const partial = c.req.header("hx-request") === "true" && c.req.header("hx-boosted") !== "true";
  const layout = options.layout === undefined ? "layout" : options.layout;
  const html = layout && !partial
    ? eta.render(layout, {
      ...common,
      ...data,
      body,
      title: options.title ?? (data.title as string | undefined) ?? "校园一信通",
      tab: options.tab === undefined ? defaultTab(c) : options.tab,
    })
    : body;
  const res = c.html(html, (options.status ?? 200) as 200);
  for (const [k, v] of Object.entries(options.headers ?? {})) res.headers.set(k, v);
  return res;
}
