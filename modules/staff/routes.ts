import { Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import { z } from "zod";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { DomainError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { chinaDay, chinaDayRange } from "../platform/china_time.ts";
import {
  EXPORT_MAX_ROWS,
  exportField,
  exportLinks,
  exportTable,
  pageField,
  pager,
  paging,
  type Table,
} from "../platform/listing.ts";
import { render } from "../platform/views.ts";
import { clientIp, safeNext, signIn, signInDevice, signOut } from "../security/mod.ts";
import {
  auditChoices,
  auditDiff,
  type AuditRow,
  countAudit,
  listAudit,
  writeAudit,
} from "./audit.ts";
import {
  actionLabel,
  AUDIT_ACTIONS,
  AUDIT_FIELDS,
  AUDIT_MODULES,
  AUDIT_TARGETS,
} from "./audit_labels.ts";
import { registerAdminNav, requireRole } from "./middleware.ts";
import { ALL_ROLES, ROLE_LABELS, ROLES } from "./roles.ts";
import {
  addStaffMember,
  authenticateStaff,
  changeStaffPassword,
  resetStaffPassword,
} from "./service.ts";

const loginSchema = z.object({
  username: z.string().trim().min(1, "请输入用户名").max(32, "用户名过长"),
  password: z.string().min(1, "请输入密码").max(128, "密码过长"),
  next: z.string().max(300).optional(),
});

const passwordSchema = z.object({
  old_password: z.string().min(1, "请输入原密码").max(128, "密码过长"),
  new_password: z.string().min(1, "请输入新密码").max(128, "密码过长"),
});

const newStaffSchema = z.object({
  username: z.string().trim().min(1, "请输入用户名").max(32, "用户名过长"),
  name: z.string().trim().min(1, "请输入姓名").max(40, "姓名过长"),
  password: z.string().min(1, "请输入初始密码").max(128, "密码过长"),
  roles: z.union([z.string(), z.array(z.string())]).optional(),
});

const DAY = z.string().regex(/^\d{4}-\d{2}-\d{2}$/).optional().catch(undefined);
const CODE = z.string().trim().max(64).optional().catch(undefined);

/** 审计日志's filters (codes from its selects, a range of China days), page and export. */
const auditQuery = z.object({
  action: CODE,
  target_type: CODE,
  target_id: CODE,
  staff: z.string().trim().max(32).optional().catch(undefined),
  from: DAY,
  to: DAY,
  page: pageField,
  export: exportField,
}).transform((q) => {
  const [from, to] = q.from && q.to && q.from > q.to ? [q.to, q.from] : [q.from, q.to];
  return {
    shown: {
      action: q.action,
      target_type: q.target_type,
      target_id: q.target_id,
      staff: q.staff,
      from,
      to,
    },
    filter: {
      action: q.action || undefined,
      targetType: q.target_type || undefined,
      targetId: q.target_id || undefined,
      staffUsername: q.staff || undefined,
      from: from ? chinaDayRange(from)[0] : undefined,
      to: to ? chinaDayRange(to)[1] : undefined,
    },
    page: q.page,
    export: q.export,
  };
});

const AUDIT_TABLE: Table<AuditRow> = {
  name: "审计日志",
  columns: [
    { header: "时间", value: (r) => r.at, kind: "time" },
    { header: "员工", value: (r) => r.name ? `${r.name}（${r.username}）` : "系统" },
    { header: "操作", value: (r) => actionLabel(r.action) },
    { header: "操作代码", value: (r) => r.action },
    { header: "对象", value: (r) => AUDIT_TARGETS[r.target_type] ?? r.target_type },
    { header: "对象ID", value: (r) => r.target_id ?? "" },
    { header: "变更前", value: (r) => r.before === null ? "" : JSON.stringify(r.before) },
    { header: "变更后", value: (r) => r.after === null ? "" : JSON.stringify(r.after) },
    { header: "地址", value: (r) => r.ip ?? "" },
  ],
};

type C = Parameters<typeof render>[0];

/** Where a staff sign-in goes next: the asked-for console page, else the console home. */
function adminNext(next: string | undefined): string {
  const to = safeNext(next, "/admin");
  return to.startsWith("/admin") ? to : "/admin";
}

/** Staff sign-in, the console home, the audit log and staff accounts. */
export function staffRoutes(deps: { db: Db; config: Config }): Hono<AppEnv> {
  const { db } = deps;
  const app = new Hono<AppEnv>();
  registerAdminNav({ href: "/admin/audit", label: "审计日志", roles: ALL_ROLES, group: "系统" });
  registerAdminNav({
    href: "/admin/staff",
    label: "员工账号",
    roles: [ROLES.sysadmin],
    group: "系统",
    order: 20,
  });

  const showLogin = (
    c: C,
    errors: Record<string, string>,
    input: Record<string, string>,
    status = 200,
  ) =>
    render(c, "staff/login", { errors, input }, {
      status,
      layout: "admin/layout",
      title: "工作人员登录",
    });

  app.get("/login", (c) => showLogin(c, {}, { next: c.req.query("next") ?? "" }));

  app.post(
    "/login",
    zValidator(
      "form",
      loginSchema,
      formErrorsHook((c, errors, input) => showLogin(c, errors, input, 422)),
    ),
    async (c) => {
      const form = c.req.valid("form");
      return await runForm(
        () =>
          authenticateStaff(db, form.username, form.password, {
            ip: clientIp(c),
            device: signInDevice(c, deps, "staff"),
          }),
        (errors, err) =>
          showLogin(c, errors, { username: form.username, next: form.next ?? "" }, err.status),
        async (staff) => {
          await signIn(c, deps, "staff", staff.id);
          return c.redirect(adminNext(form.next), 303);
        },
      );
    },
  );

  app.post("/logout", async (c) => {
    await signOut(c, deps, "staff");
    return c.redirect("/admin/login", 303);
  });

  app.get(
    "/",
    requireRole(),
    (c) =>
      render(c, "staff/home", { roleLabels: ROLE_LABELS }, {
        layout: "admin/layout",
        title: "管理后台",
      }),
  );

  const showPassword = (c: C, errors: Record<string, string>, status = 200) =>
    render(c, "staff/password", { errors }, { status, layout: "admin/layout", title: "修改密码" });

  app.get("/password", requireRole(), (c) => showPassword(c, {}));

  app.post(
    "/password",
    requireRole(),
    zValidator(
      "form",
      passwordSchema,
      formErrorsHook((c, errors) => showPassword(c, errors, 422)),
    ),
    async (c) => {
      const form = c.req.valid("form");
      return await runForm(
        () =>
          changeStaffPassword(db, {
            staffId: c.get("staff")!.id,
            oldPassword: form.old_password,
            newPassword: form.new_password,
            keepSessionId: c.get("staffSessionId"),
            ip: clientIp(c),
          }),
        (errors, err) => showPassword(c, errors, err.status === 429 ? 429 : 422),
        () => c.redirect("/admin", 303),
      );
    },
  );

  app.get("/audit", requireRole(...ALL_ROLES), zValidator("query", auditQuery), async (c) => {
    const q = c.req.valid("query");
    if (q.export) {
      const rows = await listAudit(db, { ...q.filter, limit: EXPORT_MAX_ROWS });
      return exportTable(c, AUDIT_TABLE, rows, q.export, chinaDay());
    }
    const total = await countAudit(db, q.filter);
    const page = paging(q.page, total);
    const rows = await listAudit(db, { ...q.filter, limit: page.perPage, offset: page.offset });
    return render(c, "staff/audit", {
      rows: rows.map((r) => ({ ...r, changes: auditDiff(r.before, r.after) })),
      q: q.shown,
      filtered: Object.values(q.shown).some((v) => v),
      choices: await auditChoices(db),
      labels: {
        modules: AUDIT_MODULES,
        actions: AUDIT_ACTIONS,
        targets: AUDIT_TARGETS,
        fields: AUDIT_FIELDS,
      },
      pager: pager("/admin/audit", q.shown, total, page),
      exports: exportLinks("/admin/audit", q.shown),
    }, { layout: "admin/layout", title: "审计日志" });
  });

  const showStaff = async (
    c: C,
    errors: Record<string, string>,
    input: Record<string, string>,
    status = 200,
  ) => {
    const list = await db.selectFrom("staff").select([
      "id",
      "username",
      "name",
      "roles",
      "disabled",
      "created_at",
    ])
      .orderBy("id").execute();
    return render(c, "staff/staff", {
      list,
      errors,
      input,
      allRoles: ALL_ROLES,
      roleLabels: ROLE_LABELS,
    }, {
      status,
      layout: "admin/layout",
      title: "员工账号",
    });
  };

  app.get("/staff", requireRole(ROLES.sysadmin), (c) => showStaff(c, {}, {}));

  app.post(
    "/staff",
    requireRole(ROLES.sysadmin),
    zValidator(
      "form",
      newStaffSchema,
      formErrorsHook((c, errors, input) => showStaff(c, errors, input, 422)),
    ),
    async (c) => {
      const form = c.req.valid("form");
      return await runForm(
        () => addStaffMember(db, { staffId: c.get("staff")!.id, ip: clientIp(c) }, form),
        (errors) => showStaff(c, errors, { username: form.username, name: form.name }, 422),
        () => c.redirect("/admin/staff", 303),
      );
    },
  );

  app.post("/staff/:id/reset-password", requireRole(ROLES.sysadmin), async (c) => {
    const id = Number(c.req.param("id"));
    if (!Number.isSafeInteger(id) || id <= 0) throw new DomainError("Bad staff id", "参数错误");
    const done = await resetStaffPassword(db, {
      staffId: id,
      actorId: c.get("staff")!.id,
      ip: clientIp(c),
    });
    // Shown once: the password is stored only hashed.
    return render(c, "staff/reset_done", done, { layout: "admin/layout", title: "密码已重置" });
  });

  app.post("/staff/:id/disable", requireRole(ROLES.sysadmin), async (c) => {
    const id = Number(c.req.param("id"));
    const me = c.get("staff")!;
    if (!Number.isSafeInteger(id) || id <= 0) throw new DomainError("Bad staff id", "参数错误");
    if (id === me.id) throw new DomainError("Cannot disable oneself", "不能停用自己的账号");
    const before = await db.selectFrom("staff").select(["disabled"]).where("id", "=", id)
      .executeTakeFirst();
    if (!before) throw new DomainError("No such staff", "员工不存在");
    const disabled = !before.disabled;
    await db.transaction().execute(async (trx) => {
      await trx.updateTable("staff").set({ disabled }).where("id", "=", id).execute();
      await writeAudit(trx, {
        staffId: me.id,
        action: disabled ? "staff.disabled" : "staff.enabled",
        targetType: "staff",
        targetId: id,
        before,
        after: { disabled },
        ip: clientIp(c),
      });
    });
    return c.redirect("/admin/staff", 303);
  });

  return app;
}
