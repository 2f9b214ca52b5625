import { Hono } from "hono";
import { zValidator } from "@hono/zod-validator";
import { z } from "zod";
import type { Db } from "../platform/database.ts";
import type { AppEnv } from "../platform/http.ts";
import { render } from "../platform/views.ts";
import { registerAdminNav, requireRole, ROLES } from "../staff/mod.ts";
import { listOutbox, type Mailer } from "./service.ts";

const outboxQuery = z.object({ to: z.string().max(254).optional().catch(undefined) });

/** Staff page of the development outbox: /admin/outbox (图文信息中心 and system admins). */
export function mailAdminRoutes(deps: { db: Db; mailer: Mailer }): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  const roles = [ROLES.infoCentre, ROLES.sysadmin];
  registerAdminNav({ href: "/admin/outbox", label: "开发邮件箱", roles, group: "系统", order: 90 });

  app.get("/outbox", requireRole(...roles), zValidator("query", outboxQuery), async (c) => {
    const { to } = c.req.valid("query");
    const messages = await listOutbox(deps.db, { to, limit: 100 });
    return render(c, "mail/outbox", { messages, to: to ?? "", kind: deps.mailer.kind }, {
      layout: "admin/layout",
      title: "开发邮件箱",
    });
  });
  return app;
}
