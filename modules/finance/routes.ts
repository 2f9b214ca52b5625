import { Hono } from "hono";
import type { Context } from "hono";
import { zValidator } from "@hono/zod-validator";
import { z } from "zod";
import type { Config } from "../platform/config.ts";
import { chinaDay, chinaDayRange } from "../platform/china_time.ts";
import { decodeCsv } from "../platform/csv.ts";
import type { Db } from "../platform/database.ts";
import { DomainError, NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook } from "../platform/forms.ts";
import { render } from "../platform/views.ts";
import { randomToken } from "../platform/crypto.ts";
import { clientIp } from "../security/mod.ts";
import { registerAdminNav, requireRole, ROLES, writeAudit } from "../staff/mod.ts";
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
  resolveFlaggedNotify,
  sandboxOf,
} from "../topup/mod.ts";
import {
  type Actor,
  dailyReport,
  decideAdjustment,
  findCardsByStudentNumber,
  findTransfer,
  getReconciliation,
  listAdjustments,
  listReconciliations,
  proposeAdjustment,
  reconcileStatement,
  refundPayment,
  refundsOf,
  reportCsv,
} from "./service.ts";
import { acceptOfflineReview, listOfflineReviews, rejectOfflineReview } from "./offline.ts";

const VIEW = [ROLES.finance, ROLES.sysadmin] as const;
const ADMIN = { layout: "admin/layout" } as const;
const DATE_RE = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$/;

const idParam = z.string().regex(/^\d{1,15}$/);

const refundSchema = z.object({
  transfer_id: z.string().regex(/^\d{1,15}$/, "请选择要退款的交易"),
  amount: z.string().min(1, "请输入退款金额").max(20, "金额格式不正确"),
  reason: z.string().max(500, "原因不超过200字").default(""),
  token: z.string().max(100).default(""),
});

const topupRefundSchema = z.object({
  order_no: z.string().trim().regex(/^YXT\d{10,29}$/, "请输入正确的商户订单号"),
  amount: z.string().min(1, "请输入退回金额").max(20, "金额格式不正确"),
  reason: z.string().max(200, "原因不超过80字").default(""),
  token: z.string().max(100).default(""),
});

const adjustSchema = z.object({
  student_number: z.string().trim().min(1, "请输入学号").max(20, "学号格式不正确"),
  amount: z.string().min(1, "请输入调账金额").max(20, "金额格式不正确"),
  reason: z.string().max(500, "原因不超过200字").default(""),
});

const reportQuery = z.object({
  from: z.string().regex(DATE_RE).optional().catch(undefined),
  to: z.string().regex(DATE_RE).optional().catch(undefined),
  by: z.enum(["merchant", "terminal"]).optional().catch(undefined),
});

const decideSchema = z.object({
  note: z.string().trim().min(2, "请填写处理说明（至少2个字）").max(200, "处理说明不超过200字"),
});

const resolveSchema = z.object({
  resolution: z.string().trim().min(2, "请填写处理说明").max(200, "处理说明不超过200字"),
});

