/**
 * 商户结算's pages (mounted at /admin/finance/settlements): the settled merchants and what each
 * is owed, the statements (paged, CSV/Excel), one statement with its maker-checker steps, its
 * lines (CSV/Excel) and a printable view, and each merchant's 结算条件.
 */
import { Hono } from "hono";
import type { Context } from "hono";
import { zValidator } from "@hono/zod-validator";
import type { Db } from "../platform/database.ts";
import { NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { render } from "../platform/views.ts";
import {
  ALL_ROWS,
  type Column,
  exportLinks,
  exportTable,
  pager,
  paging,
} from "../platform/listing.ts";
import { clientIp } from "../security/mod.ts";
import { requireRole, ROLES, staffByIds } from "../staff/mod.ts";
import {
  getMerchant,
  listMerchants,
  PERIOD_LABELS,
  setSettlementTerms,
  settlementTerms,
} from "../merchant/mod.ts";
import { KIND_LABELS } from "../wallet/mod.ts";
import type { Actor } from "./service.ts";
import {
  decideStatement,
  getStatement,
  listStatements,
  payStatement,
  prepareStatements,
  settlementOverview,
  type Statement,
  STATEMENT_STATES,
  statementLines,
  verifySettlements,
} from "./settlement.ts";
import {
  idParam,
  prepareSchema,
  settlementDecisionSchema,
  settlementPaySchema,
  settlementsQuery,
  termsSchema,
} from "./schemas.ts";

const VIEW = [ROLES.finance, ROLES.sysadmin] as const;
const ADMIN = { layout: "admin/layout" } as const;
const LINES_ON_PAGE = 200;

/** The notices after a step: a fixed set, so the query cannot inject text. */
const NOTICES: Record<string, string> = {
  approved: "已复核通过，结算单已冻结，可以付款",
  rejected: "已退回结算单，其中的交易可重新编制",
  paid: "已登记付款",
  terms: "已保存结算条件",
  none: "没有可编制的结算单：已结束的周期都已编制，或没有交易",
};

export type Row = Statement & { merchantName: string };

/** The statements list as a file (finance's and the merchant operator's). */
export const LIST_COLUMNS: Column<Row>[] = [
  { header: "结算单号", value: (s) => s.id, kind: "int" },
  { header: "商户", value: (s) => s.merchantName },
  { header: "周期开始", value: (s) => s.period_start },
  { header: "周期结束", value: (s) => s.period_end },
  { header: "消费笔数", value: (s) => s.gross_count, kind: "int" },
  { header: "消费金额", value: (s) => s.gross, kind: "yuan" },
  { header: "退款笔数", value: (s) => s.refund_count, kind: "int" },
  { header: "退款金额", value: (s) => s.refunds, kind: "yuan" },
  { header: "净额", value: (s) => s.net, kind: "yuan" },
  { header: "管理费率", value: (s) => `${(s.fee_rate_bp / 100).toFixed(2)}%` },
  { header: "管理费", value: (s) => s.fee, kind: "yuan" },
  { header: "应付金额", value: (s) => s.payable, kind: "yuan" },
  { header: "状态", value: (s) => STATEMENT_STATES[s.state] },
  { header: "银行流水号", value: (s) => s.bank_reference },
  { header: "付款时间", value: (s) => s.paid_at, kind: "time" },
];

type Line = Awaited<ReturnType<typeof statementLines>>["lines"][number];

/** A statement's lines as a file (finance's and the merchant operator's). */
export const LINE_COLUMNS: Column<Line>[] = [
  { header: "流水号", value: (l) => l.transferId, kind: "int" },
  { header: "时间", value: (l) => l.createdAt, kind: "time" },
  { header: "类型", value: (l) => (KIND_LABELS as Record<string, string>)[l.kind] ?? l.kind },
  { header: "终端", value: (l) => l.terminalId },
  { header: "金额", value: (l) => l.delta, kind: "yuan" },
];

/**
 * A statement as its page and its printable view read it: with its merchant, terms, and the
 * names of who prepared, approved and paid it (the merchant's operator prints the same view).
 */
export async function statementView(db: Db, s: Statement) {
  const merchant = await getMerchant(db, s.merchant_id);
  const terms = (await settlementTerms(db, [s.merchant_id])).get(s.merchant_id) ?? null;
  const staff = await staffByIds(db, [s.prepared_by, s.decided_by, s.paid_by]);
  const name = (id: number | null) => (id === null ? "" : staff.get(id)?.name ?? `#${id}`);
  return {
    s: shown(s),
    merchant: merchant ?? { id: s.merchant_id, name: `#${s.merchant_id}` },
    terms,
    names: {
      preparedBy: name(s.prepared_by),
      decidedBy: name(s.decided_by),
      paidBy: name(s.paid_by),
    },
    stateLabels: STATEMENT_STATES,
    periodLabels: PERIOD_LABELS,
  };
}

/** A statement in the shape the views read (camelCase). */
export function shown(s: Statement) {
  return {
    id: s.id,
    period: s.period,
    periodStart: s.period_start,
    periodEnd: s.period_end,
    gross: s.gross,
    grossCount: s.gross_count,
    refunds: s.refunds,
    refundCount: s.refund_count,
    net: s.net,
    feeRateBp: s.fee_rate_bp,
    fee: s.fee,
    payable: s.payable,
    state: s.state,
    preparedBy: s.prepared_by,
    preparedAt: s.prepared_at,
    decidedBy: s.decided_by,
    decidedAt: s.decided_at,
    decisionNote: s.decision_note,
    paidAt: s.paid_at,
    bankReference: s.bank_reference,
  };
}

/** 商户结算 under /admin/finance/settlements. */
export function settlementRoutes(deps: { db: Db }): Hono<AppEnv> {
  const { db } = deps;
  const app = new Hono<AppEnv>();
  const actor = (c: Context<AppEnv>): Actor => ({ staffId: c.get("staff")!.id, ip: clientIp(c) });
  const canEdit = (c: Context<AppEnv>) => c.get("staff")!.roles.includes(ROLES.finance);

  const showList = async (c: Context<AppEnv>, errors: Record<string, string>, status = 200) => {
    const q = settlementsQuery.parse(c.req.query());
    const filter = { merchantId: q.merchant, state: q.state };
    const shownQuery = { merchant: q.merchant, state: q.state };
    if (q.export) {
      const { rows } = await listStatements(db, filter, ALL_ROWS);
      return exportTable(c, { name: "商户结算单", columns: LIST_COLUMNS }, rows, q.export);
    }
    const { rows, total } = await listStatements(db, filter, paging(q.page));
    const prepared = Number(c.req.query("prepared"));
    const done = c.req.query("done") ?? "";
    return render(c, "finance/settlements", {
      merchants: await settlementOverview(db),
      problems: await verifySettlements(db),
      rows: rows.map((r) => ({ ...shown(r), merchantName: r.merchantName })),
      q: shownQuery,
      stateLabels: STATEMENT_STATES,
      periodLabels: PERIOD_LABELS,
      pager: pager("/admin/finance/settlements", shownQuery, total, paging(q.page, total)),
      exports: exportLinks("/admin/finance/settlements", shownQuery),
      notice: Number.isSafeInteger(prepared) && prepared > 0
        ? `已编制 ${prepared} 张结算单，请另一位财务人员复核`
        : NOTICES[done] ?? null,
      errors,
      canEdit: canEdit(c),
    }, { ...ADMIN, status, title: "商户结算" });
  };

  app.get("/", requireRole(...VIEW), (c) => showList(c, {}));

  app.post(
    "/prepare",
    requireRole(ROLES.finance),
    zValidator("form", prepareSchema, formErrorsHook((c, errors) => showList(c, errors, 422))),
    (c) =>
      runForm(
        () => prepareStatements(db, actor(c), c.req.valid("form")),
        (errors, err) => showList(c, errors, err.status),
        (r) =>
          c.redirect(
            r.prepared.length
              ? `/admin/finance/settlements?prepared=${r.prepared.length}`
              : "/admin/finance/settlements?done=none",
            303,
          ),
      ),
  );

  // 结算条件
  const showTerms = async (
    c: Context<AppEnv>,
    errors: Record<string, string>,
    input: { merchantId?: number; typed?: Record<string, string> },
    status = 200,
  ) => {
    const merchants = await listMerchants(db);
    const terms = await settlementTerms(db);
    return render(c, "finance/settlement_terms", {
      merchants: merchants.map((m) => ({ ...m, terms: terms.get(m.id) ?? null })),
      periodLabels: PERIOD_LABELS,
      input,
      errors,
      notice: c.req.query("done") === "terms" ? NOTICES.terms : null,
      canEdit: canEdit(c),
    }, { ...ADMIN, status, title: "结算条件" });
  };

  app.get("/terms", requireRole(...VIEW), (c) => showTerms(c, {}, {}));

  app.post(
    "/terms/:merchant",
    requireRole(ROLES.finance),
    zValidator(
      "form",
      termsSchema,
      formErrorsHook((c, errors, typed) =>
        showTerms(c, errors, { merchantId: Number(c.req.param("merchant")), typed }, 422)
      ),
    ),
    async (c) => {
      const id = idParam.safeParse(c.req.param("merchant"));
      const merchant = id.success ? await getMerchant(db, Number(id.data)) : null;
      if (!merchant) throw new NotFoundError("merchant");
      const { typed, ...terms } = c.req.valid("form");
      return runForm(
        () => setSettlementTerms(db, actor(c), { merchantId: merchant.id, ...terms }),
        (errors, err) => showTerms(c, errors, { merchantId: merchant.id, typed }, err.status),
        () => c.redirect(`/admin/finance/settlements/terms?done=terms#terms-${merchant.id}`, 303),
      );
    },
  );

  // One statement
  const load = async (c: Context<AppEnv>) => {
    const id = idParam.safeParse(c.req.param("id"));
    const s = id.success ? await getStatement(db, Number(id.data)) : null;
    if (!s) throw new NotFoundError("settlement statement");
    return await statementView(db, s);
  };

  const showStatement = async (
    c: Context<AppEnv>,
    errors: Record<string, string>,
    status = 200,
  ) => {
    const data = await load(c);
    const format = c.req.query("export");
    if (format === "csv" || format === "xlsx") {
      const { lines } = await statementLines(db, data.s.id, ALL_ROWS);
      return exportTable(
        c,
        { name: `结算单${data.s.id}`, columns: LINE_COLUMNS },
        lines,
        format,
        `${data.s.periodStart}_${data.s.periodEnd}`,
      );
    }
    const { lines, total } = await statementLines(db, data.s.id, {
      page: 1,
      perPage: LINES_ON_PAGE,
      offset: 0,
    });
    return render(c, "finance/settlement", {
      ...data,
      lines,
      lineCount: total,
      kindLabels: KIND_LABELS,
      me: c.get("staff")!.id,
      notice: NOTICES[c.req.query("done") ?? ""] ?? null,
      errors,
      canEdit: canEdit(c),
    }, { ...ADMIN, status, title: `结算单 #${data.s.id}` });
  };

  app.get("/:id", requireRole(...VIEW), (c) => showStatement(c, {}));

  app.get(
    "/:id/print",
    requireRole(...VIEW),
    async (c) =>
      render(c, "finance/settlement_print", { ...await load(c), printedAt: new Date() }, {
        layout: null,
      }),
  );

  const statementId = (c: Context<AppEnv>) => {
    const id = idParam.safeParse(c.req.param("id"));
    if (!id.success) throw new NotFoundError("settlement statement");
    return Number(id.data);
  };

  for (const verb of ["approve", "reject"] as const) {
    app.post(
      `/:id/${verb}`,
      requireRole(ROLES.finance),
      zValidator(
        "form",
        settlementDecisionSchema,
        formErrorsHook((c, errors) => showStatement(c, errors, 422)),
      ),
      (c) => {
        const id = statementId(c);
        return runForm(
          () =>
            decideStatement(db, actor(c), {
              id,
              approve: verb === "approve",
              note: c.req.valid("form").note,
            }),
          (errors, err) => showStatement(c, errors, err.status),
          () =>
            c.redirect(
              `/admin/finance/settlements/${id}?done=${
                verb === "approve" ? "approved" : "rejected"
              }`,
              303,
            ),
        );
      },
    );
  }

  app.post(
    "/:id/pay",
    requireRole(ROLES.finance),
    zValidator(
      "form",
      settlementPaySchema,
      formErrorsHook((c, errors) => showStatement(c, errors, 422)),
    ),
    (c) => {
      const id = statementId(c);
      return runForm(
        () => payStatement(db, actor(c), { id, bankReference: c.req.valid("form").bank_reference }),
        (errors, err) => showStatement(c, errors, err.status),
        () => c.redirect(`/admin/finance/settlements/${id}?done=paid`, 303),
      );
    },
  );

  return app;
}
