import { Hono } from "hono";
import type { Context } from "hono";
import { zValidator } from "@hono/zod-validator";
import { type RawBuilder, sql } from "kysely";
import { chinaMonth } from "../platform/china_time.ts";
import type { Db } from "../platform/database.ts";
import type { Config } from "../platform/config.ts";
import { NotFoundError } from "../platform/errors.ts";
import type { AppEnv } from "../platform/http.ts";
import { formErrorsHook, runForm } from "../platform/forms.ts";
import { type FieldErrors, render } from "../platform/views.ts";
import { fenToYuanText } from "../platform/money.ts";
import {
  checkSessionInPageQuery,
  requireStudent,
  sendToSignIn,
  studentPageQuery,
} from "../security/mod.ts";
import { registerAdminNav, requireRole, ROLES } from "../staff/mod.ts";
import {
  type BoundCard,
  boundCardSql,
  findBoundCard,
  findBoundCardWith,
  readBoundCard,
} from "../card/mod.ts";
import { listNegativeBalances } from "./ledger.ts";
import { issuePaymentCode, paymentCodeState, waitForPaymentCode } from "./codes.ts";
import { getPaySettings, updatePaySettings } from "./pay_settings.ts";
import {
  categoryOf,
  getTransaction,
  HISTORY_TYPES,
  KIND_LABELS,
  spendingTotals,
  topupOf,
} from "./history.ts";
import { historyPage } from "./history_page.ts";
import { spendingStats } from "./stats.ts";
import { barChartSvg } from "./chart.ts";
import { PaymentCodeFrozenError } from "./errors.ts";
import { type LedgerCheck, verifyLedger } from "./verify.ts";
import { readWalletSummary, walletSummarySql } from "./summary.ts";
import { balanceOf } from "./_rules.ts";
import { labelRows } from "./labels.ts";
import { historyQuery, settingsForm, statsQuery } from "./schemas.ts";
import { barcodeSvg, groupDigits, maskDigits, qrSvg } from "./qr.ts";
import { listDevices } from "./devices.ts";
import { getOfflineLimits } from "./offline_limits.ts";
import { offlineCodeRoutes } from "./offline_routes.ts";

type C = Context<AppEnv>;

/** A zValidator hook: a query that fails its schema gets the error page with `message`. */
function badQueryPage(message: string, title: string) {
  return (
    result: { success: boolean },
    // deno-lint-ignore no-explicit-any
    c: Context<any>,
  ): Response | Promise<Response> | undefined =>
    result.success
      ? undefined
      : render(c as C, "error", { message, status: 400 }, { status: 400, title });
}

/** The signed-in student's bound card, or a page telling them to bind one. */
async function boundCard(c: C, db: Db): Promise<BoundCard | Response> {
  const card = await findBoundCard(db, c.get("accountId")!);
  if (!card) return render(c, "wallet/no_card", {}, { status: 200, title: "校园一信通" });
  return card;
}

interface PaycodeColumns extends Record<string, unknown> {
  code_frozen: boolean;
  balance: number;
  held: number;
  overdraft: number;
}

/** The student's 付款码 freeze (付款码设置) and the balance it pays from, beside the bound card. */
function paycodeExtraOf(cardAccountId: RawBuilder<number>): RawBuilder<PaycodeColumns> {
  return sql<PaycodeColumns>`
    select code_frozen, balance, held, overdraft from ledger_accounts
    where card_account_id = ${cardAccountId}`;
}

/** The bound card of a login account with `paycodeExtraOf`'s columns (the refresh's statement). */
function paycodeCardSql(accountId: RawBuilder<number>) {
  return boundCardSql(accountId, paycodeExtraOf);
}

/** What the 付款码 card shows: the code as barcode and QR, and where the money comes from. */
function codeCardData(
  code: string,
  card: BoundCard,
  extra: { balance: number | null; held: number | null; overdraft: number | null },
) {
  return {
    code,
    svg: qrSvg(code),
    barcode: barcodeSvg(code),
    grouped: groupDigits(code),
    masked: maskDigits(code),
    source: { name: card.name, balance: balanceOf(extra).balance },
  };
}

