import { Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import type { Db } from "../platform/database.ts";
import { NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { render } from "../platform/views.ts";
import { clientIp } from "../security/mod.ts";
import { registerAdminNav, requireRole, ROLES } from "../staff/mod.ts";
import { findAccountDetail, searchAccounts } from "./repository.ts";
import {
  ALL_ROWS,
  exportLinks,
  exportTable,
  pager,
  type Paging,
  paging,
  type Table,
} from "../platform/listing.ts";
import { searchSchema } from "./schemas.ts";
import { loginLockedFor, staffResetPassword } from "./service.ts";

const ROLES_ALLOWED = [ROLES.infoCentre, ROLES.sysadmin];

function accountId(raw: string): number {
  const id = /^\d{1,15}$/.test(raw) ? Number(raw) : 0;
  if (!Number.isSafeInteger(id) || id <= 0) throw new NotFoundError(`account ${raw.slice(0, 20)}`);
  return id;
}

/** 一信通账号 found by phone, as a file. */
const ACCOUNTS_TABLE: Table<Awaited<ReturnType<typeof searchAccounts>>["rows"][number]> = {
  name: "一信通账号",
  columns: [
    { header: "手机号", value: (a) => a.phone },
    { header: "学校", value: (a) => a.schoolName },
    { header: "邮箱", value: (a) => a.email ?? "未绑定" },
    { header: "注册时间", value: (a) => a.createdAt, kind: "time" },
  ],
};

/** 图文信息中心: find a login account by phone and reset its login password. */
export function accountAdminRoutes(deps: { db: Db }): Hono<AppEnv> {
  const { db } = deps;
  const app = new Hono<AppEnv>();
  registerAdminNav({
    href: "/admin/accounts",
    label: "一信通账号",
    roles: ROLES_ALLOWED,
    group: "一卡通中心",
    order: 20,
  });

  app.get(
    "/accounts",
    requireRole(...ROLES_ALLOWED),
    zValidator("query", searchSchema),
    async (c) => {
      const q = c.req.valid("query");
      const phone = q.phone ?? "";
      const error = phone && !/^\d{3,11}$/.test(phone)
        ? "请输入3-11位数字（手机号的全部或一部分）"
        : "";
      if (q.export && phone && !error) {
        const { rows } = await searchAccounts(db, phone, () => ALL_ROWS);
        return exportTable(c, ACCOUNTS_TABLE, rows, q.export, phone);
      }
      const found = phone && !error
        ? await searchAccounts(db, phone, (total) => paging(q.page, total))
        : { rows: [], total: 0, page: paging(1, 0) };
      return render(c, "account/admin_accounts", {
        phone,
        rows: found.rows,
        error,
        searched: phone !== "" && !error,
        pager: pager("/admin/accounts", { phone }, found.total, found.page as Paging),
        exports: exportLinks("/admin/accounts", { phone }),
      }, {
        status: error ? 422 : 200,
        layout: "admin/layout",
        title: "一信通账号",
      });
    },
  );

  app.get("/accounts/:id", requireRole(...ROLES_ALLOWED), async (c) => {
    const account = await findAccountDetail(db, accountId(c.req.param("id")));
    if (!account) throw new NotFoundError("account");
    const lockedFor = await loginLockedFor(db, account.phone);
    return render(c, "account/admin_account", { account, lockedFor }, {
      layout: "admin/layout",
      title: "账号详情",
    });
  });

  app.post("/accounts/:id/reset-password", requireRole(...ROLES_ALLOWED), async (c) => {
    const account = await findAccountDetail(db, accountId(c.req.param("id")));
    if (!account) throw new NotFoundError("account");
    const temp = await staffResetPassword(db, {
      accountId: account.id,
      staffId: c.get("staff")!.id,
      ip: clientIp(c),
    });
    // Shown once: this response is not cached (no-store) and the password is stored only hashed.
    return render(c, "account/admin_reset_done", { temp, phone: account.phone, id: account.id }, {
      layout: "admin/layout",
      title: "登录密码已重置",
    });
  });

  return app;
}