/** 财务处 console: refunds, adjustments (maker-checker), reports, reconciliation, flags. */
export function financeRoutes(deps: { db: Db; config: Config }): Hono<AppEnv> {
  const { db } = deps;
  const gateways = buildGateways(deps);
  const app = new Hono<AppEnv>();
  registerAdminNav({ href: "/admin/finance", label: "财务处", roles: [...VIEW] });
  const actor = (c: Context<AppEnv>): Actor => ({ staffId: c.get("staff")!.id, ip: clientIp(c) });
  const fail = (err: unknown) => {
    if (err instanceof DomainError && !(err instanceof NotFoundError)) {
      return { [err.field ?? "_form"]: err.userMessage, status: err.status };
    }
    throw err;
  };

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
      pending: (await listAdjustments(db, 200)).filter((a) => a.state === "proposed").length,
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
    async (c) => {
      const form = c.req.valid("form");
      try {
        await refundPayment(db, actor(c), {
          transferId: Number(form.transfer_id),
          amountText: form.amount,
          reason: form.reason,
          token: form.token,
        });
      } catch (err) {
        const { status, ...errors } = fail(err);
        return showRefunds(c, errors as Record<string, string>, form, status);
      }
      return c.redirect(`/admin/finance/refunds?transfer=${form.transfer_id}&refunded=1`, 303);
    },
  );

  // 调账 (maker-checker)
  const showAdjustments = async (
    c: Context<AppEnv>,
    errors: Record<string, string>,
    input: Record<string, string>,
    status = 200,
  ) =>
    render(c, "finance/adjustments", {
      list: await listAdjustments(db),
      errors,
      input,
      me: c.get("staff")!.id,
      canEdit: c.get("staff")!.roles.includes(ROLES.finance),
    }, { ...ADMIN, status, title: "调账" });

  app.get("/adjustments", requireRole(...VIEW), (c) => showAdjustments(c, {}, {}));

  app.post(
    "/adjustments",
    requireRole(ROLES.finance),
    zValidator(
      "form",
      adjustSchema,
      formErrorsHook((c, errors, input) => showAdjustments(c, errors, input, 422)),
    ),
    async (c) => {
      const form = c.req.valid("form");
      try {
        await proposeAdjustment(db, actor(c), {
          studentNumber: form.student_number,
          amountText: form.amount,
          reason: form.reason,
        });
      } catch (err) {
        const { status, ...errors } = fail(err);
        return showAdjustments(c, errors as Record<string, string>, form, status);
      }
      return c.redirect("/admin/finance/adjustments", 303);
    },
  );

  for (const verb of ["approve", "reject"] as const) {
    app.post(`/adjustments/:id/${verb}`, requireRole(ROLES.finance), async (c) => {
      const id = idParam.safeParse(c.req.param("id"));
      if (!id.success) throw new NotFoundError("adjustment");
      try {
        await decideAdjustment(db, actor(c), { id: Number(id.data), approve: verb === "approve" });
      } catch (err) {
        const { status, ...errors } = fail(err);
        return showAdjustments(c, errors as Record<string, string>, {}, status);
      }
      return c.redirect("/admin/finance/adjustments", 303);
    });
  }

  // 日报
  const reportRange = (q: z.infer<typeof reportQuery>) => {
    const to = q.to ?? chinaDay();
    const from = q.from ?? to;
    return {
      from: from <= to ? from : to,
      to: from <= to ? to : from,
      by: q.by ?? "merchant" as const,
    };
  };

  app.get("/reports", requireRole(...VIEW), zValidator("query", reportQuery), async (c) => {
    const range = reportRange(c.req.valid("query"));
    const rows = await dailyReport(db, range);
    const max = Math.max(1, ...rows.map((r) => r.amount));
    const chart = rows.slice(0, 30).map((r, i) => ({
      ...r,
      y: 10 + i * 28,
      width: Math.round((r.amount / max) * 380),
    }));
    return render(c, "finance/reports", {
      range,
      rows,
      chart,
      chartHeight: 20 + chart.length * 28,
      total: rows.reduce((s, r) => ({ count: s.count + r.count, amount: s.amount + r.amount }), {
        count: 0,
        amount: 0,
      }),
      query: new URLSearchParams(range).toString(),
    }, { ...ADMIN, title: "营业日报" });
  });

  app.get("/reports.csv", requireRole(...VIEW), zValidator("query", reportQuery), async (c) => {
    const range = reportRange(c.req.valid("query"));
    const csv = reportCsv(await dailyReport(db, range), range);
    return c.body(csv, 200, {
      "content-type": "text/csv; charset=utf-8",
      "content-disposition":
        `attachment; filename="report-${range.by}-${range.from}-${range.to}.csv"`,
    });
  });

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

  app.post("/reconcile", requireRole(ROLES.finance), async (c) => {
    const body = await c.req.parseBody();
    const file = body["statement"];
    const method = String(body["method"] ?? "");
    const from = String(body["from"] ?? "");
    const to = String(body["to"] ?? "");
    if (!gateways.has(method as "sandbox")) {
      return showReconcile(c, { method: "请选择支付渠道" }, 422);
    }
    if (!(file instanceof File) || file.size === 0) {
      return showReconcile(c, { statement: "请选择对账单文件（CSV）" }, 422);
    }
    if (file.size > 5_000_000) return showReconcile(c, { statement: "对账单文件不能超过5MB" }, 422);
    if ((from && !DATE_RE.test(from)) || (to && !DATE_RE.test(to))) {
      return showReconcile(c, { from: "日期格式应为 2026-11-25" }, 422);
    }
    // WeChat and bank statements opened in Excel are often saved as GBK or UTF-16.
    const text = decodeCsv(new Uint8Array(await file.arrayBuffer()));
    try {
      const id = await reconcileStatement(db, actor(c), {
        method: method as "sandbox",
        filename: file.name,
        text,
        from: from || undefined,
        to: to || undefined,
      });
      return c.redirect(`/admin/finance/reconcile/${id}`, 303);
    } catch (err) {
      const { status, ...errors } = fail(err);
      return showReconcile(c, errors as Record<string, string>, status);
    }
  });

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

  // 充值订单: look one up by order number or by 学号.
  app.get("/orders", requireRole(...VIEW), async (c) => {
    const q = (c.req.query("q") ?? "").trim().slice(0, 40);
    let orders: Awaited<ReturnType<typeof listOrders>> = [];
    if (/^YXT\d{10,29}$/.test(q)) orders = await listOrders(db, { orderNo: q, limit: 1 });
    else if (q) {
      for (const card of await findCardsByStudentNumber(db, q)) {
        orders.push(...await listOrders(db, { cardAccountId: card.id, limit: 100 }));
      }
    } else orders = await listOrders(db, { limit: 50 });
    return render(c, "finance/orders", { q, orders }, { ...ADMIN, title: "充值订单" });
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
    async (c) => {
      const form = c.req.valid("form");
      try {
        await requestTopupRefund(deps, gateways, actor(c), {
          orderNo: form.order_no,
          amountText: form.amount,
          reason: form.reason,
          token: form.token,
        });
      } catch (err) {
        const { status, ...errors } = fail(err);
        return showTopupRefunds(c, errors as Record<string, string>, form, status);
      }
      return c.redirect(`/admin/finance/topup-refunds?order=${form.order_no}&done=1`, 303);
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
      const staff = actor(c);
      const done = await db.transaction().execute(async (trx) => {
        const ok = await resolveFlaggedNotify(trx, Number(id.data), staff.staffId, resolution);
        if (ok) {
          await writeAudit(trx, {
            staffId: staff.staffId,
            action: "finance.notify_resolved",
            targetType: "topup_notify",
            targetId: id.data,
            after: { resolution },
            ip: staff.ip,
          });
        }
        return ok;
      });
      if (!done) throw new NotFoundError("flagged notify");
      return c.redirect("/admin/finance/flags", 303);
    },
  );

  // 脱机复核
  const showOffline = async (c: Context<AppEnv>, errors: Record<string, string>, status = 200) =>
    render(c, "finance/offline", {
      records: await listOfflineReviews(db),
      errors,
      canEdit: c.get("staff")!.roles.includes(ROLES.finance),
    }, { ...ADMIN, status, title: "脱机复核" });

  app.get("/offline", requireRole(...VIEW), (c) => showOffline(c, {}));

  for (const verb of ["accept", "reject"] as const) {
    app.post(
      `/offline/:id/${verb}`,
      requireRole(ROLES.finance),
      zValidator("form", decideSchema, formErrorsHook((c, errors) => showOffline(c, errors, 422))),
      async (c) => {
        const id = idParam.safeParse(c.req.param("id"));
        if (!id.success) throw new NotFoundError("offline review");
        const input = { id: Number(id.data), note: c.req.valid("form").note };
        try {
          if (verb === "accept") await acceptOfflineReview(db, actor(c), input);
          else await rejectOfflineReview(db, actor(c), input);
        } catch (err) {
          const { status, ...errors } = fail(err);
          return showOffline(c, errors as Record<string, string>, status);
        }
        return c.redirect("/admin/finance/offline", 303);
      },
    );
  }

  return app;
}