/** 余额, 交易记录, 付款码 and 付款码设置 with 离线付款码's devices (mounted at "/"). */
export function walletRoutes(deps: { db: Db; config: Config }): Hono<AppEnv> {
  const { db } = deps;
  const app = new Hono<AppEnv>();
  app.route("/", offlineCodeRoutes(deps));

  // The busiest student page: session check, card, committed balance and open holds in one
  // statement (the session middleware leaves this path's session to studentPageQuery).
  checkSessionInPageQuery("/wallet");
  app.get("/wallet", async (c) => {
    const row = await studentPageQuery(c, db, walletSummarySql);
    if (!row) return sendToSignIn(c);
    const summary = readWalletSummary(row);
    if (!summary) return render(c, "wallet/no_card", {}, { status: 200, title: "校园一信通" });
    return render(c, "wallet/balance", { ...summary }, { title: "余额" });
  });

  app.get(
    "/wallet/transactions",
    requireStudent,
    zValidator("query", historyQuery, badQueryPage("筛选条件无效", "交易记录")),
    async (c) => {
      const card = await boundCard(c, db);
      if (card instanceof Response) return card;
      const page = await historyPage(db, card.cardAccountId, c.req.valid("query"));
      const data = {
        ...page,
        chinaMonth,
        categoryOf,
        kindLabels: KIND_LABELS,
        types: HISTORY_TYPES,
      };
      if (page.continued) return render(c, "wallet/_rows", data, { layout: null });
      return render(c, "wallet/transactions", {
        ...data,
        totals: await spendingTotals(db, card.cardAccountId),
        thisMonth: chinaMonth(new Date()),
      }, { title: "交易记录" });
    },
  );

  app.get("/wallet/transactions/:id", requireStudent, async (c) => {
    const raw = c.req.param("id");
    if (!/^[1-9]\d{0,14}$/.test(raw)) throw new NotFoundError("transaction");
    const card = await boundCard(c, db);
    if (card instanceof Response) return card;
    const found = await getTransaction(db, card.cardAccountId, Number(raw));
    if (!found) throw new NotFoundError(`transaction ${raw} of this card account`);
    const [row] = await labelRows(db, [found]);
    return render(c, "wallet/detail", {
      row,
      topup: topupOf(found),
      category: categoryOf(found.kind, found.merchantCategory),
      kindLabels: KIND_LABELS,
    }, { title: "交易详情" });
  });

  app.get(
    "/wallet/stats",
    requireStudent,
    zValidator("query", statsQuery, badQueryPage("月份格式不正确", "消费统计")),
    async (c) => {
      const card = await boundCard(c, db);
      if (card instanceof Response) return card;
      const stats = await spendingStats(db, card.cardAccountId, {
        month: c.req.valid("query").month || undefined,
      });
      const chart = barChartSvg(stats.byMonth.map((m) => ({
        label: `${Number(m.month.slice(5))}月`,
        value: m.amount,
        highlight: m.month === stats.month,
      })));
      return render(c, "wallet/stats", { stats, chart }, { title: "消费统计" });
    },
  );

  app.get("/pay/code", requireStudent, async (c) => {
    const found = await findBoundCardWith(db, c.get("accountId")!, paycodeExtraOf);
    if (!found) return render(c, "wallet/no_card", {}, { status: 200, title: "校园一信通" });
    const { card } = found;
    const frozen = () =>
      render(c, "pay/frozen", { byLoss: card.paymentCodeFrozen, scripts: ["pay.js"] }, {
        title: "付款码",
      });
    if (found.extra.code_frozen || card.paymentCodeFrozen) return frozen();
    let code: string;
    try {
      ({ code } = await issuePaymentCode(db, card.cardAccountId));
    } catch (err) {
      // Frozen in 付款码设置 between the two statements.
      if (err instanceof PaymentCodeFrozenError) return frozen();
      throw err;
    }
    return render(c, "pay/code", {
      ...codeCardData(code, card, found.extra),
      scripts: ["pay.js"],
    }, {
      title: "付款码",
    });
  });

  // A new code (every 30 seconds and on tap); retires the old one. The session check, the card,
  // the student's freeze setting and balance in one prepared statement, then the code in another.
  checkSessionInPageQuery("/pay/code/refresh", "POST");
  app.post("/pay/code/refresh", async (c) => {
    const row = await studentPageQuery(c, db, paycodeCardSql);
    if (!row) return sendToSignIn(c);
    const found = readBoundCard<{ [K in keyof PaycodeColumns]: PaycodeColumns[K] | null }>(row);
    if (!found) return render(c, "wallet/no_card", {}, { status: 200, title: "校园一信通" });
    const { card } = found;
    if (c.req.header("hx-request") !== "true") return c.redirect("/pay/code", 303);
    const frozen = () => c.body(null, 200, { "hx-redirect": "/pay/code" });
    if (card.paymentCodeFrozen || found.extra.code_frozen) return frozen();
    try {
      // Refused (nothing issued) while the student froze the code in 付款码设置.
      const { code } = await issuePaymentCode(db, card.cardAccountId);
      return render(c, "pay/_code", codeCardData(code, card, found.extra), { layout: null });
    } catch (err) {
      if (err instanceof PaymentCodeFrozenError) return frozen();
      throw err;
    }
  });

  // Long poll: answers when the code is used or gone, else after about 20 seconds.
  app.get("/pay/code/status", requireStudent, async (c) => {
    const code = c.req.query("code") ?? "";
    if (!/^\d{18}$/.test(code)) throw new NotFoundError("payment code");
    const card = await findBoundCard(db, c.get("accountId")!);
    if (!card) throw new NotFoundError("payment code");
    const known = await paymentCodeState(db, card.cardAccountId, code);
    if (!known) throw new NotFoundError("payment code");
    const state = await waitForPaymentCode(db, card.cardAccountId, code, {
      timeoutMs: 20_000,
      signal: c.req.raw.signal,
    });
    const retarget = { "hx-retarget": "#paycode-card", "hx-reswap": "outerHTML" };
    if (state?.state === "used") {
      return render(c, "pay/_paid", { state }, { layout: null, headers: retarget });
    }
    if (!state || state.state === "expired") {
      return render(c, "pay/_expired", {}, { layout: null, headers: retarget });
    }
    return render(c, "pay/_poll", { code }, { layout: null });
  });

  const showSettings = async (
    c: C,
    card: BoundCard,
    errors: FieldErrors,
    input: Record<string, string> | null,
    status = 200,
  ) => {
    const [settings, devices, offline] = await Promise.all([
      getPaySettings(db, card.cardAccountId),
      listDevices(db, card.cardAccountId),
      getOfflineLimits(db),
    ]);
    const values = input ?? settingsInput(settings);
    return render(c, "pay/settings", {
      settings,
      devices,
      offline,
      errors,
      input: values,
      saved: c.req.query("saved") === "1",
      removed: c.req.query("removed") === "1",
    }, {
      status,
      title: "付款码设置",
    });
  };

  app.get("/pay/settings", requireStudent, async (c) => {
    const card = await boundCard(c, db);
    if (card instanceof Response) return card;
    return await showSettings(c, card, {}, null);
  });

  app.post(
    "/pay/settings",
    requireStudent,
    zValidator(
      "form",
      settingsForm,
      formErrorsHook(async (c, errors, input) => {
        const card = await boundCard(c, db);
        return card instanceof Response ? card : await showSettings(c, card, errors, input, 422);
      }),
    ),
    async (c) => {
      const card = await boundCard(c, db);
      if (card instanceof Response) return card;
      const settings = c.req.valid("form");
      return await runForm(
        () => updatePaySettings(db, card.cardAccountId, settings),
        (errors) => showSettings(c, card, errors, settingsInput(settings), 422),
        () => c.redirect("/pay/settings?saved=1", 303),
      );
    },
  );

  return app;
}

