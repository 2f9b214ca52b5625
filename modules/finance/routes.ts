import { Hono } from "hono";
import type { Context } from "hono";
import { zValidator } from "@hono/zod-validator";
import type { Config } from "../platform/config.ts";
import { chinaDay, chinaDayRange } from "../platform/china_time.ts";
import type { Db } from "../platform/database.ts";
import { NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { render } from "../platform/views.ts";
import { randomToken } from "../platform/crypto.ts";
import { ALL_ROWS, exportLinks, exportTable, pager, paging } from "../platform/listing.ts";
import { financeOrders, ORDER_COLUMNS } from "./order_list.ts";
import { clientIp } from "../security/mod.ts";
import { registerAdminNav, requireRole, ROLES } from "../staff/mod.ts";
import { listNegativeBalances, listTransfers } from "../wallet/mod.ts";
import {
  buildGateways,
  listFlaggedNotifies,
  listFlaggedOrders,
  listOrders,
  listTopupRefunds,
  refundable,
  refundsOfOrder,
  requestTopupRefund,
  sandboxOf,
} from "../topup/mod.ts";
import {
  type Actor,
  ADJUSTMENT_COLUMNS,
  ADJUSTMENT_STATES,
  countPendingAdjustments,
  decideAdjustment,
  findCardsByStudentNumber,
  findTransfer,
  listAdjustments,
  proposeAdjustment,
  refundPayment,
  refundsOf,
  resolveFlag,
} from "./service.ts";
import {
  dailyReport,
  quickRanges,
  reportChart,
  reportRange,
  reportTable,
  trendChart,
} from "./reports.ts";
import { getReconciliation, listReconciliations, reconcileStatement } from "./reconciliations.ts";
import {
  acceptOfflineReview,
  listOfflineReviews,
  OFFLINE_REVIEW_COLUMNS,
  OFFLINE_REVIEW_STATES,
  rejectOfflineReview,
} from "./offline.ts";
import { settlementRoutes } from "./settlement_routes.ts";
import {
  adjustmentsQuery,
  adjustSchema,
  DATE_RE,
  decideSchema,
  idParam,
  offlineReviewsQuery,
  ordersQuery,
  reconcileSchema,
  refundSchema,
  reportQuery,
  resolveSchema,
  topupRefundSchema,
} from "./schemas.ts";

const VIEW = [ROLES.finance, ROLES.sysadmin] as const;
const ADMIN = { layout: "admin/layout" } as const;

/** 财务处 console: refunds, adjustments (maker-checker), reports, reconciliation, flags. */
export function financeRoutes(deps: { db: Db; config: Config }): Hono<AppEnv> {
  const { db } = deps;
  const gateways = buildGateways(deps);
  const statement = reconcileSchema(new Set(gateways.keys()));
  const app = new Hono<AppEnv>();
  // Each page of 财务处 in the sidebar, in the order of a finance member's day.
  const pages: Array<[string, string]> = [
    ["", "概览"],
    ["/reports", "营业日报"],
    ["/orders", "充值订单"],
    ["/refunds", "退款"],
    ["/topup-refunds", "充值退回"],
    ["/adjustments", "调账"],
    ["/reconcile", "充值对账"],
    ["/settlements", "商户结算"],
    ["/flags", "异常与负余额"],
    ["/offline", "脱机复核"],
  ];
  pages.forEach(([path, label], i) =>
    registerAdminNav({
      href: `/admin/finance${path}`,
      label,
      roles: [...VIEW],
      group: "财务处",
      order: 10 + i,
    })
  );
  const actor = (c: Context<AppEnv>): Actor => ({ staffId: c.get("staff")!.id, ip: clientIp(c) });
  app.route("/settlements", settlementRoutes(deps));

  app.get("/", requireRole(...VIEW), async (c) => {
    const [notifies, orders, negative] = await Promise.all([
      listFlaggedNotifies(db, { limit: 500 }),
      listFlaggedOrders(db, 500),
      listNegativeBalances(db),
    ]);
    return render(c, "finance/home", {
      flaggedNotifies: notifies.length,
      flaggedOrders: orders.length,
      negative,
      pending: await countPendingAdjustments(db),
    }, { ...ADMIN, title: "财务处" });
  });

  // 退款
  const showRefunds = async (
    c: Context<AppEnv>,
    errors: Record<string, string>,
    input: Record<string, string>,
    status = 200,
  ) => {
    const transferId = Number(input.transfer_id || c.req.query("transfer") || 0);
    const student = (input.student ?? c.req.query("student") ?? "").slice(0, 20);
    const transfer = Number.isSafeInteger(transferId) && transferId > 0
      ? await findTransfer(db, transferId)
      : null;
    let candidates: Awaited<ReturnType<typeof listTransfers>> = [];
    if (student) {
      const cards = await findCardsByStudentNumber(db, student);
      for (const card of cards) {
        candidates.push(
          ...await listTransfers(db, {
            cardAccountId: card.id,
            kinds: ["purchase", "shower"],
            limit: 50,
          }),
        );
      }
    }
    candidates = candidates.slice(0, 50);
    return render(c, "finance/refunds", {
      transfer,
      refunds: transfer ? await refundsOf(db, transfer.id) : [],
      candidates,
      student,
      searched: !!(c.req.query("transfer") || student),
      errors,
      input,
      token: input.token || randomToken(24),
      done: c.req.query("refunded") === "1",
      canEdit: c.get("staff")!.roles.includes(ROLES.finance),
    }, { ...ADMIN, status, title: "退款" });
  };

  app.get("/refunds", requireRole(...VIEW), (c) => showRefunds(c, {}, {}));

  app.post(
    "/refunds",
    requireRole(ROLES.finance),
    zValidator(
      "form",
      refundSchema,
      formErrorsHook((c, errors, input) => showRefunds(c, errors, input, 422)),
    ),
    (c) => {
      const { typed, ...form } = c.req.valid("form");
      return runForm(
        () => refundPayment(db, actor(c), form),
        (errors, err) => showRefunds(c, errors, typed, err.status),
        () => c.redirect(`/admin/finance/refunds?transfer=${form.transferId}&refunded=1`, 303),
      );
    },
  );

  // 调账 (maker-checker)
  const showAdjustments = async (
    c: Context<AppEnv>,
    errors: Record<string, string>,
    input: Record<string, string>,
    status = 200,
  ) => {
    const q = adjustmentsQuery.parse(c.req.query());
    const shown = { state: q.state };
    if (q.export) {
      const { rows } = await listAdjustments(db, shown, () => ALL_ROWS);
      return exportTable(c, { name: "调账", columns: ADJUSTMENT_COLUMNS }, rows, q.export);
    }
    const { rows, total, page } = await listAdjustments(db, shown, (t) => paging(q.page, t));
    return render(c, "finance/adjustments", {
      list: rows,
      q: shown,
      stateLabels: ADJUSTMENT_STATES,
      pager: pager("/admin/finance/adjustments", shown, total, page),
      exports: exportLinks("/admin/finance/adjustments", shown),
      errors,
      input,
      me: c.get("staff")!.id,
      canEdit: c.get("staff")!.roles.includes(ROLES.finance),
    }, { ...ADMIN, status, title: "调账" });
  };

  app.get("/adjustments", requireRole(...VIEW), (c) => showAdjustments(c, {}, {}));

  app.post(
    "/adjustments",
    requireRole(ROLES.finance),
    zValidator(
      "form",
      adjustSchema,
      formErrorsHook((c, errors, input) => showAdjustments(c, errors, input, 422)),
    ),
    (c) => {
      const { typed, ...form } = c.req.valid("form");
      return runForm(
        () => proposeAdjustment(db, actor(c), form),
        (errors, err) => showAdjustments(c, errors, typed, err.status),
        () => c.redirect("/admin/finance/adjustments", 303),
      );
    },
  );

  for (const verb of ["approve", "reject"] as const) {
    app.post(`/adjustments/:id/${verb}`, requireRole(ROLES.finance), (c) => {
      const id = idParam.safeParse(c.req.param("id"));
      if (!id.success) throw new NotFoundError("adjustment");
      return runForm(
        () => decideAdjustment(db, actor(c), { id: Number(id.data), approve: verb === "approve" }),
        (errors, err) => showAdjustments(c, errors, {}, err.status),
        () => c.redirect("/admin/finance/adjustments", 303),
      );
    });
  }

  // 营业日报: the days side by side, and merchants or terminals ranked; CSV and Excel.
  app.get("/reports", requireRole(...VIEW), zValidator("query", reportQuery), async (c) => {
    const range = reportRange(c.req.valid("query"));
    const { rows, days } = await dailyReport(db, range);
    const query = new URLSearchParams(range).toString();
    return render(c, "finance/reports", {
      range,
      rows,
      days,
      ...reportChart(rows),
      trend: trendChart(days),
      quick: quickRanges(),
      query,
    }, { ...ADMIN, title: "营业日报" });
  });

  for (const format of ["csv", "xlsx"] as const) {
    app.get(
      `/reports.${format}`,
      requireRole(...VIEW),
      zValidator("query", reportQuery),
      async (c) => {
        const range = reportRange(c.req.valid("query"));
        const { rows } = await dailyReport(db, range);
        return exportTable(c, reportTable(range), rows, format, `${range.from}-${range.to}`);
      },
    );
  }

  // 充值对账
  const showReconcile = async (c: Context<AppEnv>, errors: Record<string, string>, status = 200) =>
    render(c, "finance/reconcile", {
      list: await listReconciliations(db),
      errors,
      methods: [...gateways.values()].map((g) => ({ value: g.method, label: g.label })),
      sandbox: !!sandboxOf(gateways),
      today: chinaDay(),
      canEdit: c.get("staff")!.roles.includes(ROLES.finance),
    }, { ...ADMIN, status, title: "充值对账" });

  app.get("/reconcile", requireRole(...VIEW), (c) => showReconcile(c, {}));

  app.post(
    "/reconcile",
    requireRole(ROLES.finance),
    zValidator("form", statement, formErrorsHook((c, errors) => showReconcile(c, errors, 422))),
    (c) =>
      runForm(
        () => reconcileStatement(db, actor(c), c.req.valid("form")),
        (errors, err) => showReconcile(c, errors, err.status),
        (id) => c.redirect(`/admin/finance/reconcile/${id}`, 303),
      ),
  );

  app.get("/reconcile/sandbox-statement.csv", requireRole(...VIEW), (c) => {
    const sandbox = sandboxOf(gateways);
    if (!sandbox) throw new NotFoundError("sandbox statement");
    const day = DATE_RE.test(c.req.query("date") ?? "") ? c.req.query("date")! : chinaDay();
    return sandbox.statementCsv(...chinaDayRange(day)).then((csv) =>
      c.body(csv, 200, {
        "content-type": "text/csv; charset=utf-8",
        "content-disposition": `attachment; filename="sandbox-${day}.csv"`,
      })
    );
  });

  app.get("/reconcile/:id", requireRole(...VIEW), async (c) => {
    const id = idParam.safeParse(c.req.param("id"));
    const rec = id.success ? await getReconciliation(db, Number(id.data)) : null;
    if (!rec) throw new NotFoundError("reconciliation");
    return render(c, "finance/reconcile_result", { rec }, { ...ADMIN, title: "对账结果" });
  });

  // 充值订单: found by order number or 学号, filtered by state and days, paged, exported.
  app.get("/orders", requireRole(...VIEW), zValidator("query", ordersQuery), async (c) => {
    const q = c.req.valid("query");
    if (q.export) {
      const { rows } = await financeOrders(db, q, () => ALL_ROWS);
      return exportTable(
        c,
        { name: "充值订单", columns: ORDER_COLUMNS },
        rows,
        q.export,
        chinaDay(),
      );
    }
    const { rows, total, page } = await financeOrders(db, q, (t) => paging(q.page, t));
    return render(c, "finance/orders", {
      q: q.shown,
      orders: rows,
      pager: pager("/admin/finance/orders", q.shown, total, page),
      exports: exportLinks("/admin/finance/orders", q.shown),
    }, { ...ADMIN, title: "充值订单" });
  });

  // 充值退回: a paid top-up paid back through its gateway (退回微信).
  const showTopupRefunds = async (
    c: Context<AppEnv>,
    errors: Record<string, string>,
    input: Record<string, string>,
    status = 200,
  ) => {
    const orderNo = (input.order_no ?? c.req.query("order") ?? "").trim().slice(0, 40);
    const order = /^YXT\d{10,29}$/.test(orderNo)
      ? (await listOrders(db, { orderNo, limit: 1 }))[0] ?? null
      : null;
    const refunds = order ? await refundsOfOrder(db, order.id) : [];
    return render(c, "finance/topup_refunds", {
      orderNo,
      order,
      refunds,
      left: order ? refundable(order.amount, refunds) : 0,
      recent: order ? [] : await listTopupRefunds(db, 50),
      errors,
      input,
      token: input.token || randomToken(24),
      done: c.req.query("done") === "1",
      canEdit: c.get("staff")!.roles.includes(ROLES.finance),
    }, { ...ADMIN, status, title: "充值退回" });
  };

  app.get("/topup-refunds", requireRole(...VIEW), (c) => showTopupRefunds(c, {}, {}));

  app.post(
    "/topup-refunds",
    requireRole(ROLES.finance),
    zValidator(
      "form",
      topupRefundSchema,
      formErrorsHook((c, errors, input) => showTopupRefunds(c, errors, input, 422)),
    ),
    (c) => {
      const { typed, ...form } = c.req.valid("form");
      return runForm(
        () => requestTopupRefund(deps, gateways, actor(c), form),
        (errors, err) => showTopupRefunds(c, errors, typed, err.status),
        () => c.redirect(`/admin/finance/topup-refunds?order=${form.orderNo}&done=1`, 303),
      );
    },
  );

  // 异常通知
  const showFlags = async (c: Context<AppEnv>, errors: Record<string, string>, status = 200) =>
    render(c, "finance/flags", {
      notifies: await listFlaggedNotifies(db),
      orders: await listFlaggedOrders(db),
      negative: await listNegativeBalances(db),
      errors,
      canEdit: c.get("staff")!.roles.includes(ROLES.finance),
    }, { ...ADMIN, status, title: "异常与负余额" });

  app.get("/flags", requireRole(...VIEW), (c) => showFlags(c, {}));

  app.post(
    "/flags/:id/resolve",
    requireRole(ROLES.finance),
    zValidator("form", resolveSchema, formErrorsHook((c, errors) => showFlags(c, errors, 422))),
    async (c) => {
      const id = idParam.safeParse(c.req.param("id"));
      if (!id.success) throw new NotFoundError("flagged notify");
      const resolution = c.req.valid("form").resolution;
      await resolveFlag(db, actor(c), { id: Number(id.data), resolution });
      return c.redirect("/admin/finance/flags", 303);
    },
  );

  // 脱机复核
  const showOffline = async (c: Context<AppEnv>, errors: Record<string, string>, status = 200) => {
    const q = offlineReviewsQuery.parse(c.req.query());
    const shown = { state: q.state };
    if (q.export) {
      const { rows } = await listOfflineReviews(db, shown, () => ALL_ROWS);
      return exportTable(c, { name: "脱机复核", columns: OFFLINE_REVIEW_COLUMNS }, rows, q.export);
    }
    const { rows, total, page } = await listOfflineReviews(db, shown, (t) => paging(q.page, t));
    return render(c, "finance/offline", {
      records: rows,
      q: shown,
      stateLabels: OFFLINE_REVIEW_STATES,
      pager: pager("/admin/finance/offline", shown, total, page),
      exports: exportLinks("/admin/finance/offline", shown),
      errors,
      canEdit: c.get("staff")!.roles.includes(ROLES.finance),
    }, { ...ADMIN, status, title: "脱机复核" });
  };

  app.get("/offline", requireRole(...VIEW), (c) => showOffline(c, {}));

  for (const verb of ["accept", "reject"] as const) {
    app.post(
      `/offline/:id/${verb}`,
      requireRole(ROLES.finance),
      zValidator("form", decideSchema, formErrorsHook((c, errors) => showOffline(c, errors, 422))),
      (c) => {
        const id = idParam.safeParse(c.req.param("id"));
        if (!id.success) throw new NotFoundError("offline review");
        const input = { id: Number(id.data), note: c.req.valid("form").note };
        return runForm(
          async () => {
            if (verb === "accept") await acceptOfflineReview(db, actor(c), input);
            else await rejectOfflineReview(db, actor(c), input);
          },
          (errors, err) => showOffline(c, errors, err.status),
          () => c.redirect("/admin/finance/offline", 303),
        );
      },
    );
  }

  return app;
}
