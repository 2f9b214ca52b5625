/**
 * 本商户 (mounted at /admin/my-merchant): a merchant operator's read-only page — today's takings,
 * what the school owes the merchant, its approved and paid statements (CSV/Excel) and each one's
 * printable view. Only the merchant_operator role, and only its own merchant.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import type { Db } from "../platform/database.ts";
import { ForbiddenError, NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { render } from "../platform/views.ts";
import { ALL_ROWS, exportLinks, exportTable, pager, paging } from "../platform/listing.ts";
import { registerAdminNav, requireRole, ROLES } from "../staff/mod.ts";
import { type Merchant, merchantOfOperator, PERIOD_LABELS } from "../merchant/mod.ts";
import { STATEMENT_STATES, statementLines } from "./settlement.ts";
import { LINE_COLUMNS, LIST_COLUMNS, shown, statementView } from "./settlement_routes.ts";
import { merchantToday, operatorStatement, operatorStatements } from "./portal.ts";
import { portalQuery, portalStatementQuery } from "./schemas.ts";

const PATH = "/admin/my-merchant";

/** 本商户 for merchant operators. */
export function merchantPortalRoutes(deps: { db: Db }): Hono<AppEnv> {
  const { db } = deps;
  const app = new Hono<AppEnv>();
  const operator = requireRole(ROLES.merchantOperator);
  registerAdminNav({
    href: PATH,
    label: "本商户结算",
    roles: [ROLES.merchantOperator],
    group: "商户",
  });
  const merchantOf = async (c: Context<AppEnv>): Promise<Merchant> => {
    const staff = c.get("staff")!;
    const merchant = await merchantOfOperator(db, staff.id);
    if (!merchant) {
      throw new ForbiddenError(
        `Staff ${staff.username} runs no merchant`,
        "该账号未关联商户，请联系系统管理员",
      );
    }
    return merchant;
  };

  app.get("/", operator, async (c) => {
    const merchant = await merchantOf(c);
    const q = portalQuery.parse(c.req.query());
    const named = (rows: Awaited<ReturnType<typeof operatorStatements>>["rows"]) =>
      rows.map((r) => ({ ...r, merchantName: merchant.name }));
    if (q.export) {
      const { rows } = await operatorStatements(db, merchant, ALL_ROWS);
      return exportTable(
        c,
        { name: `${merchant.name}结算单`, columns: LIST_COLUMNS },
        named(rows),
        q.export,
      );
    }
    let { rows, total } = await operatorStatements(db, merchant, paging(q.page));
    // A page past the end (the link is old) shows the last page, as the pager says.
    const at = paging(q.page, total);
    if (at.offset !== paging(q.page).offset) {
      rows = (await operatorStatements(db, merchant, at)).rows;
    }
    return render(c, "finance/portal", {
      merchant,
      today: await merchantToday(db, merchant),
      rows: rows.map(shown),
      stateLabels: STATEMENT_STATES,
      periodLabels: PERIOD_LABELS,
      pager: pager(PATH, {}, total, at),
      exports: exportLinks(PATH, {}),
    }, { layout: "admin/layout", title: `本商户 · ${merchant.name}` });
  });

  app.get("/statement", operator, async (c) => {
    const q = portalStatementQuery.safeParse(c.req.query());
    if (!q.success) throw new NotFoundError("settlement statement");
    const s = await operatorStatement(db, await merchantOf(c), q.data.id);
    if (q.data.export) {
      const { lines } = await statementLines(db, s.id, ALL_ROWS);
      return exportTable(
        c,
        { name: `结算单${s.id}`, columns: LINE_COLUMNS },
        lines,
        q.data.export,
        `${s.period_start}_${s.period_end}`,
      );
    }
    return render(c, "finance/settlement_print", {
      ...await statementView(db, s),
      printedAt: new Date(),
    }, { layout: null });
  });

  return app;
}