/** 付款码设置's fields as the form shows them. */
function settingsInput(
  s: { payLimit: number; dailyLimit: number; codeFrozen: boolean },
): Record<string, string> {
  return {
    pay_limit: fenToYuanText(s.payLimit),
    daily_limit: fenToYuanText(s.dailyLimit),
    code_frozen: s.codeFrozen ? "1" : "",
  };
}

/**
 * The ledger verifier page for 财务处 and system administrators (mounted at "/admin/ledger"), with
 * the checks of the books other modules own (`checks`, composed in main.ts).
 */
export function ledgerAdminRoutes(deps: { db: Db; checks?: LedgerCheck[] }): Hono<AppEnv> {
  const { db, checks = [] } = deps;
  const app = new Hono<AppEnv>();
  registerAdminNav({
    href: "/admin/ledger",
    label: "账务核验",
    roles: [ROLES.finance, ROLES.sysadmin],
    group: "财务处",
    order: 90,
  });
  app.get("/", requireRole(ROLES.finance, ROLES.sysadmin), async (c) => {
    const started = performance.now();
    const [report, negatives] = await Promise.all([
      verifyLedger(db, checks),
      listNegativeBalances(db),
    ]);
    const ms = Math.round(performance.now() - started);
    const names = checks.map((k) => k.name);
    return render(c, "wallet/admin_ledger", { report, negatives, ms, checks: names }, {
      layout: "admin/layout",
      title: "账务核验",
    });
  });
  return app;
}
